"""``--reload``: notice that a source file a worker loaded has changed.

A development aid, as gunicorn's ``--reload`` is: each worker polls the
modification times of the files of the modules it has imported (the target's
and whatever it imports; the standard library's are left out), and once one
changes, the worker stops and the master starts a fresh one, which imports the
code anew (the master never imports the target, so it has nothing stale to
pass on). The standard library and installed packages (site-packages) are not
watched; an editable install is. Polling costs a ``stat`` per file per second and needs nothing
beyond the standard library.
"""

from __future__ import annotations

import os
import sys
import sysconfig

__all__ = ["SourceWatcher"]


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(
        os.path.join(paths[key], "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if key in paths
    )


class SourceWatcher:
    """Remembers the mtime of every loaded module's file; :meth:`changed` names one that moved."""

    def __init__(self) -> None:
        self._skip = _stdlib_dirs()
        self._seen: dict[str, float] = {}
        self.changed()  # the first look only records

    def _files(self) -> list[str]:
        files = []
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and not path.startswith(self._skip):
                files.append(path)
        return files

    def changed(self) -> str | None:
        """The first file whose modification time changed (or that vanished) since last look."""
        for path in self._files():
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                mtime = -1.0
            before = self._seen.setdefault(path, mtime)
            if before != mtime:
                return path
        return None
