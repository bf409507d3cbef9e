"""The bench's load drivers over DoozerClientProtocol, on a StringTransport."""

from twisted.internet.testing import StringTransport

from doozertw.bench import _STAMP, Pipeline, Stats, WaitChain, _summary
from doozertw.client.core import call
from doozertw.client.protocol import DoozerClientProtocol
from doozertw.wire import VERBS, FrameReader, Response, frame, parse_request


class Now:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def connected():
    proto = DoozerClientProtocol()
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def sent(transport):
    reader = FrameReader(1 << 20)
    reader.feed(transport.value())
    transport.clear()
    out = []
    while (body := reader.next_frame()) is not None:
        out.append(parse_request(body))
    return out


def test_pipeline_keeps_every_slot_in_flight_until_the_deadline():
    proto, transport = connected()
    now, stats = Now(), Stats()
    calls = [call("GET", path=f"/k{i}") for i in range(3)]
    Pipeline(proto, calls, now, 101.0, stats).start()
    first = sent(transport)
    assert [r.path for r in first] == ["/k0", "/k1", "/k2"]
    now.t = 100.25
    proto.dataReceived(frame(Response(tag=first[1].tag, value=b"v", rev=2))
                       + frame(Response(tag=first[2].tag, err_code=6)))
    again = sent(transport)
    assert [r.path for r in again] == ["/k1", "/k2"]          # each slot re-sends its call
    assert stats.latencies == [0.25, 0.25] and stats.errors == 1
    now.t = 101.5                                            # past the deadline
    proto.dataReceived(frame(Response(tag=again[0].tag, rev=3)))
    assert sent(transport) == [] and len(stats.latencies) == 2
    assert proto.in_flight == 2
    proto.connectionLost(None)
    assert stats.lost == 2


def test_wait_chain_follows_revisions_and_measures_from_the_stamp():
    proto, transport = connected()
    now, stats = Now(), Stats()
    WaitChain(proto, "/w/*", 7, now, stats).start()
    (wait,) = sent(transport)
    assert (wait.verb, wait.path, wait.rev) == (VERBS["WAIT"], "/w/*", 7)
    now.t = 100.5
    proto.dataReceived(frame(Response(tag=wait.tag, rev=9, path="/w/s", flags=4,
                                      value=_STAMP.pack(100.125) + b"--")))
    assert stats.latencies == [0.375]
    (following,) = sent(transport)
    assert following.rev == 10
    proto.dataReceived(frame(Response(tag=following.tag, err_code=4)))   # TOO_LATE
    assert stats.errors == 1 and sent(transport) == []


def test_summary_reports_rate_and_percentiles():
    parts = [(3, 0, [0.001, 0.002, 0.003], 2.0), (1, 1, [0.004], 1.0)]
    summary = _summary("read", parts)
    assert summary["ops"] == 4 and summary["errors"] == 1
    assert summary["ops_per_s"] == 2.0
    assert summary["p50_ms"] == 3.0 and summary["p99_ms"] == 4.0


def test_stopping_spawned_nodes_removes_their_scratch_directories(tmp_path):
    from doozertw import bench

    class Node:
        def __init__(self, directory):
            self.directory, self.calls = str(directory), []

        def terminate(self):
            self.calls.append("terminate")

        def reap(self, timeout):
            self.calls.append("reap")

    shared = tmp_path / "cluster"
    (shared / "doozer-data").mkdir(parents=True)
    (shared / "n1.log").write_text("log")
    nodes = [Node(shared), Node(shared)]
    bench.stop_nodes(nodes)
    assert [n.calls for n in nodes] == [["terminate", "reap"]] * 2
    assert not shared.exists()
