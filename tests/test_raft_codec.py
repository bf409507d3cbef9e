"""Round trips and error paths of the binary Raft message codec."""

import pytest
from hypothesis import given, strategies as st

from doozertw.consensus import codec
from doozertw.consensus import messages as m
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, Entry, EntryKind, Snapshot,
    SnapshotMeta,
)

SNAP = Snapshot(SnapshotMeta(7, 3, ConfState({"n1", "n2"}, {"n3"})), b"\x00state")
ENTRIES = (Entry(2, 5), Entry(3, 6, EntryKind.CONF_CHANGE,
                              ConfChange(ConfChangeOp.ADD_LEARNER, "n4").encode()),
           Entry(3, 7, data=b"x" * 1000))

EXAMPLES = [
    m.RequestVote("n1", "n2", 4, 10, 3),
    m.RequestVote("n1", "n2", 4, 10, 3, transfer=True),
    m.RequestVoteResponse("n2", "n1", 4, True),
    m.PreVote("n1", "n2", 5, 10, 3),
    m.PreVoteResponse("n2", "n1", 5, False),
    m.AppendEntries("n1", "n2", 4, 4, 2, 3, ENTRIES),
    m.AppendEntries("n1", "n2", 4, 4, 2, 3),
    m.AppendEntriesResponse("n2", "n1", 4, 7),
    m.AppendEntriesResponse("n2", "n1", 4, 7, True, 5, 2),
    m.AppendEntriesResponse("n2", "n1", 4, 9, True, 3, 1, reset=True),
    m.Heartbeat("n1", "n2", 4, 3, b"ctx"),
    m.HeartbeatResponse("n2", "n1", 4, b""),
    m.InstallSnapshot("n1", "n2", 4, SNAP),
    m.InstallSnapshotResponse("n2", "n1", 4, 7),
    m.ReadIndexRequest("n2", "n1", 4, b"read-1"),
    m.ReadIndexResponse("n1", "n2", 4, b"read-1", 12),
    m.TimeoutNow("n1", "n2", 4),
    m.Heartbeat("nœud-é", "n2", codec.MAX_DECODED, 0),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda x: type(x).__name__)
def test_every_message_type_round_trips(message):
    data = codec.encode(message)
    assert isinstance(data, bytes)
    assert codec.decode(data) == message


def test_all_message_types_are_covered():
    assert {type(x) for x in EXAMPLES} == set(m.MESSAGE_TYPES)


def test_encoding_is_deterministic_for_sets():
    a = m.InstallSnapshot("a", "b", 1, Snapshot(SnapshotMeta(
        1, 1, ConfState(["z", "a", "m"]))))
    b = m.InstallSnapshot("a", "b", 1, Snapshot(SnapshotMeta(
        1, 1, ConfState(["m", "z", "a"]))))
    assert codec.encode(a) == codec.encode(b)


def test_encoding_is_compact():
    assert len(codec.encode(m.Heartbeat("n1", "n2", 4, 3))) < 40


@pytest.mark.parametrize("bad, why", [
    (b"", "empty"),
    (b"\xff", "unknown message type"),
    (codec.encode(EXAMPLES[0])[:-1], "truncated"),
    (codec.encode(EXAMPLES[0]) + b"\x00", "trailing"),
    (codec.encode(m.RequestVoteResponse("a", "b", 1, True))[:-1] + b"\x02",
     "bad boolean"),
])
def test_malformed_input_raises_codec_error(bad, why):
    with pytest.raises(codec.CodecError, match=why):
        codec.decode(bad)


def test_bad_entry_kind_and_bad_utf8_raise_codec_error():
    data = bytearray(codec.encode(m.AppendEntries("a", "b", 1, 0, 0, 0,
                                                  [Entry(1, 1)])))
    data[-5] = 9  # the entry kind byte precedes the 4-byte data length
    with pytest.raises(codec.CodecError, match="entry kind"):
        codec.decode(bytes(data))
    data = bytearray(codec.encode(m.TimeoutNow("a", "b", 1)))
    data[3] = 0xFF  # the single byte of src
    with pytest.raises(codec.CodecError, match="utf-8"):
        codec.decode(bytes(data))


def test_encode_rejects_non_messages_and_out_of_range_values():
    with pytest.raises(TypeError):
        codec.encode({"term": 1})
    with pytest.raises(codec.CodecError):
        codec.encode(m.TimeoutNow("a", "b", -1))


def test_conf_change_round_trips_and_rejects_garbage():
    cc = ConfChange(ConfChangeOp.REMOVE_NODE, "n7")
    assert ConfChange.decode(cc.encode()) == cc
    with pytest.raises(ValueError):
        ConfChange.decode(b"")
    with pytest.raises(ValueError):
        ConfChange.decode(b"\x09n1")


ids = st.text(min_size=1, max_size=8)
u64 = st.integers(min_value=0, max_value=codec.MAX_DECODED)
entries = st.lists(st.builds(Entry, u64, u64, st.sampled_from(list(EntryKind)),
                             st.binary(max_size=50)), max_size=5)


@given(ids, ids, u64, u64, u64, u64, entries)
def test_append_entries_round_trip_property(src, dst, term, pi, pt, commit, es):
    msg = m.AppendEntries(src, dst, term, pi, pt, commit, es)
    assert codec.decode(codec.encode(msg)) == msg


@given(st.binary(max_size=64))
def test_decoding_random_bytes_never_raises_anything_else(data):
    try:
        codec.decode(data)
    except codec.CodecError:
        pass
