"""Write-through on plain TCP (doozertw.writethrough): bytes go out at once
when nothing is queued, in order, and a full socket buffer, a paused
reader and a closed peer behave as Twisted's own buffered path does. Real
loopback sockets: the kernel's buffers are the point."""

import pytest_twisted
from twisted.internet import defer, protocol, reactor, task, tcp
from twisted.internet.testing import StringTransport

from doozertw.writethrough import WriteThroughServer, write_through
from doozertw.testing.polling import wait_until


class Collect(protocol.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class Served(protocol.Protocol):
    """The server side: gets write-through when connected."""

    instances: list = []

    def connectionMade(self):
        self.through = write_through(self.transport)
        Served.instances.append(self)


async def connected_pair():
    Served.instances = []
    factory = protocol.Factory.forProtocol(Served)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = Collect()
    creator = protocol.ClientCreator(reactor, lambda: client)
    await creator.connectTCP("127.0.0.1", port.getHost().port)
    await wait_until(lambda: Served.instances)
    return port, Served.instances[0], client


def queued(transport):
    return transport._tempDataLen + len(transport.dataBuffer) - transport.offset


@pytest_twisted.ensureDeferred
async def test_small_writes_leave_at_once_in_order_and_nothing_is_queued():
    port, server, client = await connected_pair()
    try:
        assert server.through and isinstance(server.transport, WriteThroughServer)
        server.transport.write(b"one ")
        assert queued(server.transport) == 0       # sent before the reactor's next pass
        server.transport.writeSequence([b"two ", b"three"])
        assert queued(server.transport) == 0
        await wait_until(lambda: bytes(client.data) == b"one two three")
    finally:
        server.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_reader_that_does_not_read_gets_everything_in_order_once_it_does():
    port, server, client = await connected_pair()
    try:
        client.transport.pauseProducing()                 # the kernel buffers fill up
        chunks = [bytes([65 + i % 26]) * 65536 for i in range(64)]   # 4 MiB
        for chunk in chunks:
            server.transport.write(chunk)
        assert queued(server.transport) > 0               # the rest waits in Twisted's buffer
        server.transport.write(b"tail")                   # behind the queue, never before it
        client.transport.resumeProducing()
        expected = b"".join(chunks) + b"tail"
        await wait_until(lambda: len(client.data) == len(expected), timeout=30)
        assert bytes(client.data) == expected
    finally:
        server.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_write_after_lose_connection_still_goes_out_before_the_close():
    port, server, client = await connected_pair()
    try:
        server.transport.write(b"last words")
        server.transport.loseConnection()
        server.transport.write(b", then these")         # Twisted's rule: queued, then closed
        await client.lost
        assert bytes(client.data) == b"last words, then these"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_writing_to_a_reset_connection_raises_nothing_and_closes_it():
    port, server, client = await connected_pair()
    try:
        lost = defer.Deferred()
        server.connectionLost = lambda reason: lost.callback(reason)
        client.transport.abortConnection()
        await client.lost
        for _ in range(100):
            if lost.called:
                break
            server.transport.write(b"x" * 1024)         # EPIPE/ECONNRESET stay inside
            await task.deferLater(reactor, 0.01, lambda: None)
        assert lost.called and not server.transport.connected
    finally:
        await port.stopListening()


def test_only_plain_twisted_tcp_gets_it():
    assert not write_through(StringTransport())

    class NotQuiteTCP(tcp.Server):
        pass

    fake = NotQuiteTCP.__new__(NotQuiteTCP)
    assert not write_through(fake)                          # a subclass we do not know
    tls = tcp.Server.__new__(tcp.Server)
    tls.TLS = True
    assert not write_through(tls)
