"""Local stand-ins for the Web Push service, FCM, Resend, a webhook receiver and the chat platforms: real HTTP
servers the real client libraries talk to."""
