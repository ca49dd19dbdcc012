"""The code in README.md and docs/*.md: complete examples run, every Python block compiles.

The markers (``<!-- example: run -->``, ``serve [echo]``, ``skip``) are
described in ``blocks.py`` and ``tests/README.md``. A server example runs in
a child process on free loopback ports (``example_shim.py`` for Python; the
bind specs rewritten for ``sockserve`` command lines), is talked to once it
says it listens, and is stopped; every step has a deadline.
"""

from __future__ import annotations

import shlex
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from documentation.blocks import PYTHON, SHELL, Block, blocks_of, documentation_files
from helpers.clients import connect, round_trip
from helpers.net import TIMEOUT
from helpers.processes import Child, child_env, run, sockserve_argv

SHIM = Path(__file__).with_name("example_shim.py")
LISTENING = r"^example listening on (tcp|udp) (\S+) (\d+)$"
LINE = b"hello, docs\n"

BLOCKS = [block for path in documentation_files() for block in blocks_of(path)]
PYTHON_BLOCKS = [b for b in BLOCKS if b.lang in PYTHON and b.kind != "skip"]
MARKED = [b for b in BLOCKS if b.kind in ("run", "serve")]


def test_the_documentation_has_examples_marked() -> None:
    """The test below would pass on nothing if the markers went missing."""
    assert sum(b.kind == "serve" for b in MARKED) >= 4
    assert any(b.kind == "run" for b in MARKED)
    assert all(b.lang in PYTHON | SHELL for b in MARKED), [b.where for b in MARKED]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_python_block_compiles(block: Block) -> None:
    compile(block.code, block.where, "exec")


@pytest.mark.parametrize("block", MARKED, ids=lambda b: b.where)
def test_example_runs(block: Block, spawn: Callable[..., Child], tmp_path: Path) -> None:
    if block.lang in PYTHON:
        script = tmp_path / "example.py"
        script.write_text(block.code)
        if block.kind == "run":
            _run_to_the_end([sys.executable, str(script)], tmp_path, block)
        else:
            _serve_python(block, script, spawn, tmp_path)
    elif block.kind == "run":
        _run_to_the_end(["bash", "-euo", "pipefail", "-c", block.code], tmp_path, block)
    else:
        for line in _commands(block.code):
            _serve_command(block, line, spawn, tmp_path)


def _run_to_the_end(argv: list[str], cwd: Path, block: Block) -> None:
    env = child_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    result = run(argv, env=env, cwd=cwd, timeout=60)
    assert result.returncode == 0, f"{block.where}: exit {result.returncode}\n{result.stderr}"


def _serve_python(block: Block, script: Path, spawn: Callable[..., Child], cwd: Path) -> None:
    child = spawn([sys.executable, str(SHIM), str(script)], cwd=cwd)
    [(transport, host, port)] = [m.groups() for m in child.wait_for(LISTENING)]
    _check(block, transport, (host, int(port)))
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait_exit() == -signal.SIGTERM, child.describe()


def _commands(code: str) -> list[list[str]]:
    """The command lines of a shell block (comments and blank lines dropped)."""
    return [words for line in code.splitlines() if (words := shlex.split(line, comments=True))]


def _serve_command(
    block: Block, words: list[str], spawn: Callable[..., Child], tmp_path: Path
) -> None:
    """``sockserve SERVICE --bind ...``: on port 0 and in tmp_path, stopped by SIGTERM."""
    assert words[0] in ("sockserve", "python3"), f"{block.where}: not a sockserve command"
    if words[0] == "python3":
        assert words[1:3] == ["-m", "sockserve"], words
        words = words[2:]
    args = [_free(word, tmp_path) for word in words[1:]]
    child = spawn(sockserve_argv(*args))
    specs = child.listening(args.count("--bind"))
    for spec in specs:
        if spec.startswith("unix:"):
            _check(block, "unix", spec.removeprefix("unix:"))
        else:
            transport, _, rest = spec.partition("://")
            host, _, port = rest.rpartition(":")
            _check(block, transport, (host.strip("[]"), int(port)))
    assert child.stop() == 0, child.describe()


def _free(word: str, tmp_path: Path) -> str:
    """A bind spec on the same host with port 0, or a socket path moved into tmp_path."""
    if word.startswith("unix:/"):
        return "unix:" + str(tmp_path / Path(word).name)
    head, colon, port = word.rpartition(":")
    if colon and port.isdigit() and not word.startswith("fd://"):
        return f"{head}:0"
    return word


def _check(block: Block, transport: str, address: Any) -> None:
    echo = "echo" in block.marker[1:]
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(LINE, address)
            reply = client.recv(65536)
            assert reply == LINE or not echo, f"{block.where}: {reply!r}"
        return
    if echo:
        assert round_trip(address, LINE) == LINE, block.where
    else:
        connect(address).close()


def test_the_readme_opens_with_the_two_commands(
    spawn: Callable[..., Child], tmp_path: Path
) -> None:
    """The README's first two commands: install then serve, install then test.

    The installs are not repeated here (the suite runs on the tree already
    installed); the echo service the first line starts is served and stopped
    like any marked example, and the second line's extra must exist.
    """
    first = blocks_of(documentation_files()[0])[0]
    serve, test = _commands(first.code)[:2]
    assert serve[:4] == ["python3", "-m", "pip", "install"] and "&&" in serve, serve
    served = serve[serve.index("&&") + 1 :]
    assert served[:4] == ["python3", "-m", "sockserve", "echo"], served
    _serve_command(
        Block(first.path, first.line, "sh", "", ("serve", "echo")), served, spawn, tmp_path
    )
    assert test == [
        "python3",
        "-m",
        "pip",
        "install",
        "-e",
        ".[dev]",
        "&&",
        "python3",
        "-m",
        "pytest",
    ]
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert "\ndev = [" in pyproject
