"""Support code for the test suite: importable helpers and scripts run as child processes."""
