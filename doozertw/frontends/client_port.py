"""The client port: doozer protobuf and the text protocol on one listening port.

A doozer client's first byte is the high byte of a frame length, and every
frame is far below 16 MiB, so it is 0x00; a person typing a text command
starts with a letter. ``SniffingProtocol`` looks at that first byte, builds
the matching protocol, hands it the transport and replays what it has read;
from then on the chosen protocol receives the connection's data and loss
directly.

The factory caps open connections (``limits.max_connections`` in all,
``limits.max_connections_per_address`` from one source address): a
connection past a cap is closed at once, before any byte is read, with a
log line (at most one a second; the others are counted in it). It also
holds the port's AccessThrottle, shared by all its connections.

With ``certificate_grants`` (the port requires client certificates,
``--client-ca``: doozertw.tlsutil.mutual_tls_endpoint) a connection whose
TLS peer presented a certificate, which the handshake verified, starts
with read-write rights: the certificate stands in for the secret.
"""

import collections

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from doozertw.frontends.access import Access, AccessThrottle
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.tlsutil import verified_client

DOOZER = "doozer"
TEXT = "text"


def default_protocols():
    """The real protocol classes, keyed by DOOZER and TEXT."""
    from doozertw.frontends.text import TextProtocol
    return {DOOZER: DoozerProtocol, TEXT: TextProtocol}


def choose(first_byte):
    """DOOZER for a doozer frame's first byte (0x00), else TEXT."""
    return DOOZER if first_byte == 0 else TEXT


@implementer(IHalfCloseableProtocol)
class SniffingProtocol(Protocol):
    """Waits for the first byte, then becomes a doozer or text connection.

    The chosen protocol is built as ``cls(node, secrets, limits, clock)``.
    A client's half-close goes to the chosen protocol when it handles one
    (it answers what was sent, then closes); otherwise the connection closes.
    """

    def __init__(self, factory, source=None):
        self.factory = factory
        self.source = source
        self.chosen = None

    def dataReceived(self, data):
        if not data:
            return
        kind = choose(data[0])
        factory = self.factory
        cls = factory.protocols[kind]
        chosen = cls(factory.node, factory.secrets, factory.limits, factory.clock)
        self.chosen = chosen
        access = getattr(chosen, "access", None)
        if isinstance(access, Access):
            access.throttle_by(factory.throttle, self.source)
            if factory.certificate_grants and verified_client(self.transport):
                access.grant_certificate()
        # Later data goes straight to the chosen protocol.
        self.dataReceived = chosen.dataReceived
        chosen.makeConnection(self.transport)
        chosen.dataReceived(data)

    def connectionLost(self, reason=None):
        """Release this connection's place; tell the chosen protocol, if any."""
        self.factory.released(self.source)
        if self.chosen is not None:
            self.chosen.connectionLost(reason)

    def readConnectionLost(self):
        chosen = IHalfCloseableProtocol(self.chosen, None)
        if chosen is None:
            self.transport.loseConnection()
        else:
            chosen.readConnectionLost()

    def writeConnectionLost(self):
        self.transport.loseConnection()


class ClientPortFactory(ServerFactory):
    """Builds a SniffingProtocol per connection to the client port.

    ``protocols`` maps DOOZER and TEXT to protocol classes (default: the
    real DoozerProtocol and TextProtocol); ``clock`` defaults to the global
    reactor. ``open`` counts open connections, ``by_source`` those of each
    source address (absent when none).
    """

    log = Logger()

    def __init__(self, node, secrets, limits, clock=None, protocols=None,
                 certificate_grants=False):
        if clock is None:
            from twisted.internet import reactor as clock
        self.certificate_grants = certificate_grants
        self.node = node
        self.secrets = secrets
        self.limits = limits
        self.clock = clock
        self.protocols = dict(protocols) if protocols is not None else default_protocols()
        self.throttle = AccessThrottle(clock, limits)
        self.open = 0
        self.by_source = collections.Counter()
        self._refused = 0
        self._logged_at = None

    def buildProtocol(self, addr):
        """A SniffingProtocol, or None (Twisted then closes the socket) past a cap."""
        source = getattr(addr, "host", None)
        limits = self.limits
        if self.open >= limits.max_connections:
            return self._refuse(addr, "max_connections", limits.max_connections)
        if source is not None and self.by_source[source] >= limits.max_connections_per_address:
            return self._refuse(addr, "max_connections_per_address",
                                limits.max_connections_per_address)
        self.open += 1
        if source is not None:
            self.by_source[source] += 1
        return SniffingProtocol(self, source)

    def released(self, source):
        """A connection built by this factory is gone."""
        self.open -= 1
        if source is not None:
            self.by_source[source] -= 1
            if self.by_source[source] <= 0:
                del self.by_source[source]

    def _refuse(self, addr, cap, limit):
        self._refused += 1
        now = self.clock.seconds()
        if self._logged_at is None or now - self._logged_at >= 1.0:
            self.log.warn("client port: refused {peer}: {cap} ({limit}) reached; "
                          "{refused} refused since the last such line",
                          peer=str(addr), cap=cap, limit=limit, refused=self._refused)
            self._logged_at = now
            self._refused = 0
        return None
