"""The peer transport over real TCP on 127.0.0.1 ephemeral ports."""

import random

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from doozertw.peer import LinkState, PeerLimits, PeerTransport

CLUSTER = "tcp-test"
FAST = PeerLimits(backoff_initial=0.02, backoff_max=0.2, ping_interval=0.1)


class Node:
    """A transport plus what it received."""

    def __init__(self, name, cluster=CLUSTER, limits=FAST):
        self.name = name
        self.received = []
        self.transport = PeerTransport(
            name, cluster, {}, lambda s, p: self.received.append((s, p)),
            reactor=reactor, limits=limits, rng=random.Random(name))
        self.port = None

    def listen(self, port=0):
        d = self.transport.listen(f"tcp:{port}:interface=127.0.0.1")
        d.addCallback(self._listening)
        return d

    def _listening(self, port):
        self.port = port.getHost().port
        return port

    @property
    def endpoint(self):
        return f"tcp:host=127.0.0.1:port={self.port}"

    def from_(self, sender):
        return [p for s, p in self.received if s == sender]


def wait_until(predicate, timeout=5.0, step=0.01):
    """A Deferred that fires when predicate() is true (fails on timeout)."""
    deadline = reactor.seconds() + timeout

    async def poll():
        while not predicate():
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out waiting for {predicate.__doc__}")
            await deferLater(reactor, step, lambda: None)
    return Deferred.fromCoroutine(poll())


async def mesh(names):
    nodes = {n: Node(n) for n in names}
    for node in nodes.values():
        await node.listen()
    for node in nodes.values():
        for other in nodes.values():
            if other is not node:
                node.transport.add_peer(other.name, other.endpoint)
    return nodes


async def stop_all(nodes):
    for node in nodes:
        await node.transport.stop()


@pytest_twisted.ensureDeferred
async def test_three_transports_exchange_messages_in_order():
    nodes = await mesh("abc")
    try:
        for sender in nodes.values():
            for to in nodes.values():
                if to is not sender:
                    for i in range(50):
                        sender.transport.send(to.name, f"{sender.name}{i}".encode())

        def all_arrived():
            "every node has 100 messages"
            return all(len(n.received) == 100 for n in nodes.values())
        await wait_until(all_arrived)
        for node in nodes.values():
            for sender in nodes:
                if sender != node.name:
                    assert node.from_(sender) == [f"{sender}{i}".encode()
                                                  for i in range(50)]
        await wait_until(lambda: all(s.rtt is not None
                                     for n in nodes.values()
                                     for s in n.transport.stats().values()))
    finally:
        await stop_all(nodes.values())


@pytest_twisted.ensureDeferred
async def test_peers_reconnect_when_a_node_returns_on_its_port():
    nodes = await mesh("abc")
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    try:
        def links_up():
            "all links up"
            return all(s.state == "up" for n in (a, b, c)
                       for s in n.transport.stats().values() if s.state)
        await wait_until(links_up)
        port = c.port
        await c.transport.stop()                      # c dies

        def c_unreachable():
            "a and b lost c"
            return (a.transport.link_state("c") is not LinkState.UP
                    and b.transport.link_state("c") is not LinkState.UP)
        await wait_until(c_unreachable)
        a.transport.send("c", b"while-down-a")
        b.transport.send("c", b"while-down-b")
        assert a.transport.stats()["c"].queued_messages == 1

        c2 = Node("c")                                # c restarts, same port
        await c2.listen(port)
        c2.transport.add_peer("a", a.endpoint)
        c2.transport.add_peer("b", b.endpoint)
        nodes["c"] = c2
        await wait_until(lambda: len(c2.received) == 2)
        assert sorted(c2.received) == [("a", b"while-down-a"), ("b", b"while-down-b")]
        assert a.transport.stats()["c"].connects == 2
        c2.transport.send("a", b"back")
        await wait_until(lambda: ("c", b"back") in a.received)
    finally:
        await stop_all(nodes.values())


@pytest_twisted.ensureDeferred
async def test_node_of_another_cluster_is_refused_over_tcp():
    a = Node("a")
    intruder = Node("x", cluster="other")
    await a.listen()
    try:
        intruder.transport.add_peer("a", a.endpoint)
        intruder.transport.send("a", b"hello?")
        link = intruder.transport.links["a"]
        await wait_until(lambda: link.failures >= 2)
        assert "WRONG_CLUSTER" in link.last_failure
        assert a.received == [] and a.transport.inbound == {}
    finally:
        await stop_all([a, intruder])


@pytest_twisted.ensureDeferred
async def test_large_payload_crosses_intact():
    nodes = await mesh("ab")
    try:
        big = random.Random(7).randbytes(8 * 1024 * 1024)
        for _ in range(3):
            nodes["a"].transport.send("b", big)
        nodes["a"].transport.send("b", b"tail")
        await wait_until(lambda: len(nodes["b"].received) == 4, timeout=20)
        assert nodes["b"].from_("a") == [big, big, big, b"tail"]
    finally:
        await stop_all(nodes.values())
