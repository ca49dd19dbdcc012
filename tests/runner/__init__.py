"""The production runner, ``sockserve run``, tested from outside: processes, signals, proxies."""
