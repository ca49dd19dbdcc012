"""``python -m sockserve``: the same command as the ``sockserve`` script."""

from __future__ import annotations

from sockserve.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
