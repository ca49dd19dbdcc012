"""Out of file descriptors (EMFILE), the accept loop pauses and logs, instead of spinning.

The server runs in a child process (``helpers/emfile_server.py``) whose
descriptor limit is lowered on purpose, so that its CPU use can be read while
accept() keeps failing, without starving the test run itself.
"""

from __future__ import annotations

from collections.abc import Callable

from helpers.clients import recv_line, round_trip
from helpers.emfile import assert_emfile_logged_once, cpu_share_over
from helpers.net import Net
from helpers.processes import TESTS, Child, child_env, helper_argv


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning(
    net: Net, spawn: Callable[..., Child]
) -> None:
    server = spawn(helper_argv("emfile_server", "20"), env=child_env(TESTS), stdin=True)
    [announced] = server.wait_for(r"^PORT (\d+)$", stream="stdout")
    port = int(announced[1])
    # Twice the descriptors the server has left; the kernel queues what it cannot accept.
    clients = [net.tcp_client(("127.0.0.1", port)) for _ in range(40)]
    server.wait_for(r"^WARNING sockserve\.server: accept on .*Too many open files")

    # The episode: the server stays out of descriptors for a fixed time, which
    # is what is measured (not a wait for readiness).
    share = cpu_share_over(server, episode=1.5)
    assert share < 0.4, f"{share:.2f} s of CPU a second: the accept loop spins"

    assert server.ask("release") == "RELEASED"
    for client in clients:  # the held ones answer, the queued ones are accepted at last
        assert recv_line(client) == b"served\n"
    assert round_trip(("127.0.0.1", port)) == b"served\n"

    server.send("quit")
    assert server.wait_exit() == 0
    assert_emfile_logged_once(server.output)
