"""A client that half-closes (``printf ... | nc host 8046``) still gets every answer;
its waits and watches end at once (a closed client looks the same)."""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.frontends.access import Secrets
from doozertw.frontends.client_port import ClientPortFactory
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.wire import VERBS, Request, frame
from doozertw.frontends.text import TextProtocol
from doozertw.limits import Limits


def _connect(proto):
    transport = StringTransport()
    proto.makeConnection(transport)
    return transport


def _text(node, clock=None):
    proto = TextProtocol(node, Secrets(), Limits(), clock or Clock())
    return proto, _connect(proto)


def test_text_answers_every_command_then_closes(node):
    proto, transport = _text(node)
    proto.dataReceived(b"set /message hello, world\r\nget /message\r\nget /par")
    proto.readConnectionLost()
    assert transport.value() == b"OK REV 1\r\nOK VALUE 1 12\r\nhello, world\r\n"
    assert transport.disconnecting


def test_text_pending_wait_is_abandoned_on_half_close(node):
    """A closed client looks half-closed: its wait must not outlive it."""
    proto, transport = _text(node)
    proto.dataReceived(b"wait /later 1\r\nrev\r\n")
    proto.readConnectionLost()
    assert node.store.watch_count == 0
    assert transport.value() == (b"ERR OTHER abandoned: the client closed its side\r\n"
                                 b"OK REV 0\r\n")
    assert transport.disconnecting


def test_text_watch_ends_on_half_close(node):
    proto, transport = _text(node)
    proto.dataReceived(b"watch /w/*\r\n")
    proto.readConnectionLost()
    assert node.store.watch_count == 0
    assert transport.value() == b"OK WATCHING 1\r\n" and transport.disconnecting


def test_text_commands_held_by_the_in_flight_limit_are_still_answered(node):
    clock = Clock()
    proto = TextProtocol(node, Secrets(), Limits(max_in_flight=1), clock)
    transport = _connect(proto)
    proto.dataReceived(b"wait /x 1\r\nrev\r\nrev\r\n")
    proto.readConnectionLost()
    node.set("/x", -1, b"v")
    clock.advance(0)
    clock.advance(0)
    assert transport.value().endswith(b"OK REV 1\r\nOK REV 1\r\n")
    assert transport.disconnecting


def _doozer(node):
    proto = DoozerProtocol(node, Secrets(), Limits(), Clock())
    return proto, _connect(proto)


def test_doozer_answers_every_request_then_closes(node):
    proto, transport = _doozer(node)
    proto.dataReceived(frame(Request(tag=1, verb=VERBS["SET"], path="/a", rev=-1, value=b"x"))
                       + frame(Request(tag=2, verb=VERBS["GET"], path="/a")))
    proto.readConnectionLost()
    assert transport.disconnecting
    assert transport.value().count(b"\x00\x00\x00") == 2


def test_doozer_abandons_a_pending_wait_on_half_close(node):
    proto, transport = _doozer(node)
    proto.dataReceived(frame(Request(tag=1, verb=VERBS["WAIT"], path="/a", rev=1)))
    proto.readConnectionLost()
    assert node.store.watch_count == 0
    assert transport.disconnecting and b"abandoned" in transport.value()


def test_client_port_forwards_the_half_close_to_the_chosen_protocol(node):
    factory = ClientPortFactory(node, Secrets(), Limits(), Clock())
    proto = factory.buildProtocol(None)
    transport = _connect(proto)
    proto.dataReceived(b"set /k v\r\n")
    proto.readConnectionLost()
    assert transport.value() == b"OK REV 1\r\n" and transport.disconnecting


def test_client_port_closes_on_half_close_before_any_byte(node):
    proto = ClientPortFactory(node, Secrets(), Limits(), Clock()).buildProtocol(None)
    transport = _connect(proto)
    proto.readConnectionLost()
    assert transport.disconnecting
