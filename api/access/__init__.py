"""Access: API keys and their scopes (`keys`, also `python -m api.access.keys hash NAME SCOPE`),
rate limits per key or address (`ratelimit`), and the ASGI middleware that applies both before
a body is read (`middleware`)."""
