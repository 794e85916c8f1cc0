"""Foundation: settings, crypto, redaction, request ids, metrics, callers and the wire models; no notifyd imports."""
