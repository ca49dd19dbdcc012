"""Entry point: ``python -m benchmarks`` (options: ``--help``)."""

from benchmarks.cli import main

raise SystemExit(main())
