"""Real time: the LISTEN hub, the session, and its two transports (WebSocket and Server-Sent Events)."""
