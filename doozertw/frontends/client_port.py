"""The client port: doozer protobuf and the text protocol on one listening port.

A doozer client's first byte is the high byte of a frame length, and every
frame is far below 16 MiB, so it is 0x00; a person typing a text command
starts with a letter. ``SniffingProtocol`` looks at that first byte, builds
the matching protocol, hands it the transport and replays what it has read;
from then on the chosen protocol receives the connection's data and loss
directly.
"""

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, ServerFactory
from zope.interface import implementer

from doozertw.frontends.doozer import DoozerProtocol

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

    def __init__(self, factory):
        self.factory = factory
        self.chosen = None

    def dataReceived(self, data):
        if not data:
            return
        kind = choose(data[0])
        factory = self.factory
        cls = factory.protocols[kind]
        chosen = cls(factory.node, factory.secrets, factory.limits, factory.clock)
        self.chosen = chosen
        # Later data and loss go straight to the chosen protocol.
        self.dataReceived = chosen.dataReceived
        self.connectionLost = chosen.connectionLost
        chosen.makeConnection(self.transport)
        chosen.dataReceived(data)

    def connectionLost(self, reason=None):
        """Lost before the first byte: nothing was chosen, nothing to tell."""

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
    reactor.
    """

    def __init__(self, node, secrets, limits, clock=None, protocols=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.node = node
        self.secrets = secrets
        self.limits = limits
        self.clock = clock
        self.protocols = dict(protocols) if protocols is not None else default_protocols()

    def buildProtocol(self, addr):
        return SniffingProtocol(self)
