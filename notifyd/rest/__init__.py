"""The REST routes, one module per topic; only notifyd.app imports them."""
