"""The client connection state machine (doozertw.frontends.connection) and the
two protocols that share it: one rule per test."""

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.frontends.access import Secrets
from doozertw.frontends.connection import (
    IN_FLIGHT, OUTPUT, ClientConnection, ConnState, InvalidTransition, _ALLOWED)
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.frontends.text import TextProtocol
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import CLOBBER, Store
from doozertw.testing.proposers import HeldProposer
from doozertw.wire import VERBS, Request, frame


class Owner:
    """A ConnectionOwner that records what the machine asks of it."""

    def __init__(self):
        self.calls = []
        self.answered = True

    def abandon_parked(self):
        self.calls.append("abandon")

    def all_answered(self):
        return self.answered

    def before_close(self):
        self.calls.append("before_close")

    def read_more(self):
        self.calls.append("read_more")


def _machine(limits=Limits()):
    node, owner, clock = Node(), Owner(), Clock()
    conn = ClientConnection("test", owner, node, limits, clock)
    transport = StringTransport()
    conn.made(transport)
    return conn, owner, transport, node, clock


# -- the transition table ----------------------------------------------------------------

@pytest.mark.parametrize("old", list(ConnState))
@pytest.mark.parametrize("new", list(ConnState))
def test_only_the_transitions_in_the_table_are_allowed(old, new):
    conn, *_ = _machine()
    conn.state = old
    if new in _ALLOWED[old]:
        conn.move(new, "test")
        assert conn.state is new
    else:
        with pytest.raises(InvalidTransition):
            conn.move(new, "test")
        assert conn.state is old


def test_closed_is_final():
    assert _ALLOWED[ConnState.CLOSED] == set()
    conn, _, _, node, _ = _machine()
    assert conn.lost() and not conn.lost()
    assert conn.state is ConnState.CLOSED and node.metrics().connections == 0


# -- events ----------------------------------------------------------------------------------

def test_half_close_abandons_then_closes_once_all_is_answered():
    conn, owner, transport, _, _ = _machine()
    owner.answered = False
    assert conn.half_closed()
    assert conn.state is ConnState.DRAINING and conn.input_ended
    assert owner.calls == ["abandon"] and not transport.disconnecting
    conn.settle()
    assert conn.state is ConnState.DRAINING
    owner.answered = True
    conn.settle()
    assert conn.state is ConnState.CLOSING and transport.disconnecting
    assert owner.calls == ["abandon", "before_close"]


def test_half_close_while_closing_is_ignored():
    conn, owner, transport, _, _ = _machine()
    conn.close("test")
    assert not conn.half_closed()
    assert conn.state is ConnState.CLOSING and conn.input_ended
    assert owner.calls == ["before_close"]


def test_close_writes_first_and_happens_once():
    conn, owner, transport, _, _ = _machine()
    assert conn.close("test") and not conn.close("again") and not conn.abort("again")
    assert owner.calls == ["before_close"] and transport.disconnecting


def test_abort_drops_output_without_writing_it():
    conn, owner, transport, _, _ = _machine()
    assert conn.abort("test")
    assert owner.calls == [] and transport.disconnected


def test_the_node_counts_the_connection_from_made_to_lost():
    conn, _, _, node, _ = _machine()
    assert node.metrics().connections == 1
    conn.close("test")
    assert node.metrics().connections == 1
    conn.lost()
    assert node.metrics().connections == 0


# -- the read gate --------------------------------------------------------------------------

def test_reading_resumes_only_when_the_last_reason_is_released():
    conn, _, transport, _, _ = _machine()
    conn.pause(IN_FLIGHT)
    conn.pause(OUTPUT)
    assert transport.producerState == "paused"
    assert not conn.release(IN_FLIGHT) and transport.producerState == "paused"
    assert not conn.release(IN_FLIGHT)            # not holding: nothing to release
    assert conn.release(OUTPUT) and transport.producerState == "producing"


def test_a_closed_connection_never_resumes_reading():
    conn, _, transport, _, _ = _machine()
    conn.pause(IN_FLIGHT)
    conn.close("test")
    assert not conn.release(IN_FLIGHT) and transport.producerState == "paused"


def test_a_turn_ends_and_reading_goes_on_in_the_next():
    conn, owner, transport, _, clock = _machine()
    conn.end_turn()
    conn.end_turn()
    assert transport.producerState == "paused" and len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert owner.calls == ["read_more"] and transport.producerState == "producing"


def test_closing_cancels_the_next_turn():
    conn, owner, _, _, clock = _machine()
    conn.end_turn()
    conn.close("test")
    assert clock.getDelayedCalls() == []


def test_unsent_bytes_count_only_while_the_output_is_full():
    conn, _, transport, _, _ = _machine(Limits(max_unsent=10))
    assert not conn.wrote(100) and conn.unsent == 0
    conn.output_paused()
    conn.output_paused()                           # said on every write: counts once
    assert transport.producerState == "paused"
    assert not conn.wrote(10) and conn.wrote(1) and conn.unsent == 11
    assert conn.output_resumed() and conn.unsent == 0
    assert transport.producerState == "producing"


# -- the protocols on the machine --------------------------------------------------------------

def _held_node():
    node = Node(store=Store(history=10))
    node.proposer = HeldProposer(node.store)
    return node


def _open(cls, node):
    proto = cls(node, Secrets(), Limits(), Clock())
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_doozer_half_close_flushes_pending_replies_then_closes():
    node = _held_node()
    proto, transport = _open(DoozerProtocol, node)
    proto.dataReceived(frame(Request(tag=1, verb=VERBS["SET"], path="/a", rev=CLOBBER,
                                     value=b"v")))
    proto.readConnectionLost()
    assert proto._conn.state is ConnState.DRAINING and not transport.disconnecting
    assert transport.value() == b""
    node.proposer.release_all()
    assert transport.value() != b"" and transport.disconnecting
    assert proto._conn.state is ConnState.CLOSING
    proto.connectionLost(None)
    assert proto._conn.state is ConnState.CLOSED and node.metrics().connections == 0


def test_text_half_close_flushes_pending_replies_then_closes():
    node = _held_node()
    proto, transport = _open(TextProtocol, node)
    proto.dataReceived(b"set /a 1\r\nrev\r\n")
    proto.readConnectionLost()
    assert proto._conn.state is ConnState.DRAINING and not transport.disconnecting
    node.proposer.release_all()
    assert transport.value() == b"OK REV 1\r\nOK REV 1\r\n" and transport.disconnecting
    assert proto._conn.state is ConnState.CLOSING


@pytest.mark.parametrize("cls", [DoozerProtocol, TextProtocol])
def test_a_lost_connection_cannot_be_reopened(cls):
    proto, _ = _open(cls, Node())
    proto.connectionLost(None)
    with pytest.raises(InvalidTransition):
        proto._conn.move(ConnState.OPEN, "test")
    proto.readConnectionLost()                     # a late half-close changes nothing
    assert proto._conn.state is ConnState.CLOSED


def test_text_output_pause_holds_commands_until_resumed():
    proto, transport = _open(TextProtocol, Node())
    proto.pauseProducing()
    proto.dataReceived(b"rev\r\n")
    assert transport.producerState == "paused" and transport.value() == b""
    proto.resumeProducing()
    proto.clock.advance(0)
    assert transport.producerState == "producing" and transport.value() == b"OK REV 0\r\n"


def test_doozer_output_pause_holds_requests_until_resumed():
    proto, transport = _open(DoozerProtocol, Node())
    proto.pauseProducing()
    proto.dataReceived(frame(Request(tag=7, verb=VERBS["REV"])))
    assert transport.producerState == "paused" and transport.value() == b""
    proto.resumeProducing()
    assert transport.producerState == "producing" and transport.value() != b""
