"""What the out-of-descriptors tests check of a server run by ``helpers.emfile_server``.

Shared by the sync test (``serving/test_out_of_descriptors.py``) and the async
one (``hostile/test_async_faults.py``): the server's CPU share while it has no
descriptors left, and what it logged about it.
"""

from __future__ import annotations

import re
import time

from helpers.processes import Child


def _cpu(server: Child) -> tuple[float, float]:
    """(CPU seconds, monotonic seconds) of the server process, as it reports them."""
    answer = re.fullmatch(r"CPU ([\d.]+) ([\d.]+)", server.ask("cpu"))
    assert answer is not None
    return float(answer[1]), float(answer[2])


def cpu_share_over(server: Child, episode: float) -> float:
    """The server's CPU seconds per second over ``episode`` seconds.

    The episode is what is measured (a server out of descriptors for a fixed
    time), so this sleeps for it: there is nothing to wait for instead.
    """
    cpu_before, wall_before = _cpu(server)
    time.sleep(episode)
    cpu_after, wall_after = _cpu(server)
    wall = wall_after - wall_before
    assert wall >= episode
    return (cpu_after - cpu_before) / wall


def assert_emfile_logged_once(output: str) -> None:
    """EMFILE was logged as a rate-limited WARNING (1 to 3 lines), and nothing worse."""
    logged = output.splitlines()
    emfile = [line for line in logged if "Too many open files" in line]
    assert 1 <= len(emfile) <= 3, f"{len(emfile)} EMFILE lines: not rate-limited"
    assert all(line.startswith("WARNING ") for line in emfile)
    assert not [line for line in logged if line.startswith(("ERROR", "CRITICAL", "Traceback"))]
