"""sockserve's benchmark suite: ``python -m benchmarks`` (see docs/benchmarks.md).

Modules, one job each: ``loadgen.c`` (the C load generator) and ``loadgen``
(building and running it), ``wrk`` (the HTTP load), ``servers`` (one server
per subprocess), ``catalog`` (which servers exist), ``handlers`` and
``sockserve_handlers`` (the request handlers), ``harness`` (server
processes), ``procstat`` (/proc sampling), ``workloads`` (what a run
measures), ``shutdown`` (in-process shutdown latency), ``runner`` (the
interleaved loop), ``stats`` (medians and ratios), ``report``,
``comparisons`` (the pairwise tables) and ``plots`` (the output),
``revisions`` (other git revisions of sockserve, for ``--compare-rev``),
``machine`` (what it ran on), ``cli`` (the command).
"""
