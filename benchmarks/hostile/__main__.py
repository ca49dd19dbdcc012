"""Entry point: ``python -m benchmarks.hostile`` (options: ``--help``)."""

from benchmarks.hostile.cli import main

raise SystemExit(main())
