"""doozertw.wire: the sans-I/O frame reader, frame parsing and the schema."""

import ast
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import doozertw.wire
from doozertw.wire import (
    HEADER_SIZE, VERBS, FrameError, FrameReader, FrameTooLarge, MalformedFrame, Request,
    Response, frame, frame_body, parse_request, parse_response, read_responses)


def _bodies(reader):
    out = []
    while (body := reader.next_frame()) is not None:
        out.append(body)
    return out


def test_empty_reader_has_nothing():
    reader = FrameReader(100)
    assert reader.next_frame() is None
    assert not reader.has_frame()
    assert reader.buffered == 0


def test_partial_header_and_partial_body_wait_for_more():
    reader = FrameReader(100)
    data = frame_body(b"hello")
    reader.feed(data[:3])
    assert reader.next_frame() is None and not reader.has_frame()
    reader.feed(data[3:7])
    assert reader.next_frame() is None and not reader.has_frame()
    assert reader.buffered == 7
    reader.feed(data[7:])
    assert reader.has_frame()
    assert reader.next_frame() == b"hello"
    assert reader.buffered == 0


def test_many_frames_in_one_chunk_come_out_one_at_a_time():
    reader = FrameReader(100)
    reader.feed(frame_body(b"a") + frame_body(b"") + frame_body(b"ccc") + b"\x00\x00")
    assert reader.next_frame() == b"a"
    assert reader.buffered == len(frame_body(b"")) + len(frame_body(b"ccc")) + 2
    assert _bodies(reader) == [b"", b"ccc"]
    assert reader.buffered == 2 and not reader.has_frame()


def test_feeding_between_pulls_keeps_order():
    reader = FrameReader(100)
    reader.feed(frame_body(b"one") + frame_body(b"two")[:5])
    assert reader.next_frame() == b"one"
    reader.feed(frame_body(b"two")[5:] + frame_body(b"three"))
    assert _bodies(reader) == [b"two", b"three"]


def test_byte_by_byte_feeding():
    bodies = [b"x" * n for n in (0, 1, 7, 300)]
    data = b"".join(frame_body(b) for b in bodies)
    reader = FrameReader(1000)
    got = []
    for i in range(len(data)):
        reader.feed(data[i:i + 1])
        got += _bodies(reader)
    assert got == bodies


def test_oversized_header_raises_before_the_body_arrives_and_keeps_raising():
    reader = FrameReader(10)
    reader.feed(frame_body(b"0123456789"))      # exactly the limit is fine
    assert reader.next_frame() == b"0123456789"
    reader.feed(b"\x00\x00\x00\x0b")              # 11 > 10, no body yet
    assert reader.has_frame()
    with pytest.raises(FrameTooLarge) as info:
        reader.next_frame()
    assert (info.value.length, info.value.limit) == (11, 10)
    assert "11" in str(info.value) and "10" in str(info.value)
    assert isinstance(info.value, FrameError) and isinstance(info.value, ValueError)
    reader.feed(b"more")
    with pytest.raises(FrameTooLarge):
        reader.next_frame()


def test_garbage_length_is_oversize_with_a_small_limit():
    reader = FrameReader(64 * 1024)
    reader.feed(b"GET /x\r\n")
    with pytest.raises(FrameTooLarge):
        reader.next_frame()


def test_clear_drops_buffered_bytes():
    reader = FrameReader(100)
    reader.feed(frame_body(b"abc") + b"\x00")
    reader.clear()
    assert reader.buffered == 0 and reader.next_frame() is None


def test_negative_limit_is_refused():
    with pytest.raises(ValueError):
        FrameReader(-1)


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), max_size=40))
def test_round_trip_under_any_chunking(bodies, cuts):
    data = b"".join(frame_body(b) for b in bodies)
    reader = FrameReader(300)
    got, pos = [], 0
    for cut in cuts + [len(data)]:
        reader.feed(data[pos:pos + cut])
        pos += cut
        got += _bodies(reader)
    reader.feed(data[pos:])
    got += _bodies(reader)
    assert got == bodies
    assert reader.buffered == 0


def test_requests_and_responses_round_trip_through_frames():
    request = Request(tag=7, verb=VERBS["SET"], path="/a", value=b"\x00v", rev=-1)
    reader = FrameReader(1000)
    reader.feed(frame(request))
    assert parse_request(reader.next_frame()) == request
    responses = [Response(tag=1, rev=3), Response(tag=2, err_code=5, err_detail="no")]
    data = b"".join(frame(r) for r in responses)
    assert read_responses(FrameReader(1000), data) == responses
    assert len(frame(request)) == HEADER_SIZE + request.ByteSize()


def test_malformed_bodies_raise_malformed_frame():
    with pytest.raises(MalformedFrame, match="request"):
        parse_request(b"\xff\xff")
    with pytest.raises(MalformedFrame, match="response"):
        parse_response(b"\x0a\x05ab")               # a string field cut short
    with pytest.raises(MalformedFrame):
        read_responses(FrameReader(100), frame_body(b"\xff\xff"))
    with pytest.raises(FrameTooLarge):
        read_responses(FrameReader(1), frame_body(b"\x08\x01\x10\x01"))


def test_schema_keeps_doozer_field_numbers():
    """doozer's own fields keep their numbers; doozertw's additions (leases,
    transactions) are numbered 20 and up (below doozer's 100, 101), so an
    existing doozer client never meets one it does not know."""
    doozer_request = {"tag": 1, "verb": 2, "path": 4, "value": 5, "other_tag": 6,
                      "offset": 7, "rev": 9}
    doozer_response = {"tag": 1, "flags": 2, "rev": 3, "path": 5, "value": 6, "len": 8,
                       "err_code": 100, "err_detail": 101}
    for message, doozer in ((Request, doozer_request), (Response, doozer_response)):
        fields = {f.name: f.number for f in message.DESCRIPTOR.fields}
        assert {k: fields[k] for k in doozer} == doozer
        added = {k: n for k, n in fields.items() if k not in doozer}
        assert added and all(20 <= n < 100 for n in added.values()), added


def test_wire_imports_only_the_standard_library_and_protobuf():
    """doozertw.consensus uses wire.binary, so wire must stay pure."""
    allowed = {"__future__", "struct", "typing", "google", "doozertw"}
    allowed_doozertw = {"doozertw.errors", "doozertw.wire"}
    for path in pathlib.Path(doozertw.wire.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)
                if name.startswith("doozertw"):
                    assert any(name == ok or name.startswith(ok + ".")
                               for ok in allowed_doozertw), (path.name, name)
