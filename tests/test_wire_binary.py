"""doozertw.wire.binary: the primitives the Raft codec and the envelopes share."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doozertw.cluster import envelope
from doozertw.consensus import codec
from doozertw.wire.binary import DecodeError, Reader, Writer


def test_layout_is_big_endian_and_length_prefixed():
    w = Writer()
    w.u8(1)
    w.u16(2)
    w.u32(3)
    w.u64(4)
    w.boolean(True)
    w.boolean(False)
    w.text("é")
    w.blob(b"xy")
    w.raw(b"!")
    assert w.getvalue() == (b"\x01" b"\x00\x02" b"\x00\x00\x00\x03" + b"\x00" * 7 + b"\x04"
                            b"\x01\x00" b"\x00\x02\xc3\xa9" b"\x00\x00\x00\x02xy" b"!")


@given(st.integers(0, 255), st.integers(0, 2 ** 16 - 1), st.integers(0, 2 ** 32 - 1),
       st.integers(0, 2 ** 64 - 1), st.booleans(), st.text(max_size=50), st.binary(max_size=50))
def test_reader_inverts_writer(a, b, c, d, flag, text, blob):
    w = Writer()
    w.u8(a)
    w.u16(b)
    w.u32(c)
    w.u64(d)
    w.boolean(flag)
    w.text(text)
    w.blob(blob)
    r = Reader(w.getvalue())
    assert (r.u8(), r.u16(), r.u32(), r.u64(), r.boolean(), r.text(), r.blob()) == (
        a, b, c, d, flag, text, blob)
    r.expect_end()
    assert r.remaining == 0


def test_reader_starts_at_pos_and_returns_the_rest():
    r = Reader(b"ab\x00\x00\x00\x00\x00\x00\x00\x09tail", 2)
    assert r.u64() == 9
    assert r.rest() == b"tail"
    r.expect_end()


@pytest.mark.parametrize("data, read, why", [
    (b"\x00", Reader.u16, "truncated data"),
    (b"\x00\x05abc", Reader.text, "truncated data"),
    (b"\x00\x00\x00\x09abc", Reader.blob, "truncated data"),
    (b"\x02", Reader.boolean, "bad boolean byte 2"),
    (b"\x00\x01\xff", Reader.text, "bad utf-8"),
])
def test_malformed_input_raises_the_readers_error(data, read, why):
    with pytest.raises(DecodeError, match=why):
        read(Reader(data))


def test_trailing_bytes_are_reported():
    r = Reader(b"\x01\x02")
    r.u8()
    with pytest.raises(DecodeError, match="trailing bytes"):
        r.expect_end()


def test_out_of_range_values_raise_struct_error():
    with pytest.raises(struct.error):
        Writer().u16(2 ** 16)
    with pytest.raises(struct.error):
        Writer().text("x" * 2 ** 16)


def test_codecs_name_their_own_errors():
    """The Raft codec and the envelopes read through these primitives but
    raise their own errors, naming what was being read."""
    with pytest.raises(codec.CodecError, match="truncated message"):
        codec.decode_hard_state(b"\x00")
    with pytest.raises(envelope.EnvelopeError, match="truncated envelope"):
        envelope.Proposal.decode(b"\x00\x09n1")
    proposal = envelope.Proposal("n1~a", 7, b"mutation")
    assert envelope.Proposal.decode(proposal.encode()) == proposal
    assert proposal.encode() == b"\x00\x04n1~a" + b"\x00" * 7 + b"\x07" + b"mutation"


def test_raft_reader_caps_integers():
    w = Writer()
    w.u64(2 ** 63)
    with pytest.raises(codec.CodecError, match="out of range"):
        codec._Reader(w.getvalue()).u64()
