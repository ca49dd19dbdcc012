"""The runner's shared-memory slots: a forked writer, a reader that never waits, retired totals."""

from __future__ import annotations

import os
from typing import Any

import sockserve
from helpers.clients import connect, recv_line
from helpers.net import TIMEOUT
from sockserve.observability.recorder import RequestRecorder
from sockserve.observability.samples import FIELDS, INDEX, sample
from sockserve.runner.slots import ListenerTotals, Slot
from sockserve.testing import serving


class Echo(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def test_a_forked_worker_writes_its_slot_and_the_parent_reads_it() -> None:
    slot = Slot(listeners=1)
    try:
        assert slot.describe() is None  # nothing attached yet
        pid = os.fork()
        if pid == 0:  # the "worker": attach, serve two connections, publish, exit
            code = 1
            try:
                server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Echo)
                slot.attach([server])
                with serving(server):
                    for _ in range(2):
                        with connect(server.server_address) as client:
                            client.sendall(b"ping\n")
                            assert recv_line(client) == b"ping\n"
                    assert server.wait_for(lambda st: st.completed == 2, TIMEOUT)
                slot.publish([server])
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        values, histograms = slot.read(0)
        assert values[INDEX["accepted"]] == 2
        assert histograms["duration"].count == 2
        assert histograms["bytes_in"].total == 10
        assert slot.describe() == ("pool", "none")
    finally:
        slot.close()


def test_retired_totals_keep_counters_and_drop_gauges() -> None:
    totals = ListenerTotals()
    dead = [0.0] * len(FIELDS)
    dead[INDEX["accepted"]] = 7
    dead[INDEX["active"]] = 3  # the connections it held died with it
    recorder = RequestRecorder()
    recorder.record_values(0.002, (10, 20))
    totals.retire(dead, recorder.histograms())
    live = [0.0] * len(FIELDS)
    live[INDEX["accepted"]] = 5
    live[INDEX["active"]] = 1
    other = RequestRecorder()
    other.record_values(0.5, None)
    values, histograms = totals.total([(live, other.histograms())])
    assert values[INDEX["accepted"]] == 12
    assert values[INDEX["active"]] == 1
    assert histograms["duration"].count == 2
    assert histograms["bytes_in"].count == 1
    assert histograms["duration"].cumulative()[-1] == ("+Inf", 2.0)


def test_unknown_refusal_reasons_count_as_other() -> None:
    server: Any = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Echo)
    try:
        stats = server.stats()
        stats.rejected.update({"max_connections": 2, "a_subclass_reason": 1})
        values = sample(stats)
    finally:
        server.server_close()
    assert values[INDEX["rejected:max_connections"]] == 2
    assert values[INDEX["rejected:other"]] == 1


def test_histogram_buckets_hold_values_up_to_their_bound() -> None:
    recorder = RequestRecorder()
    recorder.record_values(0.001, (64, 65))  # on a bound: in it (Prometheus's le)
    histograms = recorder.histograms()
    assert histograms["duration"].cumulative()[0] == ("0.001", 1.0)
    assert histograms["bytes_in"].cumulative()[0] == ("64.0", 1.0)
    assert histograms["bytes_out"].cumulative()[0] == ("64.0", 0.0)
