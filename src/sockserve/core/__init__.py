"""The machinery under the stdlib-compatible classes: wake-ups, accept errors, addresses."""
