"""Concurrency strategies beyond the stdlib's: the bounded worker pool and its helpers."""
