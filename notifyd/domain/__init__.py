"""The domain: delivery planning results and channels, template rendering, tracking tokens, sealing, VAPID, digests."""
