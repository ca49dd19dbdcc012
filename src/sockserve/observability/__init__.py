"""Logging names, rate-limited log lines and (later) counters shared by every server."""
