"""What every HTTP surface shares: caller checks and replies, error answers, the OpenAPI document, middleware."""
