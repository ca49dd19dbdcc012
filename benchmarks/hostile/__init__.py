"""Hostile clients against sockserve and the stdlib: ``python -m benchmarks.hostile``.

For each attack (slowloris, silent connections, slow readers, reset bursts,
over-long lines, descriptor exhaustion, handler-exception storms, and two
legitimate controls) and each server strategy, bounded in time: is a fresh
client still served, how fast, and what did the server's threads,
descriptors, RSS and log do. It measures; it defends nothing.

Modules, one job each: ``handlers`` / ``sockserve_handlers`` (the line echo
every server runs), ``connections`` (bulk client sockets, what an attack
reports, the fresh-client probe), ``attacks`` (the hostile clients, importable
by tests) and ``floods`` (those made of many short connections), ``catalog``
(attacks and strategies), ``servers`` (one server per subprocess), ``process``
(that subprocess and /proc sampling), ``measure`` (one cell), ``report``
(markdown), ``cli`` (the command).
"""
