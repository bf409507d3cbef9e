"""TCP_NODELAY on every connection the project makes or accepts (Nagle plus
the peer's delayed ACK held a forwarded write for ~45 ms)."""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.client.protocol import DoozerClientProtocol
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.frontends.text import TextProtocol
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.nodelay import disable_nagle
from doozertw.testing.peerhub import Hub, accept_raw


class TCPTransport(StringTransport):
    """A StringTransport that records setTcpNoDelay like a TCP transport."""

    no_delay = False

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


class Refusing(StringTransport):
    def setTcpNoDelay(self, enabled):
        raise OSError("not a socket any more")


def test_disable_nagle_sets_no_delay_on_tcp_only():
    tcp = TCPTransport()
    assert disable_nagle(tcp) and tcp.no_delay
    assert not disable_nagle(StringTransport())  # not TCP: left alone
    assert not disable_nagle(Refusing())         # a closed socket: no error


def test_client_ports_and_the_client_set_no_delay():
    ports = [kind(Node(), Secrets(), Limits(), Clock()) for kind in (DoozerProtocol, TextProtocol)]
    for proto in ports + [DoozerClientProtocol()]:
        transport = TCPTransport()
        proto.makeConnection(transport)
        assert transport.no_delay, type(proto).__name__


def test_peer_connections_set_no_delay():
    server, _ = accept_raw(Hub("b"))
    transport = TCPTransport()
    server.makeConnection(transport)
    assert transport.no_delay


def test_the_web_port_sets_no_delay():
    from doozertw.frontends.web.conn import GuardedChannel
    channel = GuardedChannel()
    transport = TCPTransport()
    channel.makeConnection(transport)
    assert transport.no_delay
