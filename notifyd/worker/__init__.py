"""`notifyd worker`: the Procrastinate tasks and the process that runs them."""
