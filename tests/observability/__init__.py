"""Metrics of servers in a program: the collector, the recorder, the runner slots."""
