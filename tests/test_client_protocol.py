"""DoozerClientProtocol against scripted responses on a StringTransport."""

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from doozertw.client.core import ConnectionLost, ResponseReader, call
from doozertw.client.protocol import DoozerClientProtocol
from doozertw.errors import DoozerError, ErrCode
from doozertw.wire import FLAG_SET, VERBS, Request, Response, frame
from doozertw.store import SET, Event


def connected():
    proto = DoozerClientProtocol()
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def sent_requests(transport):
    data = transport.value()
    transport.clear()
    out = []
    while data:
        length = int.from_bytes(data[:4], "big")
        request = Request()
        request.ParseFromString(data[4:4 + length])
        out.append(request)
        data = data[4 + length:]
    return out


def results(ds):
    out = []
    for d in ds:
        d.addBoth(out.append)
    return out


def test_requests_are_pipelined_with_distinct_tags():
    proto, transport = connected()
    ds = [proto.send(call("GET", path=f"/f{i}")) for i in range(3)]
    requests = sent_requests(transport)
    assert [r.path for r in requests] == ["/f0", "/f1", "/f2"]
    assert len({r.tag for r in requests}) == 3
    assert all(r.verb == VERBS["GET"] for r in requests)
    assert proto.in_flight == 3
    got = results(ds)
    assert got == []


def test_out_of_order_answers_are_matched_by_tag():
    proto, transport = connected()
    d_wait = proto.send(call("WAIT", path="/**", rev=5))
    d_rev = proto.send(call("REV"))
    wait_req, rev_req = sent_requests(transport)
    got_wait, got_rev = results([d_wait]), results([d_rev])
    proto.dataReceived(frame(Response(tag=rev_req.tag, rev=7)))
    assert got_rev == [7] and got_wait == []
    answer = frame(Response(tag=wait_req.tag, rev=6, path="/a", value=b"x", flags=FLAG_SET))
    proto.dataReceived(answer[:5])
    assert got_wait == []
    proto.dataReceived(answer[5:])
    assert got_wait == [Event(6, "/a", b"x", SET)]
    assert proto.in_flight == 0


def test_error_answers_fail_with_the_server_code():
    proto, transport = connected()
    d = proto.send(call("SET", path="/a", rev=0, value=b"v"))
    (request,) = sent_requests(transport)
    assert request.value == b"v" and request.rev == 0
    got = results([d])
    proto.dataReceived(frame(Response(tag=request.tag, err_code=ErrCode.REV_MISMATCH)))
    assert isinstance(got[0].value, DoozerError)
    assert got[0].value.code == ErrCode.REV_MISMATCH


def test_answers_for_unknown_tags_are_ignored():
    proto, transport = connected()
    d = proto.send(call("REV"))
    (request,) = sent_requests(transport)
    got = results([d])
    proto.dataReceived(frame(Response(tag=request.tag + 100, rev=1)))
    assert got == []
    proto.dataReceived(frame(Response(tag=request.tag, rev=2)))
    assert got == [2]


def test_cancelled_request_keeps_its_tag_until_answered():
    proto, transport = connected()
    d = proto.send(call("WAIT", path="/a", rev=1))
    (wait_req,) = sent_requests(transport)
    d.cancel()
    assert d.called
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    proto.send(call("REV"))
    (rev_req,) = sent_requests(transport)
    assert rev_req.tag != wait_req.tag
    assert wait_req.tag in proto._tags
    proto.dataReceived(frame(Response(tag=wait_req.tag, rev=1, path="/a", flags=FLAG_SET)))
    assert proto.in_flight == 1
    assert wait_req.tag not in proto._tags and rev_req.tag in proto._tags


def test_connection_lost_fails_pending_after_telling_the_owner():
    proto, transport = connected()
    order = []
    proto.on_lost = lambda p, reason: order.append("on_lost")
    d = proto.send(call("GET", path="/a"))
    d.addErrback(lambda f: order.append(type(f.value)))
    proto.connectionLost(None)
    assert order == ["on_lost", ConnectionLost]
    failed = results([proto.send(call("REV"))])
    assert isinstance(failed[0].value, ConnectionLost)


def test_garbage_from_the_server_aborts_the_connection():
    proto, transport = connected()
    proto.dataReceived(b"\x7f\xff\xff\xff")
    assert transport.disconnecting


def test_reader_limit_is_configurable():
    proto = DoozerClientProtocol(max_frame=8)
    assert isinstance(proto._reader, ResponseReader)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(frame(Response(tag=1, value=b"0123456789")))
    assert transport.disconnecting


@pytest.mark.parametrize("verb", ["SET", "DEL"])
def test_write_verbs_send_rev(verb):
    proto, transport = connected()
    proto.send(call(verb, path="/a", rev=-1))
    (request,) = sent_requests(transport)
    assert request.verb == VERBS[verb] and request.rev == -1


class Answer:
    """An ``answer`` object for ``send``: records what it is given."""

    def __init__(self):
        self.got = []

    def callback(self, result):
        self.got.append(("ok", result))

    def errback(self, error):
        self.got.append(("error", error))


def test_answer_objects_take_the_outcome_instead_of_a_deferred():
    proto, transport = connected()
    ok, bad, lost = Answer(), Answer(), Answer()
    assert proto.send(call("REV"), ok) is ok
    proto.send(call("GET", path="/x"), bad)
    proto.send(call("SET", path="/y", rev=0, value=b"v"), lost)
    rev_req, get_req, _ = sent_requests(transport)
    proto.dataReceived(frame(Response(tag=rev_req.tag, rev=9))
                       + frame(Response(tag=get_req.tag, err_code=6, err_detail="bad")))
    assert ok.got == [("ok", 9)]
    (kind, error), = bad.got
    assert kind == "error" and error.code == ErrCode.BAD_PATH
    proto.connectionLost(None)
    (kind, error), = lost.got
    assert kind == "error" and isinstance(error, ConnectionLost)
    late = Answer()
    assert proto.send(call("REV"), late) is late
    assert isinstance(late.got[0][1], ConnectionLost)


def test_requests_made_while_answering_go_out_in_one_write():
    proto, transport = connected()
    writes = []
    transport.writeSequence = lambda seq: writes.append(list(seq))
    ds = [proto.send(call("GET", path=f"/f{i}")) for i in range(3)]
    requests = sent_requests(transport)
    for d in ds:
        d.addCallback(lambda _: proto.send(call("REV")))
    proto.dataReceived(b"".join(frame(Response(tag=r.tag, rev=1)) for r in requests))
    assert len(writes) == 1 and len(writes[0]) == 3
    assert transport.value() == b""          # nothing went out piecemeal
    proto.send(call("NOP"))                  # outside a batch: written at once
    assert [r.verb for r in sent_requests(transport)] == [VERBS["NOP"]]


def test_nagle_is_disabled_on_tcp_transports():
    calls = []

    class TCPish(StringTransport):
        def setTcpNoDelay(self, enabled):
            calls.append(enabled)

    DoozerClientProtocol().makeConnection(TCPish())
    assert calls == [True]
