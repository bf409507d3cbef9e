"""The client-port sniffer: the first byte picks doozer protobuf or text."""

import pytest
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from doozertw.frontends.access import Secrets
from doozertw.frontends.client_port import (
    DOOZER, TEXT, ClientPortFactory, SniffingProtocol, choose)
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.wire import LENGTH, VERBS, Request, Response, frame
from doozertw.limits import Limits


class Recorder(Protocol):
    """A stand-in protocol that records how it was built and what it got."""

    built = []

    def __init__(self, node, secrets, limits, clock):
        self.args = (node, secrets, limits, clock)
        self.received = []
        self.lost = []
        self.made_with = None
        Recorder.built.append(self)

    def connectionMade(self):
        self.made_with = self.transport

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason=None):
        self.lost.append(reason)


class TextDouble(Recorder):
    pass


class DoozerDouble(Recorder):
    pass


@pytest.fixture
def parts(node):
    Recorder.built = []
    return node, Secrets(rw=b"s"), Limits(max_line=100), Clock()


def connect(factory):
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def doubles_factory(parts):
    node, secrets, limits, clock = parts
    return ClientPortFactory(node, secrets, limits, clock,
                             protocols={DOOZER: DoozerDouble, TEXT: TextDouble})


def test_choose_by_first_byte():
    assert choose(0) == DOOZER
    for byte in b"gsGS\r\n \x01\xff":
        assert choose(byte) == TEXT


def test_text_branch_gets_transport_and_replayed_bytes(parts):
    factory = doubles_factory(parts)
    proto, transport = connect(factory)
    assert isinstance(proto, SniffingProtocol) and Recorder.built == []
    proto.dataReceived(b"get /a\r\n")
    (chosen,) = Recorder.built
    assert type(chosen) is TextDouble
    assert chosen.args == parts
    assert chosen.made_with is transport and chosen.transport is transport
    assert chosen.received == [b"get /a\r\n"]
    proto.dataReceived(b"rev\r\n")
    assert chosen.received == [b"get /a\r\n", b"rev\r\n"]
    reason = Failure(ConnectionError("gone"))
    proto.connectionLost(reason)
    assert chosen.lost == [reason]


def test_doozer_branch(parts):
    factory = doubles_factory(parts)
    proto, transport = connect(factory)
    data = frame(Request(tag=1, verb=VERBS["REV"]))
    proto.dataReceived(data[:1])
    (chosen,) = Recorder.built
    assert type(chosen) is DoozerDouble and chosen.received == [data[:1]]
    proto.dataReceived(data[1:])
    assert b"".join(chosen.received) == data
    assert len(Recorder.built) == 1


def test_empty_read_and_early_loss_choose_nothing(parts):
    proto, _ = connect(doubles_factory(parts))
    proto.dataReceived(b"")
    proto.connectionLost(Failure(ConnectionError("gone")))
    assert Recorder.built == []


def test_real_doozer_protocol_through_the_sniffer(node):
    clock = Clock()
    factory = ClientPortFactory(node, Secrets(), Limits(), clock,
                                protocols={DOOZER: DoozerProtocol, TEXT: TextDouble})
    proto, transport = connect(factory)
    data = (frame(Request(tag=1, verb=VERBS["SET"], path="/m", rev=0, value=b"hi"))
            + frame(Request(tag=2, verb=VERBS["GET"], path="/m")))
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert isinstance(proto.chosen, DoozerProtocol)
    out = transport.value()
    replies = []
    while out:
        (n,) = LENGTH.unpack_from(out)
        replies.append(Response.FromString(out[4:4 + n]))
        out = out[4 + n:]
    assert [(r.tag, r.rev) for r in replies] == [(1, 1), (2, 1)]
    assert replies[1].value == b"hi"
    assert node.stats.connections == 1
    proto.connectionLost(None)
    assert node.stats.connections == 0


def test_default_protocols_are_the_real_classes(node):
    text = pytest.importorskip("doozertw.frontends.text")
    factory = ClientPortFactory(node, Secrets(), Limits(), Clock())
    assert factory.protocols == {DOOZER: DoozerProtocol, TEXT: text.TextProtocol}
    proto, transport = connect(factory)
    proto.dataReceived(b"r")
    assert isinstance(proto.chosen, text.TextProtocol)
    assert proto.chosen.transport is transport
