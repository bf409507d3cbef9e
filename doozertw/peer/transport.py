"""PeerTransport: opaque payloads between named nodes of one cluster.

The transport knows nothing of Raft. ``send(to, payload)`` queues a byte
string for a peer and returns at once; the peer's ``on_message(from,
payload)`` is called with it. Payloads to one peer arrive in the order
sent, but any of them may be lost (queue overflow, a connection failing
mid-flight, fault injection): the caller must tolerate loss, as Raft does.

Each node dials every peer it knows (one OutboundLink each, reconnecting
with backoff) and accepts connections from any node of the same cluster,
whether or not it is in ``peers`` (so a node joining as a learner can talk
before it has been added here). Node identity is the name exchanged in
the handshake, authenticated as ``security`` (PeerSecurity) says: a
cluster secret or mutual TLS (docs/security.md); without either (only
with ``--insecure-peers``) anyone who can reach the port can claim any name.
"""

from __future__ import annotations

import random
from typing import Callable

import attrs
from twisted.internet.defer import DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from doozertw.peer.faults import Direction, FaultInjector
from doozertw.peer.limits import PeerLimits
from doozertw.peer.link import LinkState, OutboundLink
from doozertw.peer.protocol import AcceptorProtocol
from doozertw.peer.security import PeerSecurity

log = Logger(namespace="doozertw.peer")


class PayloadTooLarge(ValueError):
    """``send`` was given a payload that cannot fit in one frame."""


@attrs.frozen
class PeerStats:
    """A snapshot of what the transport knows about one peer.

    ``state`` is the outbound link's LinkState value, or None for a node
    that has connected to us but is not in our peer list. ``dropped``
    counts payloads discarded by the full send queue; ``rtt`` is the last
    measured ping round trip in seconds (None before the first pong).
    """

    name: str
    endpoint: str | None
    state: str | None
    queued_messages: int
    queued_bytes: int
    sent_messages: int
    sent_bytes: int
    dropped: int
    received_messages: int
    received_bytes: int
    connects: int
    failures: int
    rtt: float | None
    inbound: bool


class _AcceptorFactory(Factory):
    noisy = False

    def __init__(self, hub):
        self.hub = hub

    def buildProtocol(self, addr):
        return AcceptorProtocol(self.hub, self.hub.connections)


class PeerTransport:
    """Sends and receives opaque payloads to and from named peers.

    - ``name``: this node's name; ``cluster``: the cluster name every peer
      must share; ``peers``: node name -> client endpoint string to dial
      (e.g. ``"tcp:host=127.0.0.1:port=7046"``), dialed immediately.
    - ``on_message(from_name, payload)``: called for every payload received;
      an exception it raises is logged and does not affect the connection.
    - ``reactor``: connect/listen/time provider (default: global reactor).
    - ``limits``: PeerLimits; ``faults``: a FaultInjector (default: one with
      no rules, available as ``self.faults``); ``rng``: random.Random for
      backoff jitter.
    - ``security``: a PeerSecurity (default: unauthenticated peers accepted).
    """

    def __init__(self, name: str, cluster: str, peers: dict[str, str],
                 on_message: Callable[[str, bytes], None], reactor=None,
                 limits: PeerLimits = PeerLimits(),
                 faults: FaultInjector | None = None,
                 rng: random.Random | None = None,
                 security: PeerSecurity | None = None):
        if reactor is None:
            from twisted.internet import reactor
        if not name or not cluster:
            raise ValueError("node and cluster names must not be empty")
        self.name = name
        self.cluster = cluster
        self.on_message = on_message
        self.reactor = reactor
        self.clock = reactor
        self.limits = limits
        self.security = security if security is not None else PeerSecurity()
        self.faults = faults if faults is not None else FaultInjector()
        self.rng = rng if rng is not None else random.Random()
        self.links: dict[str, OutboundLink] = {}
        self.inbound: dict[str, AcceptorProtocol] = {}
        self.connections: set = set()
        self.ports: list = []
        self.unknown_dropped = 0
        self._received: dict[str, list[int]] = {}
        self._delayed: set = set()
        self._stopped = False
        for peer, endpoint in peers.items():
            self.add_peer(peer, endpoint)

    # -- public API ---------------------------------------------------------

    def listen(self, endpoint: str):
        """Listen for peers on a server endpoint string; Deferred[IListeningPort]."""
        factory = self.security.server_factory(_AcceptorFactory(self))
        d = serverFromString(self.reactor, endpoint).listen(factory)

        def listening(port):
            self.ports.append(port)
            log.info("peer transport {node} listening on {address} "
                     "(peer authentication: {auth})", node=self.name,
                     address=str(port.getHost()), auth=self.security.describe())
            return port
        return d.addCallback(listening)

    def send(self, to_name: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``to_name`` without blocking.

        Returns False (and counts ``unknown_dropped``) if ``to_name`` is not
        a peer or the transport is stopped; raises PayloadTooLarge if it
        exceeds ``limits.max_payload``.
        Loss after this point is silent, as on a network.
        """
        if len(payload) > self.limits.max_payload:
            raise PayloadTooLarge(
                f"{len(payload)} bytes exceeds the peer frame limit "
                f"of {self.limits.max_payload}")
        if to_name not in self.links or self._stopped:
            self.unknown_dropped += 1
            log.debug("no peer {peer}: payload dropped", node=self.name, peer=to_name)
            return False
        for delay in self.faults.decide(to_name, Direction.OUT):
            if delay:
                self._later(delay, self._enqueue, to_name, payload)
            else:
                self._enqueue(to_name, payload)
        return True

    def add_peer(self, name: str, endpoint: str) -> None:
        """Start dialing ``name`` at ``endpoint`` (replacing any old endpoint;
        what was queued for the old one is dropped)."""
        if name == self.name:
            raise ValueError(f"{name!r} is this node's own name")
        if self._stopped:
            raise RuntimeError("transport is stopped")
        old = self.links.get(name)
        if old is not None:
            if old.endpoint_string == endpoint:
                return
            old.stop()
        link = OutboundLink(self.name, self.cluster, name, endpoint, self.reactor,
                            self.limits, self.rng, self.connections, self.security)
        self.links[name] = link
        link.start()

    def remove_peer(self, name: str) -> None:
        """Stop dialing ``name`` and drop what is queued for it.

        An inbound connection from ``name`` is left open: what it sends is
        still delivered (the consensus layer ignores non-members).
        """
        link = self.links.pop(name, None)
        if link is not None:
            link.stop()

    def stats(self) -> dict[str, PeerStats]:
        """Per-peer statistics, for every peer and every inbound node."""
        names = set(self.links) | set(self.inbound) | set(self._received)
        return {name: self._stats(name) for name in sorted(names)}

    def stop(self):
        """Close every link, connection and listening port.

        Returns a Deferred that fires once all of them are closed.
        """
        if self._stopped:
            return succeed(None)
        self._stopped = True
        for call in list(self._delayed):
            if call.active():
                call.cancel()
        self._delayed.clear()
        for link in self.links.values():
            link.stop()
        waits = [port.stopListening() for port in self.ports]
        self.ports = []
        for conn in list(self.connections):
            waits.append(conn.closed)
            conn.abort()
        return DeferredList([w for w in waits if w is not None], consumeErrors=True)

    # -- reports from AcceptorProtocol --------------------------------------

    def inbound_up(self, proto: AcceptorProtocol) -> None:
        name = proto.peer_name
        old = self.inbound.get(name)
        self.inbound[name] = proto
        if old is not None and old is not proto:
            log.info("newer connection from peer {peer} replaces the older one",
                     node=self.name, peer=name)
            old.abort()
        log.info("peer {peer} connected to {node}", node=self.name, peer=name)

    def drop_inbound(self, name: str) -> None:
        """Close the connection peer ``name`` dialed to us, if any."""
        proto = self.inbound.get(name)
        if proto is not None:
            log.warn("closing the link from peer {peer}: it sent a bad payload",
                     node=self.name, peer=name)
            proto.abort()

    def inbound_lost(self, proto: AcceptorProtocol) -> None:
        if self.inbound.get(proto.peer_name) is proto:
            del self.inbound[proto.peer_name]

    def payload_received(self, proto: AcceptorProtocol, payload: bytes) -> None:
        name = proto.peer_name
        counts = self._received.setdefault(name, [0, 0])
        counts[0] += 1
        counts[1] += len(payload)
        for delay in self.faults.decide(name, Direction.IN):
            if delay:
                self._later(delay, self._deliver, name, payload)
            else:
                self._deliver(name, payload)

    # -- internals ----------------------------------------------------------

    def _enqueue(self, to_name: str, payload: bytes) -> None:
        link = self.links.get(to_name)
        if link is not None:
            link.send(payload)

    def _deliver(self, from_name: str, payload: bytes) -> None:
        if self._stopped:
            return
        try:
            self.on_message(from_name, payload)
        except Exception:
            log.failure("on_message failed for a payload from {peer}",
                        node=self.name, peer=from_name)

    def _later(self, delay: float, fn, *args) -> None:
        def run():
            self._delayed.discard(call)
            fn(*args)
        call = self.clock.callLater(delay, run)
        self._delayed.add(call)

    def _stats(self, name: str) -> PeerStats:
        link = self.links.get(name)
        received = self._received.get(name, (0, 0))
        return PeerStats(
            name=name,
            endpoint=link.endpoint_string if link else None,
            state=link.state.value if link else None,
            queued_messages=len(link.queue) if link else 0,
            queued_bytes=link.queue.bytes if link else 0,
            sent_messages=link.sent_messages if link else 0,
            sent_bytes=link.sent_bytes if link else 0,
            dropped=link.queue.dropped if link else 0,
            received_messages=received[0],
            received_bytes=received[1],
            connects=link.connects if link else 0,
            failures=link.failures if link else 0,
            rtt=link.rtt if link else None,
            inbound=name in self.inbound,
        )

    def link_state(self, name: str) -> LinkState | None:
        link = self.links.get(name)
        return link.state if link else None
