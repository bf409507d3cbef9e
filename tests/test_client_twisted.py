"""The Twisted client end to end, in memory, against real DoozerProtocols and Nodes.

``Net`` connects client and server protocols with iosim pumps on a Clock;
two Nodes sharing one Store stand in for a replicated pair, so killing one
server and failing over to the other must lose and repeat nothing.
"""

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.test import iosim

from doozertw.client import (
    ConnectionLost, DoozerClient, DoozerError, ErrCode, State, WaitTimeout)
from doozertw.client.protocol import DoozerClientProtocol
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import DEL, SET, SetFile, Store

A, B = "10.0.0.1:8046", "10.0.0.2:8046"


class Net:
    """In-memory servers by address; ``flush()`` moves bytes until quiet."""

    def __init__(self, clock):
        self.clock = clock
        self.servers = {}
        self.down = set()
        self.pumps = []
        self.attempts = []

    def serve(self, address, node, secrets=Secrets()):
        self.servers[address] = (node, secrets)

    def connector(self, address):
        key = str(address)
        self.attempts.append(key)
        if key in self.down or key not in self.servers:
            return defer.fail(ConnectionRefusedError(key))
        node, secrets = self.servers[key]
        server = DoozerProtocol(node, secrets, Limits(), self.clock)
        client = DoozerClientProtocol()
        pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                             iosim.makeFakeClient(client), greet=False, clock=self.clock)
        pump.address = key
        self.pumps.append(pump)
        return defer.succeed(client)

    def flush(self):
        moved = True
        while moved:
            moved = False
            for pump in list(self.pumps):
                if pump.flush():
                    moved = True

    def kill(self, address, drop_unsent=True):
        """Stop a server: refuse new connections, cut existing ones."""
        self.down.add(address)
        for pump in self.pumps:
            if pump.address == address:
                if drop_unsent:
                    pump.serverIO.stream = []
                pump.serverIO.loseConnection()
        self.flush()
        self.pumps = [p for p in self.pumps if p.address != address]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return Store(history=50)


@pytest.fixture
def net(clock, store):
    net = Net(clock)
    net.serve(A, Node("a", store=store))
    net.serve(B, Node("b", store=store))
    return net


def make_client(net, clock, addresses=(A, B), **options):
    options.setdefault("suspend_timeout", 5.0)
    client = DoozerClient(list(addresses), reactor=clock, connector=net.connector, **options)
    states = []
    client.add_listener(states.append)
    return client, states


def settle(net, d):
    """Flush the network and return the Deferred's result (or raise its error)."""
    net.flush()
    out = []
    d.addBoth(out.append)
    net.flush()
    assert out, "deferred did not fire"
    if isinstance(out[0], Exception) or hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_verbs_round_trip(net, clock):
    client, states = make_client(net, clock)
    assert settle(net, client.set("/a/b", 0, b"one")) == 1
    assert settle(net, client.get("/a/b")) == (b"one", 1)
    assert settle(net, client.get("/missing")) == (b"", 0)
    assert settle(net, client.stat("/a")) == (1, -2)
    assert settle(net, client.getdir("/a")) == "b"
    assert settle(net, client.walk("/**")).path == "/a/b"
    assert settle(net, client.rev()) == 1
    assert settle(net, client.nop()) is None
    assert settle(net, client.self()) == "a"
    assert settle(net, client.set("/a/c", -1, "two")) == 2
    assert settle(net, client.delete("/a/c", 2)) == 3
    event = settle(net, client.wait("/a/*", 2))
    assert (event.rev, event.path, event.kind) == (2, "/a/c", SET)
    assert settle(net, client.wait("/a/*", 3)).kind == DEL
    assert states == [State.CONNECTING, State.CONNECTED]


def test_remove_listener_stops_it_and_ignores_one_not_added(net, clock):
    client, states = make_client(net, clock)
    client.remove_listener(print)                   # never added: ignored
    client.remove_listener(states.append)
    client.remove_listener(states.append)           # twice: ignored
    settle(net, client.rev())
    assert states == []                             # CONNECTING/CONNECTED not heard


def test_errors_carry_server_codes(net, clock):
    client, _ = make_client(net, clock)
    settle(net, client.set("/f", 0, b"x"))
    for d, code in [(client.set("/f", 0, b"y"), ErrCode.REV_MISMATCH),
                    (client.get("bad path"), ErrCode.BAD_PATH),
                    (client.getdir("/f"), ErrCode.NOTDIR),
                    (client.getdir("/", offset=5), ErrCode.RANGE)]:
        with pytest.raises(DoozerError) as info:
            settle(net, d)
        assert info.value.code == code


def test_many_requests_in_flight_and_helpers(net, clock):
    client, _ = make_client(net, clock)
    settle(net, client.connect())
    writes = [client.set(f"/d/f{i:02}", 0, str(i)) for i in range(40)]
    pump = net.pumps[0]
    assert pump.client.in_flight == 40
    assert sorted(settle(net, defer.gatherResults(writes))) == list(range(1, 41))
    assert settle(net, client.getdir_all("/d")) == [f"f{i:02}" for i in range(40)]
    events = settle(net, client.walk_all("/d/*"))
    assert [e.value for e in events] == [str(i).encode() for i in range(40)]
    assert settle(net, client.find("/"))[:3] == ["/", "/d", "/d/f00"]
    assert settle(net, client.tree("/d"))[1] == ("/d/f00", False, 1, 1)


def test_pinned_reads_see_the_past(net, clock):
    client, _ = make_client(net, clock)
    settle(net, client.set("/x", 0, b"old"))
    settle(net, client.set("/x", -1, b"new"))
    assert settle(net, client.get("/x", 1)) == (b"old", 1)
    assert settle(net, client.getdir_all("/", 1)) == ["x"]


def test_watch_callback_sees_every_change_once(net, clock):
    client, _ = make_client(net, clock)
    seen = []
    watch = client.watch("/w/**", callback=seen.append)
    net.flush()
    for i in range(5):
        settle(net, client.set(f"/w/{i}", 0, b"v"))
    settle(net, client.set("/other", 0, b"v"))
    assert [e.path for e in seen] == [f"/w/{i}" for i in range(5)]
    watch.stop()
    settle(net, client.set("/w/9", 0, b"v"))
    assert len(seen) == 5
    assert settle(net, watch.done) is None


def test_failover_resumes_watch_without_loss_or_repeat(net, clock, store):
    client, states = make_client(net, clock)
    seen = []
    client.watch("/w/*", rev=1, callback=seen.append)
    settle(net, client.set("/w/0", 0, b"0"))
    assert settle(net, client.self()) == "a"
    net.kill(A)
    # Changes made while the watcher is away (through the other server).
    other, _ = make_client(net, clock, addresses=(B,))
    for i in range(1, 4):
        settle(net, other.set(f"/w/{i}", 0, str(i)))
    clock.advance(1)
    net.flush()
    assert states[-2:] == [State.SUSPENDED, State.CONNECTED]
    assert settle(net, client.self()) == "b"
    settle(net, client.set("/w/4", 0, b"4"))
    assert [e.rev for e in seen] == [1, 2, 3, 4, 5]
    assert [e.path for e in seen] == [f"/w/{i}" for i in range(5)]


def test_reads_in_flight_are_resent_writes_fail(net, clock):
    client, _ = make_client(net, clock)
    settle(net, client.connect())
    read = client.get("/x")
    write = client.set("/x", -1, b"v")
    nop = client.nop()
    net.pumps[0].clientIO.stream = []          # requests never reach A
    net.kill(A)
    with pytest.raises(ConnectionLost):
        settle(net, write)
    with pytest.raises(ConnectionLost):
        settle(net, nop)
    assert settle(net, read) == (b"", 0)
    assert net.attempts == [A, B]


def test_requests_wait_while_suspended(net, clock):
    client, states = make_client(net, clock)
    settle(net, client.connect())
    net.down.add(B)
    net.kill(A)
    d = client.rev()
    net.flush()
    assert not d.called and client.state == State.SUSPENDED
    net.down.discard(B)
    clock.advance(0.5)
    assert settle(net, d) == 0
    assert client.state == State.CONNECTED


def test_gives_up_after_suspend_timeout_and_watch_fails_loudly(net, clock):
    client, states = make_client(net, clock, suspend_timeout=3.0)
    watch = client.watch("/**", rev=1)
    net.flush()
    net.down.add(B)
    net.kill(A)
    read = client.get("/x")
    for _ in range(40):
        clock.advance(0.1)
        net.flush()
    assert states[-1] == State.LOST
    with pytest.raises(ConnectionLost):
        settle(net, read)
    with pytest.raises(ConnectionLost):
        settle(net, watch.done)
    with pytest.raises(ConnectionLost):
        settle(net, watch.next())
    # Backoff: far fewer attempts than ticks, alternating addresses.
    assert 4 <= len(net.attempts) < 30 and net.attempts[:3] == [A, B, A]
    # The next request starts over once a server is back.
    net.down.clear()
    assert settle(net, client.rev()) == 0
    assert states[-2:] == [State.CONNECTING, State.CONNECTED]


def test_too_late_surfaces_as_an_error(net, clock, store):
    client, _ = make_client(net, clock)
    for i in range(60):
        settle(net, client.set("/f", -1, str(i)))
    watch = client.watch("/f", rev=1)
    with pytest.raises(DoozerError) as info:
        settle(net, watch.done)
    assert info.value.code == ErrCode.TOO_LATE
    with pytest.raises(DoozerError):
        settle(net, client.get("/f", 2))


def test_wait_timeout(net, clock):
    client, _ = make_client(net, clock)
    d = client.wait("/never", 1, timeout=2.0)
    net.flush()
    clock.advance(2.5)
    with pytest.raises(WaitTimeout):
        settle(net, d)
    watch = client.watch("/never", rev=1, timeout=1.0)
    net.flush()
    clock.advance(1.5)
    with pytest.raises(WaitTimeout):
        settle(net, watch.done)


def test_async_iteration(net, clock):
    client, _ = make_client(net, clock)
    watch = client.watch("/q/*", rev=1)

    async def take(n):
        out = []
        async for event in watch:
            out.append(event.path)
            if len(out) == n:
                return out

    d = defer.ensureDeferred(take(3))
    for i in range(4):
        settle(net, client.set(f"/q/{i}", 0, b""))
    assert settle(net, d) == ["/q/0", "/q/1", "/q/2"]
    assert settle(net, watch.next()).path == "/q/3"
    watch.stop()
    with pytest.raises(StopAsyncIteration):
        settle(net, watch.next())


def test_secret_is_presented_on_every_connection(clock, store):
    net = Net(clock)
    secrets = Secrets(rw=b"k")
    net.serve(A, Node("a", store=store), secrets)
    net.serve(B, Node("b", store=store), secrets)
    client = DoozerClient(f"doozer:?ca={A}&ca={B}&sk=k", reactor=clock,
                          connector=net.connector)
    assert settle(net, client.set("/s", 0, b"v")) == 1
    net.kill(A)
    assert settle(net, client.get("/s")) == (b"v", 1)


def test_wrong_secret_gives_up_at_once(clock, store):
    net = Net(clock)
    net.serve(A, Node("a", store=store), Secrets(rw=b"k"))
    client = DoozerClient([A], secret="nope", reactor=clock, connector=net.connector)
    states = []
    client.add_listener(states.append)
    with pytest.raises(DoozerError) as info:
        settle(net, client.rev())
    assert "permission denied" in str(info.value)
    assert states[-1] == State.LOST and net.attempts == [A]


def test_without_secret_the_server_refuses(clock, store):
    net = Net(clock)
    net.serve(A, Node("a", store=store), Secrets(rw=b"k"))
    client = DoozerClient([A], reactor=clock, connector=net.connector)
    with pytest.raises(DoozerError):
        settle(net, client.rev())
    assert settle(net, client.access("k")) is None
    assert settle(net, client.rev()) == 0


def test_close_fails_everything(net, clock):
    client, states = make_client(net, clock)
    settle(net, client.connect())
    d = client.wait("/x", 1)
    net.flush()
    client.close()
    net.flush()
    with pytest.raises(ConnectionLost):
        settle(net, d)
    with pytest.raises(ConnectionLost):
        settle(net, client.rev())
    assert states[-1] == State.CLOSED


def test_answer_lost_in_transit_is_delivered_once_after_failover(net, clock, store):
    client, _ = make_client(net, clock)
    seen = []
    client.watch("/lost/*", rev=1, callback=seen.append)
    net.flush()
    store.apply(SetFile("/lost/a", 0, b"1"))       # A answers the WAIT...
    assert net.pumps[0].serverIO.stream             # ...but the answer is still queued
    net.kill(A)                                     # and dies with it
    net.flush()
    store.apply(SetFile("/lost/b", 0, b"2"))
    net.flush()
    assert [(e.rev, e.path) for e in seen] == [(1, "/lost/a"), (2, "/lost/b")]


def test_connection_lost_right_after_connecting_is_retried(net, clock, store):
    real = net.connector
    calls = []

    def flaky(address):
        calls.append(str(address))
        d = real(address)
        if len(calls) == 1:
            d.addCallback(lambda proto: (proto.connectionLost(None), proto)[1])
        return d

    client = DoozerClient([A, B], reactor=clock, connector=flaky, suspend_timeout=5.0)
    assert settle(net, client.self()) == "b"
    assert calls == [A, B] and client.state == State.CONNECTED
