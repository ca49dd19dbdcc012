"""Concurrency strategies: where admitted connections are served (see :mod:`.base`)."""
