"""One outbound link: the connection this node dials to one peer.

States (``LinkState``) and the only transitions allowed:

    IDLE --start--> CONNECTING --connected--> HANDSHAKING --welcomed--> UP
    CONNECTING / HANDSHAKING / UP --failure or loss--> BACKING_OFF
    BACKING_OFF --timer--> CONNECTING
    any --stop--> STOPPED (final)

Every transition is logged with structured fields (node, peer, old, new,
reason). Payloads wait in a bounded SendQueue (see sendqueue.py) and are
written, in order, whenever the link is UP and the TCP transport is not
pushing back; nothing blocks the caller. A payload already handed to a
connection that then fails is lost (Raft retransmits).
"""

from __future__ import annotations

import enum

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from doozertw.peer.backoff import Backoff
from doozertw.peer.protocol import DialerProtocol
from doozertw.peer.security import PeerSecurity
from doozertw.peer.sendqueue import SendQueue

log = Logger(namespace="doozertw.peer")


class LinkState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    UP = "up"
    BACKING_OFF = "backing-off"
    STOPPED = "stopped"


_ALLOWED = {
    LinkState.IDLE: {LinkState.CONNECTING, LinkState.STOPPED},
    LinkState.CONNECTING: {LinkState.HANDSHAKING, LinkState.BACKING_OFF,
                           LinkState.STOPPED},
    LinkState.HANDSHAKING: {LinkState.UP, LinkState.BACKING_OFF, LinkState.STOPPED},
    LinkState.UP: {LinkState.BACKING_OFF, LinkState.STOPPED},
    LinkState.BACKING_OFF: {LinkState.CONNECTING, LinkState.STOPPED},
    LinkState.STOPPED: set(),
}


class InvalidTransition(RuntimeError):
    """A link was asked to move between states that are not connected."""


class _DialerFactory(Factory):
    noisy = False

    def __init__(self, link, registry):
        self.link = link
        self.registry = registry

    def buildProtocol(self, addr):
        return DialerProtocol(self.link, self.registry)


class OutboundLink:
    """Dials ``endpoint`` to reach ``peer_name`` and keeps it connected.

    ``security`` (PeerSecurity) says how the peer is authenticated (TLS
    wraps the endpoint). ``reactor`` must provide the reactor's TCP/connect interfaces and
    IReactorTime (a MemoryReactorClock in tests). ``registry`` is a set in
    which live connections enter and leave (for the transport's stop).
    The counters are public: ``sent_messages``, ``sent_bytes``, ``connects``
    (successful handshakes), ``failures``, ``rtt`` (last ping round trip in
    seconds, or None), ``last_failure`` (reason text).
    """

    def __init__(self, local_name, cluster, peer_name, endpoint, reactor,
                 limits, rng, registry, security=None):
        self.local_name = local_name
        self.cluster = cluster
        self.peer_name = peer_name
        self.endpoint_string = endpoint
        self.security = security if security is not None else PeerSecurity()
        self.endpoint = self.security.client_endpoint(reactor, endpoint, peer_name)
        self.clock = reactor
        self.limits = limits
        self.queue = SendQueue(limits.max_queue_messages, limits.max_queue_bytes)
        self.backoff = Backoff(limits.backoff_initial, limits.backoff_max, rng)
        self.state = LinkState.IDLE
        self.protocol = None
        self.sent_messages = 0
        self.sent_bytes = 0
        self.connects = 0
        self.failures = 0
        self.rtt = None
        self.last_failure = None
        self._factory = _DialerFactory(self, registry)
        self._connecting = None
        self._retry = None
        self._failure_reason = None

    # -- the caller's side --------------------------------------------------

    def start(self) -> None:
        self._dial()

    def send(self, payload: bytes) -> int:
        """Queue ``payload`` and write what can be written; return drops."""
        dropped = self.queue.push(payload)
        if dropped:
            log.debug("peer queue to {peer} full: dropped {dropped} oldest",
                      node=self.local_name, peer=self.peer_name, dropped=dropped)
        self.drain()
        return dropped

    def stop(self) -> None:
        """Close the link for good; queued payloads are discarded."""
        if self.state is LinkState.STOPPED:
            return
        self._transition(LinkState.STOPPED, "stopped")
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        if self.protocol is not None:
            self.protocol.abort()
            self.protocol = None
        self.queue.clear()

    def drain(self) -> None:
        """Write queued payloads while the link is up and not paused."""
        proto = self.protocol
        if self.state is not LinkState.UP or proto is None:
            return
        while len(self.queue) and not proto.paused and not proto.closing:
            payload = self.queue.pop()
            proto.send_data(payload)
            self.sent_messages += 1
            self.sent_bytes += len(payload)

    # -- state machine ------------------------------------------------------

    def _transition(self, new: LinkState, reason: str) -> None:
        old = self.state
        if new not in _ALLOWED[old]:
            raise InvalidTransition(f"{old.value} -> {new.value}")
        self.state = new
        emit = log.info if new in (LinkState.UP, LinkState.STOPPED) else log.debug
        if old is LinkState.UP:
            emit = log.warn
        emit("peer link {node} -> {peer}: {old} -> {new} ({reason})",
             node=self.local_name, peer=self.peer_name, old=old.value,
             new=new.value, reason=reason, endpoint=self.endpoint_string)

    def _dial(self) -> None:
        self._transition(LinkState.CONNECTING, "dialing")
        self._failure_reason = None
        d = self.endpoint.connect(self._factory)
        self._connecting = d
        d.addTimeout(self.limits.connect_timeout, self.clock)
        d.addErrback(self._connect_failed, d)

    def _connect_failed(self, failure, d) -> None:
        if self._connecting is not d:
            return None       # cancelled by stop(), or already connected
        self._connecting = None
        self._fail(f"connect failed: {failure.getErrorMessage()}")
        return None

    def _fail(self, reason: str) -> None:
        self.failures += 1
        self.last_failure = reason
        self._transition(LinkState.BACKING_OFF, reason)
        delay = self.backoff.next_delay()
        self._retry = self.clock.callLater(delay, self._dial)

    # -- reports from the DialerProtocol ------------------------------------

    def connection_made(self, proto) -> None:
        if self.state is not LinkState.CONNECTING:
            proto.abort()
            return
        self._connecting = None
        self.protocol = proto
        self._transition(LinkState.HANDSHAKING, "connected")

    def link_failed(self, proto, reason: str) -> None:
        """The handshake failed; the connection is about to close."""
        if proto is self.protocol:
            self._failure_reason = reason
            log.warn("peer link {node} -> {peer} handshake failed: {reason}",
                     node=self.local_name, peer=self.peer_name, reason=reason)

    def link_up(self, proto) -> None:
        if proto is not self.protocol:
            return
        self.connects += 1
        self.backoff.reset()
        self._transition(LinkState.UP, "handshake complete")
        proto.transport.registerProducer(proto, True)
        self.drain()

    def connection_lost(self, proto, reason) -> None:
        if proto is not self.protocol:
            return
        self.protocol = None
        if self.state is LinkState.STOPPED:
            return
        why = self._failure_reason
        if why is None:
            why = "connection lost: " + (reason.getErrorMessage() if reason else "?")
        self._fail(why)

    def rtt_measured(self, seconds: float) -> None:
        self.rtt = seconds
