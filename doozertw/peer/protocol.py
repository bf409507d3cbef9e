"""The two ends of a peer connection: the dialer and the acceptor.

A connection carries payloads one way, from the node that dialed it (the
``DialerProtocol``, owned by an OutboundLink) to the node that accepted it
(the ``AcceptorProtocol``, owned by the PeerTransport). The acceptor sends
only its handshake reply and PONGs. Every node therefore has one outbound
connection per peer (its own link) and at most one inbound connection
per peer: when a peer connects again, the newer connection replaces the
older one (the peer only ever dials one at a time, so the older one is
dead from its side).

Both ends: the first frames are the handshake (see handshake.py; with a
cluster secret the dialer's HELLO, the acceptor's HELLO with its proof and
the dialer's AUTH, see auth.py; with TLS the claimed names are checked
against the certificates) with frames limited to ``max_handshake_frame``
bytes, and the connection is
aborted if it is not complete within ``handshake_timeout``. Afterwards
frames may be up to ``max_frame`` bytes, and a connection on which no byte
arrives for ``dead_after`` seconds is aborted. Any framing or protocol
violation aborts the connection. With a cluster secret every later frame
but REFUSE carries a tag (auth.FrameMac); a bad tag aborts the connection.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from doozertw.nodelay import tune_tcp
from doozertw.peer import auth
from doozertw.peer.framing import FrameDecoder, FrameKind, FramingError, frame_parts
from doozertw.peer.handshake import (
    AUTH_VERSION, PROTOCOL_VERSION, AuthFlags, Hello, HandshakeError, Refusal,
    RefuseCode, UnsupportedVersion, judge_hello, judge_reply,
)
from doozertw.peer.security import PeerSecurity

log = Logger(namespace="doozertw.peer")

_TIMESTAMP = struct.Struct(">d")


class PeerConnection(Protocol):
    """What both ends share: framing, handshake timer, liveness timer.

    ``closed`` fires (with None) when the connection is lost.
    ``peer_name`` is set once the handshake succeeds.
    """

    # An ITCPTransport while connected (the only time it is used); zope
    # interfaces are opaque to mypy, hence Any.
    transport: Any

    def __init__(self, local_name, cluster, limits, clock, registry, security=None):
        self.local_name = local_name
        self.security = security if security is not None else PeerSecurity()
        self.cluster = cluster
        self.limits = limits
        self.clock = clock
        self.registry = registry
        self.decoder = FrameDecoder(limits.max_handshake_frame)
        self.peer_name = None
        self.established = False
        self.closing = False
        self.closed = Deferred()
        self._handshake_timer = None
        self._dead_timer = None
        self._mac_out = None
        self._mac_in = None

    def connectionMade(self):
        tune_tcp(self.transport)
        self.registry.add(self)
        self._handshake_timer = self.clock.callLater(
            self.limits.handshake_timeout, self._handshake_timed_out)

    def dataReceived(self, data):
        if self.closing:
            return
        if self._dead_timer is not None and self._dead_timer.active():
            self._dead_timer.reset(self.limits.dead_after)
        self.decoder.push(data)
        while not self.closing:
            try:
                frame = self.decoder.next_frame()
            except FramingError as e:
                self.violation(str(e))
                return
            if frame is None:
                return
            if self.established:
                self._authentic_frame(*frame)
            else:
                self.handshake_frame(*frame)

    def _authentic_frame(self, kind, content):
        if self._mac_in is not None and kind != FrameKind.REFUSE:
            try:
                content = self._mac_in.open(kind, content)
            except auth.AuthError as e:
                self.violation(str(e))
                return
        self.frame_received(kind, content)

    def connectionLost(self, reason=None):
        self.closing = True
        self.registry.discard(self)
        for timer in (self._handshake_timer, self._dead_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.closed.callback(None)

    def send_frame(self, kind: FrameKind, content: bytes) -> None:
        trailer = self._mac_out.tag(kind, content) if self._mac_out is not None else b""
        self.transport.writeSequence(frame_parts(kind, content, trailer))

    def abort(self) -> None:
        """Close at once, discarding anything unsent."""
        if not self.closing:
            self.closing = True
            self.transport.abortConnection()

    def violation(self, reason: str) -> None:
        log.warn("peer connection violation from {peer}: {reason}; closing",
                 node=self.local_name, peer=self.peer_name or self._address(),
                 reason=reason)
        self.abort()

    def establish(self, peer_name: str, macs=None) -> None:
        """The handshake succeeded; ``macs`` is the (out, in) FrameMac pair
        of a secret-authenticated connection."""
        self.peer_name = peer_name
        self.established = True
        self.decoder.max_frame = self.limits.max_frame
        if macs is not None:
            self._mac_out, self._mac_in = macs
            self.decoder.max_frame += auth.TAG_SIZE
        if self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._dead_timer = self.clock.callLater(self.limits.dead_after, self._dead)

    def _handshake_timed_out(self):
        log.warn("peer handshake with {peer} timed out", node=self.local_name,
                 peer=self._address())
        self.abort()

    def _dead(self):
        log.warn("nothing heard from peer {peer} for {seconds}s; closing",
                 node=self.local_name, peer=self.peer_name,
                 seconds=self.limits.dead_after)
        self.abort()

    def _address(self) -> str:
        try:
            return str(self.transport.getPeer())
        except Exception:
            return "?"

    def handshake_frame(self, kind: FrameKind, content: bytes) -> None:
        raise NotImplementedError

    def frame_received(self, kind: FrameKind, content: bytes) -> None:
        raise NotImplementedError


@implementer(IPushProducer)
class DialerProtocol(PeerConnection):
    """The end an OutboundLink dials: sends HELLO, DATA and PINGs.

    Reports to its link: ``connection_made``, ``link_up``, ``link_failed``
    (with a reason, before the connection closes), ``connection_lost``,
    ``rtt_measured`` and, as the transport's push producer, ``paused`` /
    ``drain``.
    """

    def __init__(self, link, registry):
        super().__init__(link.local_name, link.cluster, link.limits,
                         link.clock, registry, getattr(link, "security", None))
        self.link = link
        self.paused = False
        self._ping_timer = None
        self._nonce = b""

    def connectionMade(self):
        super().connectionMade()
        flags = self.security.flags
        if flags:
            if flags & AuthFlags.SECRET:
                self._nonce = auth.new_nonce()
            hello = Hello(AUTH_VERSION, self.cluster, self.local_name,
                          self.link.peer_name, flags, self._nonce)
        else:
            hello = Hello(PROTOCOL_VERSION, self.cluster, self.local_name,
                          self.link.peer_name)
        self.send_frame(FrameKind.HELLO, hello.encode())
        self.link.connection_made(self)

    def handshake_frame(self, kind, content):
        if kind == FrameKind.REFUSE:
            self._refused(content)
        elif kind != FrameKind.HELLO:
            self.violation(f"{kind.name} frame before the handshake")
        else:
            self._reply(content)

    def _refused(self, content):
        try:
            refusal = Refusal.decode(content)
        except HandshakeError as e:
            refusal = Refusal(RefuseCode.OTHER, str(e))
        self.link.link_failed(self, f"refused ({refusal.code.name}): {refusal.detail}")
        self.abort()

    def _reply(self, content):
        try:
            reply = Hello.decode(content)
        except HandshakeError as e:
            self.link.link_failed(self, f"bad handshake reply: {e}")
            self.abort()
            return
        problem = (judge_reply(reply, self.cluster, self.local_name,
                               self.link.peer_name, self.security.flags)
                   or self.security.name_problem(self.transport, reply.sender))
        macs = None
        if problem is None and self.security.secret is not None:
            macs, problem = self._prove(reply)
        if problem is not None:
            self.link.link_failed(self, problem)
            self.abort()
            return
        self.establish(reply.sender, macs)
        self._ping_timer = self.clock.callLater(self.limits.ping_interval, self._ping)
        self.link.link_up(self)

    def _prove(self, reply):
        """Check the acceptor's proof and send ours: (macs, None) or
        (None, reason)."""
        secret = self.security.secret
        if len(reply.nonce) != auth.NONCE_SIZE:
            return None, "the acceptor sent no valid nonce"
        facts = auth.transcript(self.cluster, self.local_name, reply.sender,
                                self._nonce, reply.nonce)
        if not auth.check_proof(secret, auth.ACCEPTOR, facts, reply.proof):
            return None, "the acceptor's secret proof is wrong (a different peer secret?)"
        self.send_frame(FrameKind.AUTH, auth.proof(secret, auth.DIALER, facts))
        return auth.session_macs(secret, facts, auth.DIALER), None

    def frame_received(self, kind, content):
        if kind == FrameKind.REFUSE:
            self._refused(content)
            return
        if kind != FrameKind.PONG or len(content) != _TIMESTAMP.size:
            self.violation(f"unexpected {kind.name} frame from the acceptor")
            return
        (sent_at,) = _TIMESTAMP.unpack(content)
        rtt = self.clock.seconds() - sent_at
        if rtt >= 0:
            self.link.rtt_measured(rtt)

    def _ping(self):
        self._ping_timer = self.clock.callLater(self.limits.ping_interval, self._ping)
        self.send_frame(FrameKind.PING, _TIMESTAMP.pack(self.clock.seconds()))

    def send_data(self, payload: bytes) -> None:
        self.send_frame(FrameKind.DATA, payload)

    def connectionLost(self, reason=None):
        if self._ping_timer is not None and self._ping_timer.active():
            self._ping_timer.cancel()
        super().connectionLost(reason)
        self.link.connection_lost(self, reason)

    # IPushProducer: the TCP transport tells us when its buffer is full.
    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.link.drain()

    def stopProducing(self):
        self.paused = True


class AcceptorProtocol(PeerConnection):
    """The accepted end: answers HELLO (or refuses), delivers DATA, PONGs.

    ``hub`` (the PeerTransport) is told ``inbound_up(protocol)``,
    ``payload_received(peer_name, payload)`` and ``inbound_lost(protocol)``.
    """

    def __init__(self, hub, registry):
        super().__init__(hub.name, hub.cluster, hub.limits, hub.clock, registry,
                         getattr(hub, "security", None))
        self.hub = hub
        self._pending = None    # (hello, transcript) while awaiting AUTH

    def handshake_frame(self, kind, content):
        if self._pending is not None:
            if kind != FrameKind.AUTH:
                self.violation(f"{kind.name} frame instead of AUTH")
            else:
                self._authenticate(content)
            return
        if kind != FrameKind.HELLO:
            self.violation(f"{kind.name} frame before the handshake")
            return
        try:
            hello = Hello.decode(content)
        except UnsupportedVersion as e:
            self._refuse(Refusal(RefuseCode.BAD_VERSION, str(e)), None)
            return
        except HandshakeError as e:
            self._refuse(Refusal(RefuseCode.BAD_HELLO, str(e)), None)
            return
        refusal = self._judge(hello)
        if refusal is not None:
            self._refuse(refusal, hello)
            return
        flags = self.security.flags
        if not flags:
            reply = Hello(PROTOCOL_VERSION, self.cluster, self.local_name, hello.sender)
        elif self.security.secret is None:
            reply = Hello(AUTH_VERSION, self.cluster, self.local_name, hello.sender, flags)
        else:
            self._challenge(hello)
            return
        self.send_frame(FrameKind.HELLO, reply.encode())
        self._accept(hello.sender)

    def _judge(self, hello):
        security = self.security
        if security.closed:
            return Refusal(RefuseCode.AUTH_MISMATCH,
                           "this node has no peer authentication configured "
                           "and accepts no peers")
        refusal = judge_hello(hello, self.cluster, self.local_name, security.flags)
        if refusal is not None:
            return refusal
        if security.secret is not None and len(hello.nonce) != auth.NONCE_SIZE:
            return Refusal(RefuseCode.BAD_HELLO, "no valid nonce")
        problem = security.name_problem(self.transport, hello.sender)
        if problem is not None:
            return Refusal(RefuseCode.BAD_CERT, problem)
        return None

    def _challenge(self, hello):
        """Answer with our nonce and proof; the dialer's AUTH comes next."""
        secret = self.security.secret
        nonce = auth.new_nonce()
        facts = auth.transcript(self.cluster, hello.sender, self.local_name,
                                hello.nonce, nonce)
        reply = Hello(AUTH_VERSION, self.cluster, self.local_name, hello.sender,
                      self.security.flags, nonce, auth.proof(secret, auth.ACCEPTOR, facts))
        self._pending = (hello, facts)
        self.send_frame(FrameKind.HELLO, reply.encode())

    def _authenticate(self, offered):
        hello, facts = self._pending
        secret = self.security.secret
        if not auth.check_proof(secret, auth.DIALER, facts, offered):
            self._refuse(Refusal(RefuseCode.BAD_AUTH,
                                 "wrong secret proof (a different peer secret?)"), hello)
            return
        self._pending = None
        self._accept(hello.sender, auth.session_macs(secret, facts, auth.ACCEPTOR))

    def _accept(self, sender, macs=None):
        self.establish(sender, macs)
        self.hub.inbound_up(self)

    def _refuse(self, refusal: Refusal, hello: Hello | None) -> None:
        log.warn("refused peer {peer} at {address} (cluster {peer_cluster}): "
                 "{code} {detail}", node=self.local_name,
                 peer=hello.sender if hello else None,
                 peer_cluster=hello.cluster if hello else None,
                 address=self._address(), code=refusal.code.name,
                 detail=refusal.detail)
        self.send_frame(FrameKind.REFUSE, refusal.encode())
        self.closing = True
        self.transport.loseConnection()

    def frame_received(self, kind, content):
        if kind == FrameKind.DATA:
            self.hub.payload_received(self, content)
        elif kind == FrameKind.PING:
            self.send_frame(FrameKind.PONG, content)
        else:
            self.violation(f"unexpected {kind.name} frame from the dialer")

    def connectionLost(self, reason=None):
        super().connectionLost(reason)
        if self.established:
            self.hub.inbound_lost(self)
