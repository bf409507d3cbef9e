"""Pure pieces of the peer transport: frames, handshake, backoff, queue."""

import random
import struct

import pytest
from hypothesis import given, strategies as st

from doozertw.peer.backoff import Backoff
from doozertw.peer.framing import (
    FrameDecoder, FrameKind, FramingError, encode_frame, frame_parts,
)
from doozertw.peer.handshake import (
    MAGIC, PROTOCOL_VERSION, Hello, HandshakeError, Refusal, RefuseCode,
    UnsupportedVersion, judge_hello, judge_reply,
)
from doozertw.peer.limits import MIB, PeerLimits
from doozertw.peer.sendqueue import SendQueue


# -- framing ------------------------------------------------------------------

def test_frame_layout_is_length_then_kind_then_content():
    assert encode_frame(FrameKind.DATA, b"abc") == b"\x00\x00\x00\x04\x03abc"
    assert b"".join(frame_parts(FrameKind.PING, b"")) == b"\x00\x00\x00\x01\x04"


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_decoder_reassembles_frames_split_anywhere(payloads, data):
    stream = b"".join(encode_frame(FrameKind.DATA, p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = FrameDecoder(max_frame=1000)
    got = []
    start = 0
    for cut in cuts + [len(stream)]:
        got.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert got == [(FrameKind.DATA, p) for p in payloads]
    assert decoder.buffered == 0


def test_decoder_keeps_partial_frame_until_complete():
    decoder = FrameDecoder(max_frame=100)
    frame = encode_frame(FrameKind.DATA, b"hello")
    assert decoder.feed(frame[:3]) == []
    assert decoder.feed(frame[3:7]) == []
    assert decoder.buffered == 7
    assert decoder.feed(frame[7:] + frame) == [(FrameKind.DATA, b"hello")] * 2


def test_decoder_rejects_oversized_length_before_the_body_arrives():
    decoder = FrameDecoder(max_frame=10)
    with pytest.raises(FramingError, match="exceeds"):
        decoder.feed(struct.pack(">I", 11))


def test_decoder_accepts_exactly_max_frame():
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(encode_frame(FrameKind.DATA, b"x" * 9)) == [
        (FrameKind.DATA, b"x" * 9)]


def test_decoder_limit_can_be_raised_after_handshake():
    decoder = FrameDecoder(max_frame=4)
    with pytest.raises(FramingError):
        FrameDecoder(max_frame=4).feed(encode_frame(FrameKind.DATA, b"abcd"))
    decoder.max_frame = 100
    assert decoder.feed(encode_frame(FrameKind.DATA, b"abcd")) == [
        (FrameKind.DATA, b"abcd")]


def test_decoder_rejects_empty_frame_and_unknown_kind():
    with pytest.raises(FramingError, match="empty"):
        FrameDecoder(100).feed(b"\x00\x00\x00\x00")
    with pytest.raises(FramingError, match="unknown frame kind 99"):
        FrameDecoder(100).feed(b"\x00\x00\x00\x01\x63")


def test_default_limits_are_the_documented_ones():
    limits = PeerLimits()
    assert limits.max_frame == 64 * MIB
    assert limits.max_payload == 64 * MIB - 1
    assert limits.max_queue_bytes > limits.max_frame
    assert (limits.backoff_initial, limits.backoff_max) == (0.05, 2.0)


# -- handshake ----------------------------------------------------------------

names = st.text(min_size=1, max_size=40)


@given(names, names, names)
def test_hello_round_trips(cluster, sender, recipient):
    hello = Hello(PROTOCOL_VERSION, cluster, sender, recipient)
    assert Hello.decode(hello.encode()) == hello


def test_hello_encoding_is_struct_not_pickle():
    raw = Hello(1, "c", "n1", "n2").encode()
    assert raw == MAGIC + b"\x00\x01" + b"\x00\x01c" + b"\x00\x02n1" + b"\x00\x02n2"


def test_hello_of_unknown_version_is_recognised():
    raw = Hello(7, "c", "a", "b").encode()
    with pytest.raises(UnsupportedVersion) as info:
        Hello.decode(raw)
    assert info.value.version == 7


@pytest.mark.parametrize("raw, message", [
    (b"DZ", "short"),
    (b"HTTP\x00\x01\x00\x00\x00\x00\x00\x00", "magic"),
    (MAGIC + b"\x00\x01\x00\x05ab", "truncated"),
    (MAGIC + b"\x00\x01\x00\x01c\x00\x01a\x00\x01b!", "trailing"),
    (MAGIC + b"\x00\x01\x00\x01\xff\x00\x01a\x00\x01b", "UTF-8"),
])
def test_malformed_hello_raises_handshake_error(raw, message):
    with pytest.raises(HandshakeError, match=message):
        Hello.decode(raw)


def test_refusal_round_trips_and_tolerates_unknown_codes():
    refusal = Refusal(RefuseCode.WRONG_CLUSTER, "this is cluster 'a'")
    assert Refusal.decode(refusal.encode()) == refusal
    assert Refusal.decode(b"\x01\x00\x00\x02hi") == Refusal(RefuseCode.OTHER, "hi")
    with pytest.raises(HandshakeError):
        Refusal.decode(b"\x00")


def test_judge_hello_accepts_a_member_of_the_same_cluster():
    assert judge_hello(Hello(1, "prod", "n2", "n1"), "prod", "n1") is None


@pytest.mark.parametrize("hello, code", [
    (Hello(1, "staging", "n2", "n1"), RefuseCode.WRONG_CLUSTER),
    (Hello(1, "prod", "n2", "n3"), RefuseCode.WRONG_NODE),
    (Hello(1, "prod", "n1", "n1"), RefuseCode.SAME_NAME),
    (Hello(1, "prod", "", "n1"), RefuseCode.SAME_NAME),
])
def test_judge_hello_refusals(hello, code):
    assert judge_hello(hello, "prod", "n1").code is code


def test_judge_reply_checks_cluster_and_both_names():
    assert judge_reply(Hello(1, "prod", "n2", "n1"), "prod", "n1", "n2") is None
    assert "cluster" in judge_reply(Hello(1, "x", "n2", "n1"), "prod", "n1", "n2")
    assert "reached 'n3'" in judge_reply(Hello(1, "prod", "n3", "n1"), "prod", "n1", "n2")
    assert "greeted" in judge_reply(Hello(1, "prod", "n2", "n9"), "prod", "n1", "n2")


# -- backoff ------------------------------------------------------------------

def test_backoff_doubles_with_jitter_and_caps():
    backoff = Backoff(0.05, 2.0, random.Random(3))
    delays = [backoff.next_delay() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        base = min(2.0, 0.05 * 2 ** attempt)
        assert base / 2 <= delay <= base
    assert max(delays) <= 2.0
    assert delays[-1] >= 1.0
    assert len(set(delays)) == len(delays)  # jittered, not constant


def test_backoff_is_deterministic_for_a_seed_and_resets():
    a = Backoff(0.05, 2.0, random.Random(9))
    b = Backoff(0.05, 2.0, random.Random(9))
    assert [a.next_delay() for _ in range(5)] == [b.next_delay() for _ in range(5)]
    a.reset()
    assert a.next_delay() <= 0.05
    assert a.base(1000) == 2.0


def test_backoff_rejects_nonsense_bounds():
    with pytest.raises(ValueError):
        Backoff(0, 1, random.Random())
    with pytest.raises(ValueError):
        Backoff(2, 1, random.Random())


# -- send queue ---------------------------------------------------------------

def test_queue_is_fifo():
    q = SendQueue(10, 100)
    for p in (b"a", b"bb", b"ccc"):
        assert q.push(p) == 0
    assert (len(q), q.bytes) == (3, 6)
    assert [q.pop(), q.pop(), q.pop()] == [b"a", b"bb", b"ccc"]
    assert q.bytes == 0


def test_queue_count_bound_drops_oldest():
    q = SendQueue(3, 1000)
    for i in range(5):
        q.push(bytes([i]))
    assert q.dropped == 2
    assert [q.pop() for _ in range(3)] == [b"\x02", b"\x03", b"\x04"]


def test_queue_byte_bound_drops_oldest_until_new_fits():
    q = SendQueue(100, 10)
    q.push(b"1234")
    q.push(b"5678")
    assert q.push(b"abcdef") == 1          # drops b"1234" only
    assert (len(q), q.bytes) == (2, 10)
    assert q.pop() == b"5678"


def test_queue_drops_a_payload_bigger_than_the_whole_bound():
    q = SendQueue(100, 10)
    q.push(b"keep")
    assert q.push(b"x" * 11) == 1
    assert (len(q), q.pop()) == (1, b"keep")


def test_queue_clear_and_bad_bounds():
    q = SendQueue(5, 50)
    q.push(b"a")
    q.push(b"b")
    assert q.clear() == 2 and q.bytes == 0 and len(q) == 0
    with pytest.raises(ValueError):
        SendQueue(0, 10)
