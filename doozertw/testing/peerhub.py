"""In-memory plumbing for peer transport tests (no sockets, no reactor).

A ``Hub`` is a PeerTransport on a MemoryReactorClock. ``connect_pending``
completes the newest dial a hub's link made by connecting it, through two
StringTransports, to another hub's acceptor; ``Pair.pump`` moves bytes
between them until both are quiet.
"""

import random

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from doozertw.peer import FaultInjector, PeerLimits, PeerTransport
from doozertw.peer.transport import _AcceptorFactory

CLUSTER = "test-cluster"


def endpoint_for(port):
    return f"tcp:host=127.0.0.1:port={port}"


class Hub:
    """A PeerTransport on its own fake reactor, recording what it receives."""

    def __init__(self, name, peers=None, cluster=CLUSTER, limits=PeerLimits(),
                 seed=1, faults=None, security=None):
        self.reactor = MemoryReactorClock()
        self.received = []
        self.transport = PeerTransport(
            name, cluster, peers or {}, self._on_message, reactor=self.reactor,
            limits=limits, rng=random.Random(seed),
            faults=faults if faults is not None else FaultInjector(random.Random(seed)),
            security=security)

    def _on_message(self, sender, payload):
        self.received.append((sender, payload))

    def dials(self):
        """(host, port) of every dial attempt so far, in order."""
        return [(c[0], c[1]) for c in self.reactor.tcpClients]

    def refuse_pending(self, index=-1):
        factory = self.reactor.tcpClients[index][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))


class Pair:
    """A dialer protocol and an acceptor protocol joined by StringTransports."""

    def __init__(self, client, client_transport, server, server_transport):
        self.client = client
        self.ct = client_transport
        self.server = server
        self.st = server_transport

    def pump(self, rounds=50):
        for _ in range(rounds):
            moved = False
            for src, dst in ((self.ct, self.server), (self.st, self.client)):
                data = src.value()
                if data and not src.disconnected:
                    src.clear()
                    dst.dataReceived(data)
                    moved = True
            if not moved:
                return

    def lose(self, reason=None):
        """Both ends see the connection close."""
        failure = Failure(reason or ConnectionLost())
        self.client.connectionLost(failure)
        self.server.connectionLost(failure)


def connect_pending(dialer: Hub, acceptor: Hub, index=-1, pump=True) -> Pair:
    """Complete dial ``index`` of ``dialer`` by connecting it to ``acceptor``."""
    host, port, factory = dialer.reactor.tcpClients[index][:3]
    addr = IPv4Address("TCP", host, port)
    client = factory.buildProtocol(addr)
    server = _AcceptorFactory(acceptor.transport).buildProtocol(addr)
    ct, st = StringTransport(), StringTransport()
    server.makeConnection(st)
    client.makeConnection(ct)
    pair = Pair(client, ct, server, st)
    if pump:
        pair.pump()
    return pair


def accept_raw(acceptor: Hub):
    """An acceptor protocol on a StringTransport, for hand-written bytes."""
    server = _AcceptorFactory(acceptor.transport).buildProtocol(None)
    st = StringTransport()
    server.makeConnection(st)
    return server, st
