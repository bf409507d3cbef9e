"""The client port against careless and hostile clients (issue 9, items 4 and 6).

In-process tests (StringTransport, task.Clock) pin each defence:
output back-pressure and the hard output limit, per-turn fairness,
connection caps, releasing waits and watches on close or half-close, and
ACCESS throttling. Tests marked ``e2e`` start real ``twistd doozer``
processes from this working tree and measure what the OS buffers make
real: a node's RSS under a client that never reads, another client's
latency during a flood, socket states after clients vanish.
"""

import os
import select
import socket
import statistics
import struct
import time

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from doozertw.frontends import doozer as doozer_module
from doozertw.frontends.access import THROTTLED, AccessThrottle, Secrets
from doozertw.frontends.client_port import ClientPortFactory
from doozertw.frontends.doozer import ABANDONED, DoozerProtocol
from doozertw.frontends.text import TextProtocol
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.wire import LENGTH, VERBS, Request, Response, frame
from doozertw.store import Store
from doozertw.testing.proposers import HeldProposer
from doozertw.testing.node_process import free_ports
from doozertw.testing.spawn import Twistd, listening, writable

MIB = 1024 * 1024
SECRET = b"the-right-secret"


def _request(tag, verb, **fields):
    return frame(Request(tag=tag, verb=VERBS[verb], **fields))


# == in process ===============================================================================


class BufferedTransport(StringTransport):
    """A StringTransport whose output buffer fills as a real one does.

    Like Twisted's FileDescriptor it calls its streaming producer's
    ``pauseProducing`` on every write while more than ``high`` bytes are
    buffered; ``drain()`` empties the buffer and calls ``resumeProducing``.
    """

    def __init__(self, high=64 * 1024, peer=None):
        super().__init__(peerAddress=peer)
        self.high = high
        self.largest = 0

    def write(self, data):
        super().write(data)
        size = len(self.value())
        self.largest = max(self.largest, size)
        if self.producer is not None and size > self.high:
            self.producer.pauseProducing()

    def writeSequence(self, seq):
        self.write(b"".join(seq))

    def drain(self):
        data = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


class HeldBarrier:
    """A read barrier that lets reads through only when the test says so."""

    def __init__(self):
        self.waiting = []

    def barrier(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d

    def release(self):
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


def _responses(data):
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = LENGTH.unpack_from(data, pos)
        r = Response()
        r.ParseFromString(data[pos + 4:pos + 4 + n])
        out.append(r)
        pos += 4 + n
    return out


def _doozer(node, limits=Limits(), secrets=Secrets(), high=64 * 1024, clock=None):
    clock = clock or Clock()
    proto = DoozerProtocol(node, secrets, limits, clock)
    logged = []
    proto.log = Logger(observer=logged.append)
    transport = BufferedTransport(high)
    proto.makeConnection(transport)
    return proto, transport, clock, logged


def _text(node, limits=Limits(), secrets=Secrets(), high=64 * 1024, clock=None):
    clock = clock or Clock()
    proto = TextProtocol(node, secrets, limits, clock)
    logged = []
    proto.log = Logger(observer=logged.append)
    transport = BufferedTransport(high)
    proto.makeConnection(transport)
    return proto, transport, clock, logged


def _turn(clock):
    """One reactor turn: run the calls due now, not those they schedule."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in due:
        if call.active():
            clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def _gets(n, path="/big"):
    return b"".join(_request(i + 1, "GET", path=path) for i in range(n))


@pytest.fixture
def big_node():
    node = Node(name="n", store=Store(history=100))
    node.set("/big", -1, b"v" * 1000)
    return node


# -- 1. back-pressure: a client that never reads ----------------------------------------------


def test_doozer_non_reader_is_read_no_further_once_its_output_is_full(big_node):
    proto, transport, clock, _ = _doozer(big_node, high=8000)
    proto.dataReceived(_gets(5000))
    for _ in range(20):
        clock.advance(0)
    answered = len(_responses(transport.value()))
    assert transport.producerState == "paused"
    assert answered <= 64                       # one turn, then the full buffer holds it
    assert transport.largest < 8000 + doozer_module.OUTPUT_BATCH + 2000
    transport.drain()                           # the client reads: the rest is answered
    while transport.producerState == "paused" or clock.getDelayedCalls():
        transport.drain()
        clock.advance(0)
    assert big_node.stats.reads == 5000


def test_text_non_reader_is_read_no_further_once_its_output_is_full(big_node):
    proto, transport, clock, _ = _text(big_node, high=8000)
    proto.dataReceived(b"get /big\n" * 5000)
    for _ in range(20):
        clock.advance(0)
    assert transport.producerState == "paused"
    assert transport.value().count(b"OK VALUE") <= 64
    assert transport.largest < 8000 + 64 * 1024 + 2000


@pytest.mark.parametrize("make", [_doozer, _text])
def test_unread_replies_past_max_unsent_abort_the_connection(make, big_node):
    """Replies of requests already in flight when the buffer filled are bounded too."""
    barrier = HeldBarrier()
    big_node.read_barrier = barrier
    limits = Limits(max_unsent=20_000)
    proto, transport, clock, logged = make(big_node, limits=limits, high=4000)
    if make is _doozer:
        proto.dataReceived(_gets(60))
    else:
        proto.dataReceived(b"get /big\n" * 60)
    clock.advance(0)
    assert len(barrier.waiting) == 60           # all in flight, none answered yet
    barrier.release()                           # 60 KB of replies at once
    assert transport.disconnected               # aborted, not flushed
    assert transport.largest < 4000 + 20_000 + 2000
    assert any("unread" in e.get("log_format", "") for e in logged)


# -- 2. fairness ------------------------------------------------------------------------------


def test_doozer_handles_max_batch_requests_per_reactor_turn(big_node):
    proto, transport, clock, _ = _doozer(big_node, limits=Limits(max_batch=10))
    proto.dataReceived(b"".join(_request(i, "REV") for i in range(35)))
    assert len(_responses(transport.value())) == 10
    assert transport.producerState == "paused"  # no more is read meanwhile
    other, other_transport, _, _ = _doozer(big_node, clock=clock)
    other.dataReceived(_request(1, "REV"))      # another connection is not held up
    assert len(_responses(other_transport.value())) == 1
    _turn(clock)
    assert len(_responses(transport.value())) == 20
    _turn(clock)
    _turn(clock)
    assert len(_responses(transport.value())) == 35
    assert transport.producerState == "producing"


def test_text_handles_max_batch_commands_per_reactor_turn(big_node):
    proto, transport, clock, _ = _text(big_node, limits=Limits(max_batch=10))
    proto.dataReceived(b"rev\n" * 35)
    assert transport.value().count(b"OK REV") == 10
    assert transport.producerState == "paused"
    _turn(clock)
    assert transport.value().count(b"OK REV") == 20
    _turn(clock)
    _turn(clock)
    assert transport.value().count(b"OK REV") == 35


@pytest.mark.parametrize("make", [_doozer, _text])
def test_writes_in_flight_per_connection_are_capped(make):
    node = Node(name="n", store=Store(history=100))
    proposer = HeldProposer(node.store)
    node.proposer = proposer
    proto, transport, clock, _ = make(node, limits=Limits(max_writes_in_flight=8))
    if make is _doozer:
        proto.dataReceived(b"".join(
            _request(i, "SET", path="/w", rev=-1, value=b"x") for i in range(1, 21)))
    else:
        proto.dataReceived(b"set /w x\n" * 20)
    clock.advance(0)
    assert len(proposer.held) == 8              # the rest stay unread
    assert transport.producerState == "paused"
    proposer.release()
    clock.advance(0)
    assert len(proposer.held) == 8              # one answered, one more read
    while proposer.held:
        proposer.release()
        clock.advance(0)
    assert node.store.rev == 20


# -- 3. connection caps -----------------------------------------------------------------------


def _port(node, **limits):
    factory = ClientPortFactory(node, Secrets(), Limits(**limits), clock=Clock())
    logged = []
    factory.log = Logger(observer=logged.append)
    return factory, logged


def _addr(host, port):
    return IPv4Address("TCP", host, port)


def test_connections_per_address_are_capped(node):
    factory, logged = _port(node, max_connections_per_address=2)
    a = [factory.buildProtocol(_addr("10.0.0.1", p)) for p in range(3)]
    assert a[0] is not None and a[1] is not None and a[2] is None
    assert factory.buildProtocol(_addr("10.0.0.2", 1)) is not None
    assert len(logged) == 1 and "max_connections_per_address" in logged[0]["cap"]
    a[0].makeConnection(StringTransport())
    a[0].connectionLost(None)                   # a place is freed at once
    assert factory.buildProtocol(_addr("10.0.0.1", 9)) is not None


def test_connections_per_node_are_capped(node):
    factory, logged = _port(node, max_connections=3)
    built = [factory.buildProtocol(_addr(f"10.0.0.{i}", 1)) for i in range(5)]
    assert [p is not None for p in built] == [True, True, True, False, False]
    assert len(logged) == 1                     # one line a second, not one per refusal
    factory.clock.advance(1)
    assert factory.buildProtocol(_addr("10.0.0.9", 1)) is None
    assert len(logged) == 2 and logged[1]["refused"] == 2
    built[1].makeConnection(StringTransport())
    built[1].dataReceived(b"rev\n")             # chosen: the text protocol
    built[1].connectionLost(None)
    assert factory.open == 2 and node.stats.connections == 0


# -- 4. no leaks on close or half-close ------------------------------------------------------


def test_doozer_half_close_abandons_waits_and_closes(node):
    proto, transport, clock, _ = _doozer(node)
    proto.dataReceived(_request(1, "WAIT", path="/nothing", rev=1)
                       + _request(2, "GET", path="/x", rev=50)
                       + _request(3, "REV"))
    assert node.store.watch_count == 1
    proto.readConnectionLost()
    assert node.store.watch_count == 0
    replies = {r.tag: r for r in _responses(transport.value())}
    assert replies[1].err_detail == ABANDONED and replies[2].err_detail == ABANDONED
    assert replies[3].rev == 0
    assert transport.disconnecting
    node.set("/nothing", -1, b"")               # nothing is left to answer it
    assert len(_responses(transport.value())) == 3


def test_doozer_half_close_still_answers_writes(node):
    proposer = HeldProposer(node.store)
    node.proposer = proposer
    proto, transport, clock, _ = _doozer(node)
    proto.dataReceived(_request(1, "SET", path="/a", rev=-1, value=b"1"))
    proto.readConnectionLost()
    assert not transport.disconnecting
    proposer.release()
    assert _responses(transport.value())[0].rev == 1
    assert transport.disconnecting


def test_text_half_close_ends_waits_and_watches_and_closes(node):
    proto, transport, clock, _ = _text(node)
    proto.dataReceived(b"wait /nothing\nwatch /w/**\nget /x 40\nrev\n")
    assert node.store.watch_count == 2
    proto.readConnectionLost()
    assert node.store.watch_count == 0
    lines = transport.value().split(b"\r\n")
    assert lines[:4] == [b"ERR OTHER " + ABANDONED.encode(), b"OK WATCHING 1",
                         b"ERR OTHER " + ABANDONED.encode(), b"OK REV 0"]
    assert transport.disconnecting


@pytest.mark.parametrize("first", [b"wait /nothing\n", _request(1, "WAIT", path="/n", rev=1)])
def test_client_port_close_or_half_close_releases_the_watch(node, first):
    factory = ClientPortFactory(node, Secrets(), Limits(), clock=Clock())
    for lose in ("full", "half"):
        proto = factory.buildProtocol(_addr("10.0.0.1", 1))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(first)
        assert node.store.watch_count == 1
        if lose == "full":
            proto.connectionLost(None)
        else:
            proto.readConnectionLost()
            assert transport.disconnecting
            proto.connectionLost(None)
        assert node.store.watch_count == 0
        assert factory.open == 0 and node.stats.connections == 0


# -- 5. ACCESS brute force --------------------------------------------------------------------


def _denied_then_throttled(attempt, right, clock):
    for _ in range(5):
        assert attempt(b"wrong") == "denied"
    assert attempt(right) == "throttled"        # even the right secret is not checked
    clock.advance(0.99)
    assert attempt(right) == "throttled"
    clock.advance(0.02)
    assert attempt(b"wrong") == "denied"        # checked again; the lockout doubles
    clock.advance(1.5)
    assert attempt(right) == "throttled"
    clock.advance(0.6)
    assert attempt(right) == "ok"


def test_doozer_access_brute_force_is_throttled(node):
    proto, transport, clock, _ = _doozer(node, secrets=Secrets(rw=SECRET))

    def attempt(secret):
        transport.clear()
        proto.dataReceived(_request(1, "ACCESS", value=secret))
        (r,) = _responses(transport.value())
        if not r.HasField("err_code"):
            return "ok"
        return "throttled" if r.err_detail == THROTTLED else "denied"

    _denied_then_throttled(attempt, SECRET, clock)


def test_text_access_brute_force_is_throttled(node):
    proto, transport, clock, _ = _text(node, secrets=Secrets(rw=SECRET))

    def attempt(secret):
        transport.clear()
        proto.dataReceived(b"access " + secret + b"\n")
        out = transport.value()
        if out == b"OK\r\n":
            return "ok"
        return "throttled" if THROTTLED.encode() in out else "denied"

    _denied_then_throttled(attempt, SECRET, clock)


def test_access_failures_are_counted_per_address_across_connections(node):
    factory = ClientPortFactory(node, Secrets(rw=SECRET), Limits(), clock=Clock())

    def attempt(host, secret):
        proto = factory.buildProtocol(_addr(host, 1))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"access " + secret + b"\n")
        proto.connectionLost(None)
        return transport.value()

    for _ in range(5):
        assert b"permission denied" in attempt("10.0.0.1", b"guess")
    assert THROTTLED.encode() in attempt("10.0.0.1", SECRET)   # a new connection: still
    assert attempt("10.0.0.2", SECRET) == b"OK\r\n"             # another address: not


def test_access_throttle_table_is_bounded():
    clock = Clock()
    throttle = AccessThrottle(clock, Limits(), table=3)
    for i in range(10):
        throttle.failed(f"10.0.0.{i}")
    assert len(throttle) == 3


# -- 6. garbage ---------------------------------------------------------------------------------


def test_garbage_is_answered_or_closed_never_raised(node):
    import random
    rng = random.Random(9)
    factory = ClientPortFactory(node, Secrets(), Limits(max_frame=4096), clock=Clock())
    for _ in range(300):
        proto = factory.buildProtocol(_addr("10.0.0.1", 1))
        transport = StringTransport()
        proto.makeConnection(transport)
        for _ in range(rng.randrange(1, 6)):
            proto.dataReceived(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        factory.clock.advance(0)
        proto.readConnectionLost()
        proto.connectionLost(None)
    assert factory.open == 0 and node.store.watch_count == 0
    assert node.stats.connections == 0


# == real processes ===========================================================================


def _read_frame(sock):
    head = _recv_exactly(sock, LENGTH.size)
    (length,) = LENGTH.unpack(head)
    response = Response()
    response.ParseFromString(_recv_exactly(sock, length))
    return response


def _recv_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def _call(sock, tag, verb, **fields):
    sock.sendall(_request(tag, verb, **fields))
    return _read_frame(sock)


def _rss(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _connect(address):
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _peer_auth_args(workdir):
    """``--peer-secret-file`` naming the cluster's secret (written in ``workdir``)."""
    path = os.path.join(workdir, "peer-secret")
    with open(path, "w", encoding="ascii") as f:
        f.write("hostile-client-test-secret-0123456789\n")
    os.chmod(path, 0o600)
    return ["--peer-secret-file", path]


_webs = {}


@pytest.fixture(scope="module")
def cluster():
    """Three in-memory nodes of one cluster, running this working tree."""
    import tempfile

    workdir = tempfile.mkdtemp(prefix="doozer-hostile-")
    ports = {f"n{i + 1}": free_ports(3) for i in range(3)}
    config = os.path.join(workdir, "cluster.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write("cluster: hostile\nnodes:\n")
        for name, (client, peer, web) in ports.items():
            f.write(f"  {name}:\n    listen: tcp:{client}:interface=127.0.0.1\n"
                    f"    web: tcp:{web}:interface=127.0.0.1\n"
                    f"    peer_listen: tcp:{peer}:interface=127.0.0.1\n")
    nodes = [Twistd(("--config", config, "--name", name, "--in-memory",
                     *_peer_auth_args(workdir)), workdir, name).launch()
             for name in ports]
    try:
        for node, (client, _, _) in zip(nodes, ports.values()):
            node.wait_ready(listening(client))
        nodes[0].wait_ready(writable(ports["n1"][0]))
        addresses = [f"127.0.0.1:{client}" for client, _, _ in ports.values()]
        _webs[tuple(addresses)] = [web for _, _, web in ports.values()]
        yield nodes, addresses
    finally:
        for node in nodes:
            node.kill()


def _latencies(address, seconds, verb="GET"):
    """Sequential small requests on a fresh connection for ``seconds``: latencies (s)."""
    out = []
    deadline = time.monotonic() + seconds
    tag = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            with _connect(address) as sock:
                while time.monotonic() < deadline:
                    tag += 1
                    started = time.monotonic()
                    if verb == "GET":
                        reply = _call(sock, tag, "GET", path="/probe")
                    else:
                        reply = _call(sock, tag, "SET", path="/probe", rev=-1, value=b"p")
                    assert not reply.HasField("err_code"), reply
                    out.append(time.monotonic() - started)
        except OSError:
            out.append(time.monotonic() - started)   # a timeout counts as its wait
    return out


def _p99(samples):
    if len(samples) < 2:
        return max(samples, default=float("inf"))
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _flood_non_reader(address, payload, seconds):
    """Send ``payload`` without ever reading, for up to ``seconds``; the socket."""
    sock = _connect(address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    view = memoryview(payload)
    deadline = time.monotonic() + seconds
    while view and time.monotonic() < deadline:
        _, writable, _ = select.select([], [sock], [], 0.05)
        if writable:
            try:
                view = view[sock.send(view[:65536]):]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                break
    return sock


def _max_rss_during(procs, seconds, probe_address):
    """(peak RSS over the nodes, probe latencies) while ``seconds`` pass."""
    peak = 0
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, max(_rss(p.pid) for p in procs))
        samples += _latencies(probe_address, 0.2)
    return peak, samples


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["doozer", "text"])
def test_non_reading_client_leaves_memory_bounded(cluster, protocol):
    procs, addresses = cluster
    with _connect(addresses[0]) as sock:
        assert not _call(sock, 1, "SET", path="/big", rev=-1, value=b"v" * MIB).HasField(
            "err_code")
        assert not _call(sock, 2, "SET", path="/probe", rev=-1, value=b"p").HasField(
            "err_code")
    before = max(_rss(p.pid) for p in procs)
    if protocol == "doozer":
        payload = b"".join(_request(i, "GET", path="/big") for i in range(1, 5001))
    else:
        payload = b"get /big\n" * 5000
    hogs = [_flood_non_reader(address, payload, 8.0) for address in addresses[:1]]
    baseline = _latencies(addresses[0], 1.0)
    peak, during = _max_rss_during(procs, 6.0, addresses[0])
    for hog in hogs:
        hog.close()
    grown = peak - before
    print(f"\n{protocol}: RSS before {before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB "
          f"(+{grown / MIB:.0f} MiB); probe GET p99 {_p99(during) * 1000:.1f} ms "
          f"(first second: {_p99(baseline) * 1000:.1f} ms), "
          f"max {max(during) * 1000:.1f} ms (n={len(during)})")
    assert grown < 200 * MIB
    assert max(during) < 1.0


@pytest.mark.e2e
def test_bulk_writer_does_not_stretch_another_clients_latency(cluster):
    procs, addresses = cluster
    quiet = _latencies(addresses[0], 2.0, verb="SET")
    sock = _connect(addresses[0])
    sock.setblocking(False)
    depth, sent, got = 512, 0, 0
    inbuf = bytearray()
    samples = []
    import threading
    stop = threading.Event()

    def probe():
        samples.extend(_latencies(addresses[0], 5.0, verb="SET"))
        stop.set()

    thread = threading.Thread(target=probe)
    thread.start()
    writes = 0
    outbuf = bytearray()
    while not stop.is_set():
        while sent - got < depth:
            sent += 1
            outbuf += _request(sent, "SET", path=f"/bulk/{sent % 64}", rev=-1, value=b"b" * 100)
        readable, writable, _ = select.select([sock], [sock] if outbuf else [], [], 0.05)
        if writable:
            try:
                del outbuf[:sock.send(outbuf)]
            except BlockingIOError:
                pass
        if readable:
            inbuf += sock.recv(1 << 20)
        while len(inbuf) >= 4:
            (n,) = struct.unpack_from(">I", inbuf)
            if len(inbuf) < 4 + n:
                break
            del inbuf[:4 + n]
            got += 1
            writes += 1
    thread.join()
    sock.close()
    print(f"\nquiet SET p99 {_p99(quiet) * 1000:.1f} ms; with a 512-deep bulk writer "
          f"({writes / 5:.0f} writes/s): p99 {_p99(samples) * 1000:.1f} ms, "
          f"max {max(samples) * 1000:.1f} ms (n={len(samples)})")
    assert _p99(samples) < 1.0


def _watchers(web_port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("doozer_watchers"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no doozer_watchers")


def _close_waits(pid, port):
    """Sockets of ``pid``'s network namespace in CLOSE-WAIT on local ``port``."""
    count = 0
    with open(f"/proc/{pid}/net/tcp", encoding="ascii") as f:
        for line in list(f)[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.split(":")[1], 16) == port and state == "08":
                count += 1
    return count


@pytest.mark.e2e
def test_clients_that_vanish_leave_no_watchers_sockets_or_fds(cluster):
    procs, addresses = cluster
    web = _webs[tuple(addresses)][0]
    pid, port = procs[0].pid, int(addresses[0].rsplit(":", 1)[1])
    time.sleep(0.5)
    watchers, fds = _watchers(web), len(os.listdir(f"/proc/{pid}/fd"))
    socks = []
    for i in range(30):
        sock = _connect(addresses[0])
        if i % 2:
            sock.sendall(_request(1, "WAIT", path=f"/nothing{i}", rev=10 ** 9)
                         + _request(2, "GET", path="/probe", rev=10 ** 9))
        else:
            sock.sendall(b"wait /nothing%d\nwatch /nothing/**\n" % i)
        socks.append(sock)
    time.sleep(0.5)
    assert _watchers(web) >= watchers + 30
    for i, sock in enumerate(socks):
        if i % 3:
            sock.close()                            # gone for good
        else:
            sock.shutdown(socket.SHUT_WR)           # half-closed, still reading
    time.sleep(0.5)
    print(f"\nwatchers {watchers} -> {_watchers(web)}, fds {fds} -> "
          f"{len(os.listdir(f'/proc/{pid}/fd'))}, CLOSE-WAIT {_close_waits(pid, port)}")
    assert _watchers(web) == watchers
    assert _close_waits(pid, port) == 0
    assert len(os.listdir(f"/proc/{pid}/fd")) <= fds
    for sock in socks[::3]:                         # the half-closed got their answers
        sock.settimeout(5)
        assert b"abandoned" in sock.recv(65536)
        sock.close()
