"""Log files: appended to, one write per record across processes, reopened after a rename."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.processes import wait_child_exit
from sockserve.observability.logfiles import LogFile, log_destination, reopen_log_files


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own, with no handler left behind."""
    log = logging.getLogger("sockserve.test.logfiles")
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        yield log
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        log.propagate = True


def test_a_log_file_is_appended_to(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "app.log"
    path.write_text("from before\n")
    handler = LogFile(str(path))
    logger.addHandler(handler)
    logger.info("one")
    logger.info("two")
    assert path.read_text() == "from before\none\ntwo\n"


def test_a_renamed_file_is_left_and_a_new_one_started_on_reopen(
    tmp_path: Path, logger: logging.Logger
) -> None:
    path = tmp_path / "app.log"
    logger.addHandler(LogFile(str(path)))
    logger.info("before")
    path.rename(tmp_path / "app.log.1")
    logger.info("after the rename, before the reopen")
    assert reopen_log_files() == []
    logger.info("after the reopen")
    assert (tmp_path / "app.log.1").read_text() == ("before\nafter the rename, before the reopen\n")
    assert path.read_text() == "after the reopen\n"


def test_a_failed_reopen_keeps_writing_to_the_old_file(
    tmp_path: Path, logger: logging.Logger
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "app.log"
    logger.addHandler(LogFile(str(path)))
    path.rename(tmp_path / "kept.log")
    folder.rmdir()
    [error] = reopen_log_files()
    assert str(path) in error
    logger.info("still logged")
    assert (tmp_path / "kept.log").read_text() == "still logged\n"


def test_a_standard_file_handler_of_a_log_config_is_reopened_too(
    tmp_path: Path, logger: logging.Logger
) -> None:
    path = tmp_path / "user.log"
    delayed = tmp_path / "delayed.log"
    logger.addHandler(logging.FileHandler(path))
    logger.addHandler(logging.FileHandler(delayed, delay=True))
    logger.info("before")
    path.rename(tmp_path / "user.log.1")
    delayed.rename(tmp_path / "delayed.log.1")
    assert reopen_log_files() == []
    logger.info("after")
    assert (tmp_path / "user.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"
    assert delayed.read_text() == "after\n"


def test_the_standard_streams_are_written_by_descriptor(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        handler = log_destination("-", stream)
        assert isinstance(handler, LogFile)
        assert handler.fileno() == stream.fileno()
        handler.reopen()  # a standard stream is not reopened (nor closed)
        handler.close()
        assert not stream.closed
        assert os.fstat(stream.fileno())
    assert isinstance(log_destination(None, _NoDescriptor()), logging.StreamHandler)


class _NoDescriptor:
    """A replaced stream (io.StringIO-like) with no descriptor behind it."""

    def fileno(self) -> int:
        raise OSError("no descriptor")

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_two_processes_writing_at_once_never_mix_their_lines(
    tmp_path: Path, logger: logging.Logger
) -> None:
    """A master and a worker share the file: each long record lands whole.

    The records are longer than a buffered stream's buffer (8 KiB), which is
    where a FileHandler would write one record in pieces.
    """
    path = tmp_path / "shared.log"
    logger.addHandler(LogFile(str(path)))
    lines = 300
    payload = {"P": "p" * 20000, "C": "c" * 20000}
    pid = os.fork()
    if pid == 0:  # the child: a worker writing while the parent writes too
        code = 0
        try:
            for number in range(lines):
                logger.info("C%04d %s", number, payload["C"])
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    for number in range(lines):
        logger.info("P%04d %s", number, payload["P"])
    assert wait_child_exit(pid) == 0
    written = path.read_text().splitlines()
    assert len(written) == 2 * lines
    for who in "PC":
        mine = [line for line in written if line.startswith(who)]
        assert mine == [f"{who}{number:04d} {payload[who]}" for number in range(lines)]
