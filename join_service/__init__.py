"""Streaming join: the pure join rule (window.py) and the runners that feed it."""
