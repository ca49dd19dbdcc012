"""Log files that several processes append to, and that logrotate can move away.

A master and its workers write to the same log file: each process holds its
own descriptor of it (inherited across ``fork``). Two rules keep the file
readable:

* **One ``write()`` per record, on a descriptor opened with ``O_APPEND``.**
  The kernel then puts each record whole at the end of the file, whoever
  else writes at the same moment. :class:`LogFile` makes that a property of
  its own code (the record and its newline encoded together, written with
  ``os.write``) rather than of how ``io``'s buffers happen to split text.
  On a pipe (``-``, a terminal, journald) a write up to ``PIPE_BUF`` (4096
  bytes on Linux) is whole; a longer record can still mix with another
  process's.
* **Reopen on request.** logrotate renames the file and signals the master
  (``postrotate``: ``kill -USR1``); every process must then open the path
  again, or it keeps writing into the renamed file. :func:`reopen_log_files`
  does that for every :class:`LogFile` in the logging tree, and for the
  standard library's ``FileHandler`` a ``--log-config`` file may have set up.
"""

from __future__ import annotations

import logging
import os
from typing import TextIO

__all__ = ["LogFile", "log_destination", "reopen_log_files"]

#: The path that means "the standard stream" (stdout for the access log, stderr otherwise).
STANDARD_STREAM = "-"

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class LogFile(logging.Handler):
    """Write each record as one line with a single ``write()``; :meth:`reopen` the path.

    ``path`` is a file, opened for appending (created if missing), or None
    with ``fd``: a descriptor this handler writes to but neither reopens nor
    closes (a standard stream).
    """

    def __init__(
        self, path: str | None, *, fd: int | None = None, level: int = logging.NOTSET
    ) -> None:
        super().__init__(level)
        if (path is None) == (fd is None):
            raise ValueError("LogFile needs a path or a descriptor, not both")
        self.path = path
        self._fd = fd if fd is not None else self._open()

    def _open(self) -> int:
        assert self.path is not None
        return os.open(self.path, _FLAGS, 0o666)  # the umask applies, as with open()

    def fileno(self) -> int:
        return self._fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            # One write, whole (a file opened O_APPEND); a pipe may take
            # less than a large record, then the rest follows.
            while data:
                data = data[os.write(self._fd, data) :]
        except Exception:  # a full disk must not stop the server: logging reports it
            self.handleError(record)

    def reopen(self) -> None:
        """Open the path again (after logrotate moved the file); OSError if it cannot be.

        The new descriptor replaces the old one under the handler's lock, so
        a record being written goes whole to one file or the other. On error
        the old file stays in use.
        """
        if self.path is None:
            return
        new = self._open()
        with self.lock or _NO_LOCK:
            old, self._fd = self._fd, new
        os.close(old)

    def close(self) -> None:
        with self.lock or _NO_LOCK:
            if self.path is not None and self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        super().close()

    def __repr__(self) -> str:
        where = self.path if self.path is not None else f"fd {self._fd}"
        return f"<{type(self).__name__} {where} ({logging.getLevelName(self.level)})>"


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def log_destination(target: str | None, standard: TextIO) -> logging.Handler:
    """A handler for ``--access-logfile``/``--error-logfile``: a path, or ``-`` (``standard``).

    None also means ``standard``. OSError if the file cannot be opened.
    """
    if target is not None and target != STANDARD_STREAM:
        return LogFile(target)
    try:
        fd = standard.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stream with no descriptor
        return logging.StreamHandler(standard)
    return LogFile(None, fd=fd)


def _handlers_in_tree() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            loggers.append(logger)
    found: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in list(logger.handlers):
            found.setdefault(id(handler), handler)
    return list(found.values())


def reopen_log_files() -> list[str]:
    """Reopen every log file of this process; the errors, as text (empty if all went well).

    :class:`LogFile` handlers reopen their path; a standard ``FileHandler``
    (from a ``--log-config`` file) gets a new stream for its file, unless it
    has not opened one yet (``delay``).
    """
    errors: list[str] = []
    for handler in _handlers_in_tree():
        try:
            if isinstance(handler, LogFile):
                handler.reopen()
            elif isinstance(handler, logging.FileHandler):
                _reopen_file_handler(handler)
        except OSError as exc:
            errors.append(f"{getattr(handler, 'path', None) or handler}: {exc}")
    return errors


def _reopen_file_handler(handler: logging.FileHandler) -> None:
    with handler.lock or _NO_LOCK:
        old = handler.stream
        if old is None:
            return  # delay=True and nothing logged yet: it opens the path on first use
        handler.stream = handler._open()
    old.close()
