"""Local stand-ins for the Web Push service, FCM and Resend: real HTTP servers the real client libraries talk to."""
