"""Shutdown: the client port drains (doozertw.frontends.drain), services
stop in order (doozertw.shutdown.StopInOrder), SIGTERM stops the reactor
without twistd re-raising it; and, marked e2e, a 3-node cluster whose
leader gets SIGTERM hands over leadership quickly and exits 0."""

import json
import os
import signal
import threading
import time
import urllib.request

import pytest
from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.frontends.access import Secrets
from doozertw.frontends.drain import DRAIN, POLL, DrainingClientPortFactory
from doozertw.limits import Limits
from doozertw.wire import LENGTH, VERBS, Request, Response, frame
from doozertw.shutdown import StopInOrder, stop_cleanly_on_signals


class SlowWrites:
    """Wraps a Node: ``set`` waits until the test fires ``pending``."""

    def __init__(self, node):
        self._node = node
        self.pending = []
        self.requested = 0

    def __getattr__(self, name):
        return getattr(self._node, name)

    def set(self, *args, **kwargs):
        d = defer.Deferred()
        self.requested += 1
        self.pending.append((d, args, kwargs))
        return d

    def finish(self):
        for d, args, kwargs in self.pending:
            self._node.set(*args, **kwargs).chainDeferred(d)
        self.pending = []


@pytest.fixture
def port(node):
    clock = Clock()
    slow = SlowWrites(node)
    factory = DrainingClientPortFactory(slow, Secrets(), Limits(), clock)
    return factory, slow, clock


def connect(factory, data=b""):
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    if data:
        proto.dataReceived(data)
    return proto, transport


def lose(proto, transport):
    """Complete a loseConnection the way a real transport would."""
    if transport.disconnecting:
        proto.connectionLost(None)
        return True
    return False


def test_an_idle_connection_closes_at_once_and_the_drain_ends(port):
    factory, _, _ = port
    proto, transport = connect(factory, b"self\r\n")
    assert transport.value().startswith(b"OK SELF")
    silent, silent_transport = connect(factory)       # no byte yet
    d = factory.drain(grace=2.0)
    assert transport.disconnecting and silent_transport.disconnecting
    assert not d.called
    lose(proto, transport)
    lose(silent, silent_transport)
    assert d.called and factory.connections == set()


def test_a_write_in_flight_is_answered_before_the_close(port):
    factory, slow, clock = port
    proto, transport = connect(factory, b"set /a 1\r\n")
    assert slow.pending and transport.value() == b""
    d = factory.drain(grace=2.0)
    assert not transport.disconnecting               # waits for the write
    assert transport.producerState == "paused"        # nothing more is read
    clock.advance(1.0)
    assert not transport.disconnecting
    slow.finish()
    assert transport.value().startswith(b"OK REV")
    clock.advance(POLL)
    assert transport.disconnecting and lose(proto, transport)
    assert d.called


def test_the_doozer_protocol_drains_too(port):
    factory, slow, clock = port
    request = Request(tag=7, verb=VERBS["SET"], path="/a", rev=-1, value=b"1")
    proto, transport = connect(factory, frame(request))
    d = factory.drain(grace=2.0)
    clock.advance(0.5)
    assert not transport.disconnecting and slow.pending
    slow.finish()
    clock.advance(POLL)
    body = transport.value()[LENGTH.size:]
    assert Response.FromString(body).tag == 7
    assert transport.disconnecting and lose(proto, transport) and d.called


def test_waits_and_watches_get_no_answer_the_connection_just_closes(port):
    factory, _, _ = port
    proto, transport = connect(factory, b"wait /nothing/** 1000\r\nwatch /x/**\r\n")
    factory.drain(grace=2.0)
    # no error reply: a client library takes a closed connection for a dead
    # node and asks another one, while an error would be the WAIT's answer
    assert b"abandoned" not in transport.value() and b"ERR" not in transport.value()
    assert transport.disconnecting


def test_a_parked_wait_does_not_hold_a_write_behind_it(port):
    factory, slow, clock = port
    wait = Request(tag=1, verb=VERBS["WAIT"], path="/never/**", rev=10_000)
    write = Request(tag=2, verb=VERBS["SET"], path="/a", rev=-1, value=b"1")
    proto, transport = connect(factory, frame(wait) + frame(write))
    factory.drain(grace=2.0)
    assert not transport.disconnecting                # the write is in flight
    slow.finish()
    clock.advance(POLL)
    assert transport.disconnecting                    # only the WAIT was left
    body = transport.value()[LENGTH.size:]
    assert Response.FromString(body).tag == 2         # the write's answer, none for the WAIT


def test_the_grace_ends_a_stuck_drain(port):
    factory, slow, clock = port
    proto, transport = connect(factory, b"set /a 1\r\n")
    d = factory.drain(grace=2.0)
    clock.advance(1.9)
    assert not d.called and not transport.disconnecting
    clock.advance(0.1)
    assert d.called and transport.disconnecting
    assert transport.value() == b""                 # the write never finished: no reply
    assert not [c for c in clock.getDelayedCalls() if c.active()
                and c.func == factory._look]


def test_input_buffered_when_draining_is_never_handled(port):
    factory, slow, clock = port
    proto, transport = connect(factory, b"set /a 1\r\n")
    proto.chosen._conn.pause("in-flight")             # as if the in-flight cap held reading
    proto.dataReceived(b"set /b 2\r\n")               # buffered, not handled
    factory.drain(grace=2.0)
    slow.finish()
    clock.advance(POLL)
    assert transport.value().count(b"OK REV") == 1
    assert transport.disconnecting and slow.requested == 1


def test_no_connection_is_accepted_while_draining(port):
    factory, _, _ = port
    factory.drain(grace=1.0)
    assert factory.buildProtocol(None) is None


def test_draining_holds_the_read_gate(port):
    factory, _, _ = port
    proto, transport = connect(factory, b"set /a 1\r\n")
    factory.drain()
    assert DRAIN in proto.chosen._conn.paused_by
    assert transport.producerState == "paused"


# -- StopInOrder ---------------------------------------------------------------------------


class Step(service.Service):
    def __init__(self, name, log, d=None, fail=False):
        self.name, self.log, self.d, self.fail = name, log, d, fail

    def stopService(self):
        super().stopService()
        self.log.append(f"stop {self.name}")
        if self.fail:
            raise RuntimeError("boom")
        if self.d is not None:
            return self.d.addCallback(lambda _: self.log.append(f"stopped {self.name}"))
        self.log.append(f"stopped {self.name}")


def test_children_stop_one_after_the_other_last_first():
    log = []
    gate = defer.Deferred()
    top = StopInOrder()
    Step("cluster", log).setServiceParent(top)
    Step("client", log, gate).setServiceParent(top)
    Step("web", log, fail=True).setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert log == ["stop web", "stop client"]        # the cluster waits for the drain
    gate.callback(None)
    assert log == ["stop web", "stop client", "stopped client", "stop cluster",
                   "stopped cluster"]
    assert done.called


# -- signals -------------------------------------------------------------------------------


class FakeReactor:
    def __init__(self):
        self.stops = 0
        self.calls = []

    def callFromThread(self, f, *args, **kwargs):
        self.calls.append((f, args, kwargs))

    def stop(self):
        self.stops += 1

    def run_calls(self):
        calls, self.calls = self.calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


def test_sigterm_stops_the_reactor_once():
    before = signal.getsignal(signal.SIGUSR2)
    reactor = FakeReactor()
    try:
        stop_cleanly_on_signals(reactor, signals=(signal.SIGUSR2,))
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        reactor.run_calls()
        assert reactor.stops == 1
    finally:
        signal.signal(signal.SIGUSR2, before)


# -- a real cluster ------------------------------------------------------------------------


def _status(web_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/v1/cluster", timeout=2) as r:
        return json.load(r)


@pytest.mark.e2e
def test_sigterm_on_the_leader_hands_over_and_exits_zero(tmp_path):
    from doozertw.testing.node_process import endpoint, free_ports
    from doozertw.testing.spawn import start_twistd, writable
    from doozertw.testing.workload import WireClient, WireError

    ports = free_ports(9)
    names = ["n1", "n2", "n3"]
    nodes_yaml = "".join(
        f"  {n}:\n    listen: {endpoint(ports[3 * i])}\n    web: {endpoint(ports[3 * i + 1])}\n"
        f"    peer_listen: {endpoint(ports[3 * i + 2])}\n" for i, n in enumerate(names))
    (tmp_path / "c.yaml").write_text(f"cluster: t\ninsecure_peers: true\nnodes:\n{nodes_yaml}")
    nodes = {}
    try:
        for n in names:
            nodes[n] = start_twistd(["--config", "c.yaml", "--name", n, "--in-memory"],
                                    tmp_path, name=n)
        for i, n in enumerate(names):
            nodes[n].wait_ready(writable(ports[3 * i]), timeout=60)
        leader = _leader(ports, names)
        index = names.index(leader)
        others = [n for n in names if n != leader]
        results = []

        def writer():
            client = WireClient(ports[3 * index], timeout=10)
            try:
                for k in range(100_000):
                    try:
                        results.append(("ok", client.set(f"/w/{k}", -1, b"x")))
                    except (WireError, OSError) as e:  # a clean failure: an error or a close
                        results.append(("error", f"{type(e).__name__}: {e}"))
                        return
            finally:
                client.close()
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.3)
        began = time.monotonic()
        nodes[leader].terminate()
        # a new leader, by the handover: well before an election timeout (0.5-1 s
        # after the last heartbeat, which would come only after the drain and the
        # stop), so it is seen by the others while the old leader still stops
        new = None
        while new not in others and time.monotonic() - began < 5.0:
            new = _leader(ports, others, quiet=True, besides=leader)
            if new not in others:
                time.sleep(0.01)
        elected = time.monotonic() - began
        code = nodes[leader].reap(timeout=20)
        stopped = time.monotonic() - began
        thread.join(15)
        assert not thread.is_alive()
        log = nodes[leader].log_text()
        assert code == 0, log[-3000:]
        assert new in others, [nodes[n].log_text()[-2000:] for n in others]
        assert elected < 0.6, elected
        assert stopped < 5.0, stopped
        assert "SIGTERM: draining clients, handing over leadership" in log
        # the writes before the stop succeeded; the one in flight completed or
        # failed cleanly (an error reply or a closed connection, never a hang)
        assert results and results[0][0] == "ok"
        assert all(kind == "ok" for kind, _ in results[:-1]), results[-5:]
    finally:
        for node in nodes.values():
            node.stop()


def _leader(ports, names, quiet=False, besides=None):
    """The leader that one of ``names`` (whose web ports it asks) names,
    other than ``besides`` (None if none does)."""
    index = {n: i for i, n in enumerate(["n1", "n2", "n3"])}
    for n in names:
        try:
            status = _status(ports[3 * index[n] + 1])
        except OSError:
            continue
        leader = _leader_of(status)
        if leader and leader != besides:
            return leader
    if quiet:
        return None
    raise AssertionError("no leader")


def _leader_of(status):
    for key in ("leader", "leader_name"):
        if isinstance(status.get(key), str) and status[key]:
            return status[key]
    for member in status.get("members", []) or status.get("nodes", []):
        if isinstance(member, dict) and member.get("role") == "leader":
            return member.get("name")
    return None
