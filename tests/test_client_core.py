"""The pure client core: calls, tags, frame reading, results, URIs, plans."""

import attrs
import pytest

from doozertw.client import plans
from doozertw.client.core import (
    Call, ConnectionLost, ProtocolViolation, ResponseReader, Tags, WaitTimeout, call, result_of)
from doozertw.client.uri import (
    Address, InvalidURI, make_uri, parse_address, parse_uri, resolve)
from doozertw.errors import DoozerError, ErrCode
from doozertw.wire import FLAG_DEL, FLAG_SET, VERBS, Request, Response, frame
from doozertw.store import DEL, SET, Event


def test_call_encodes_only_given_fields():
    data = call("GET", path="/a").encode(7)
    request = Request()
    request.ParseFromString(data[4:])
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert (request.tag, request.verb, request.path) == (7, VERBS["GET"], "/a")
    assert not request.HasField("rev") and not request.HasField("offset")


def test_call_keeps_zero_and_negative_revs():
    request = call("SET", path="/a", rev=0, value="v").request(1)
    assert request.HasField("rev") and request.rev == 0 and request.value == b"v"
    assert call("DEL", path="/a", rev=-1).request(2).rev == -1


def test_unknown_verb_is_refused():
    with pytest.raises(ValueError):
        call("FROB")


def test_only_reads_and_waits_are_retriable():
    assert all(call(v).retriable for v in ("GET", "REV", "WAIT", "WALK", "GETDIR", "STAT", "SELF"))
    assert not any(call(v).retriable for v in ("SET", "DEL", "NOP"))


def test_tags_are_reused_only_after_release():
    tags = Tags()
    assert [tags.take() for _ in range(3)] == [0, 1, 2]
    tags.release(1)
    assert tags.take() == 3
    assert 1 not in tags and 2 in tags
    tags._next = Tags.MAX
    assert tags.take() == Tags.MAX
    assert tags.take() == 1


def test_response_reader_splits_and_joins_frames():
    data = frame(Response(tag=1, rev=5)) + frame(Response(tag=2, path="x"))
    reader = ResponseReader()
    first = reader.feed(data[:3])
    assert first == []
    got = reader.feed(data[3:-1]) + reader.feed(data[-1:])
    assert [(r.tag, r.rev, r.path) for r in got] == [(1, 5, ""), (2, 0, "x")]


def test_response_reader_rejects_oversized_and_garbage_frames():
    with pytest.raises(ProtocolViolation):
        ResponseReader(max_frame=10).feed(b"\x00\x00\x00\x0b" + b"\x00" * 11)
    with pytest.raises(ProtocolViolation):
        ResponseReader().feed(b"\x00\x00\x00\x02\xff\xff")


@pytest.mark.parametrize("verb, response, expected", [
    ("GET", Response(tag=1, rev=3, value=b"v"), (b"v", 3)),
    ("GET", Response(tag=1, rev=0), (b"", 0)),
    ("SET", Response(rev=9), 9),
    ("REV", Response(rev=4), 4),
    ("STAT", Response(len=2, rev=-2), (2, -2)),
    ("GETDIR", Response(path="name"), "name"),
    ("SELF", Response(value=b"n1"), "n1"),
    ("NOP", Response(), None),
    ("WAIT", Response(rev=5, path="/a", value=b"x", flags=FLAG_SET), Event(5, "/a", b"x", SET)),
    ("WALK", Response(rev=6, path="/a", flags=FLAG_DEL), Event(6, "/a", b"", DEL)),
])
def test_results(verb, response, expected):
    assert result_of(verb, response) == expected


def test_errors_carry_code_and_detail():
    with pytest.raises(DoozerError) as info:
        result_of("SET", Response(err_code=ErrCode.REV_MISMATCH, err_detail="old"))
    assert info.value.code == ErrCode.REV_MISMATCH and info.value.detail == "old"
    assert str(info.value) == "REV_MISMATCH: old"


def test_client_errors_are_doozer_errors_printing_their_detail():
    assert isinstance(ConnectionLost(), DoozerError)
    assert str(WaitTimeout()) == "wait timeout"
    assert ConnectionLost().code == ErrCode.OTHER


def test_uri_parsing():
    uri = parse_uri("doozer:?ca=10.0.0.1:8046&ca=h2:9&cn=prod&sk=s3cret")
    assert uri.addresses == (Address("10.0.0.1", 8046), Address("h2", 9))
    assert uri.cluster == "prod" and uri.secret == b"s3cret"
    assert parse_uri(make_uri(["a:1", "b"], "c", "k")) == parse_uri(
        "doozer:?ca=a:1&ca=b:8046&cn=c&sk=k")


@pytest.mark.parametrize("bad", ["http://x", "doozer:?cn=x", "doozer:?ca=h:notaport",
                                 "doozer:?ca=h:70000", "doozer:?ca=:1"])
def test_bad_uris(bad):
    with pytest.raises(InvalidURI):
        parse_uri(bad)


def test_addresses_and_resolve():
    assert parse_address("[::1]:7") == Address("::1", 7)
    assert str(Address("::1", 7)) == "[::1]:7"
    assert parse_address("h") == Address("h", 8046)
    assert resolve(["a:1", ("b", 2)], secret="k").addresses == (Address("a", 1), Address("b", 2))
    assert resolve("a:1", secret="k").secret == b"k"
    assert resolve("doozer:?ca=a:1", secret="x").secret == b"x"
    with pytest.raises(InvalidURI):
        resolve([])


class FakeStore:
    """Answers plan calls from a dict of files, at one revision."""

    def __init__(self, files, rev=10):
        self.files = files
        self.rev = rev
        self.batches = []

    def entries(self, path):
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)})

    def answer(self, c):
        assert c.verb == "REV" or c.rev == self.rev
        if c.verb == "REV":
            return self.rev
        if c.verb == "STAT":
            if c.path in self.files:
                return (len(self.files[c.path]), 1)
            entries = self.entries(c.path)
            return (len(entries), -2) if entries or c.path == "/" else (0, 0)
        if c.verb == "GETDIR":
            entries = self.entries(c.path)
            if c.offset >= len(entries):
                return DoozerError(ErrCode.RANGE)
            return entries[c.offset]
        raise AssertionError(c)

    def many(self, calls):
        self.batches.append(len(calls))
        return [self.answer(c) for c in calls]


def test_find_plan_lists_depth_first_in_name_order():
    store = FakeStore({"/a/x": b"1", "/a/y/z": b"22", "/b": b""})
    found = plans.drive_blocking(plans.find("/"), store.many)
    assert found == ["/", "/a", "/a/x", "/a/y", "/a/y/z", "/b"]


def test_find_plan_missing_root_is_noent():
    with pytest.raises(DoozerError) as info:
        plans.drive_blocking(plans.find("/nope"), FakeStore({}).many)
    assert info.value.code == ErrCode.NOENT


def test_getdir_all_pipelines_batches_until_range():
    store = FakeStore({f"/d/f{i:02}": b"" for i in range(40)})
    names = plans.drive_blocking(plans.getdir_all("/d", batch=16), store.many)
    assert names == [f"f{i:02}" for i in range(40)]
    assert store.batches == [1, 16, 16, 16]


def test_plan_errors_other_than_range_propagate():
    def many(calls):
        return [DoozerError(ErrCode.TOO_LATE)] * len(calls)
    with pytest.raises(DoozerError) as info:
        plans.drive_blocking(plans.getdir_all("/d", rev=3), many)
    assert info.value.code == ErrCode.TOO_LATE


def test_call_is_a_frozen_value():
    c = Call("GET", "/a")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.path = "/b"


@pytest.mark.parametrize("tag", [0, 1, 127, 128, 16383, 16384, 2 ** 21, 2 ** 31 - 1, -1, -300])
@pytest.mark.parametrize("c", [
    call("GET", path="/a"), call("NOP"), call("SET", path="/x", rev=-1, value=b"v" * 300),
    call("GETDIR", path="/", rev=3, offset=2), call("ACCESS", value="secret")])
def test_encode_frames_the_request_under_any_tag(tag, c):
    """Call.encode serializes once and prepends the tag; the bytes are
    exactly protobuf's for the Request with that tag."""
    assert c.encode(tag) == frame(c.request(tag))
    assert Request.FromString(c.encode(tag)[4:]).tag == tag
