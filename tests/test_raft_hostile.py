"""Hostile peer input to the pure Raft core (issue 9, item 2).

The codec must refuse anything that would not re-encode (the reported wedge:
a forged term 2^64-1 was adopted, then every message the node built failed
to encode), and ``RaftNode.step`` must never raise on a decodable message,
leaving a node that can still tick and encode what it sends.
"""

import random

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from doozertw.consensus import codec
from doozertw.consensus import messages as msg
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, Entry, EntryKind, Snapshot, SnapshotMeta,
)
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.ready import NotLeader, Role
from doozertw.consensus.validate import MAX_NUMBER, problem

VOTERS = ("n1", "n2", "n3")
BOOT = len(VOTERS)


def make(nid="n1", seed=0):
    return RaftNode(nid, VOTERS, MemoryStorage(), random.Random(seed), election_ticks=10)


def drain(node):
    rd = node.ready()
    node.advance(rd)
    return rd.messages


def leader():
    """n1 as leader of term 2 with entries 4..6 committed and 7 pending."""
    n = make()
    n.campaign()
    for _ in range(3):
        for m in drain(n):
            if isinstance(m, msg.PreVote):
                n.step(msg.PreVoteResponse(m.dst, "n1", m.term, True))
            elif isinstance(m, msg.RequestVote):
                n.step(msg.RequestVoteResponse(m.dst, "n1", m.term, True))
    assert n.is_leader
    n.propose(b"a")
    n.propose(b"b")
    drain(n)
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, n.status().last_index))
    n.propose(b"c")
    drain(n)
    return n


def follower():
    """n1 following n2 in term 3, entries up to 6, 5 committed."""
    n = make()
    es = [Entry(3, BOOT + 1), Entry(3, BOOT + 2), Entry(3, BOOT + 3)]
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT, 1, BOOT + 2, es))
    drain(n)
    assert n.leader == "n2" and n.status().commit == BOOT + 2
    return n


def candidate():
    n = RaftNode("n1", VOTERS, MemoryStorage(), random.Random(0), pre_vote=False)
    n.campaign()
    drain(n)
    assert n.role == Role.CANDIDATE
    return n


def pre_candidate():
    n = make()
    n.campaign()
    drain(n)
    assert n.role == Role.PRE_CANDIDATE
    return n




def assert_healthy(node, ticks=25):
    """The node ticks, encodes all it sends and keeps its log invariants."""
    for _ in range(ticks):
        node.tick()
        for m in drain(node):
            assert codec.decode(codec.encode(m)) == m
        assert node.status().commit <= node.status().last_index
        assert node.term <= MAX_NUMBER + ticks
    try:
        node.propose(b"after")
    except NotLeader:
        pass
    for m in drain(node):
        codec.encode(m)


# -- codec ------------------------------------------------------------------


@pytest.mark.parametrize("term", [codec.MAX_DECODED + 1, 2 ** 64 - 1])
def test_decode_refuses_terms_that_leave_no_room(term):
    data = codec.encode(msg.AppendEntriesResponse("n2", "n1", term, 0))
    with pytest.raises(codec.CodecError, match="out of range"):
        codec.decode(data)


def test_decode_refuses_huge_entry_fields_and_bad_node_sets():
    big = codec.encode(msg.AppendEntries("n2", "n1", 5, 0, 0, 0, [Entry(2 ** 64 - 1, 1)]))
    with pytest.raises(codec.CodecError):
        codec.decode(big)
    with pytest.raises(codec.CodecError):
        codec.decode_entry(codec.encode_entry(Entry(1, 2 ** 63)))
    snap = codec.encode_snapshot(Snapshot(SnapshotMeta(1, 1, ConfState({"a", "b"}))))
    dup = snap.replace(b"\x00\x01b", b"\x00\x01a")  # voters a, a
    with pytest.raises(codec.CodecError, match="duplicate"):
        codec.decode_snapshot(dup)


def _valid_encodings():
    return [codec.encode(m) for m in (
        msg.AppendEntries("n2", "n1", 3, 1, 1, 1, [Entry(3, 2, data=b"xy")]),
        msg.InstallSnapshot("n2", "n1", 3, Snapshot(SnapshotMeta(4, 2, ConfState({"n1"})), b"s")),
        msg.RequestVote("n2", "n1", 3, 4, 2),
        msg.ReadIndexResponse("n2", "n1", 3, b"c", 9))]


@settings(max_examples=500)
@given(st.sampled_from(_valid_encodings()), st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6), st.integers(0, 200))
def test_mutated_encodings_raise_only_codec_error(data, flips, cut):
    data = bytearray(data)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        m = codec.decode(bytes(data[:max(cut, 1)]))
    except codec.CodecError:
        return
    assert codec.decode(codec.encode(m)) == m


# -- structural validation and regressions ---------------------------------


def test_the_reported_wedge_cannot_happen():
    """A forged response with the largest decodable term is dropped; one at
    the largest valid term is adopted and everything still encodes."""
    n = leader()
    n.step(msg.AppendEntriesResponse("n2", "n1", codec.MAX_DECODED, 0))
    assert n.term == 2 and n.status().dropped == 1
    n.step(msg.AppendEntriesResponse("n2", "n1", MAX_NUMBER, 0))
    assert n.term == MAX_NUMBER and n.role == Role.FOLLOWER
    assert_healthy(n, ticks=40)


@pytest.mark.parametrize("bad", [
    msg.Heartbeat("n2", "n1", 3, MAX_NUMBER + 1),
    msg.Heartbeat("", "n1", 3, 0),
    msg.Heartbeat("n1", "n1", 3, 0),
    msg.RequestVote("n2", "n1", 3, 9, 4),
    msg.AppendEntries("n2", "n1", 3, 6, 4, 6),
    msg.AppendEntries("n2", "n1", 3, 0, 1, 0),
    msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 8)]),
    msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(4, 7)]),
    msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 7), Entry(2, 8)]),
    msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 7, EntryKind.CONF_CHANGE, b"\x07x")]),
    msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 7, EntryKind.CONF_CHANGE, b"\x00")]),
    msg.AppendEntriesResponse("n2", "n1", 3, 4, True, 5),
    msg.InstallSnapshot("n2", "n1", 3, Snapshot(SnapshotMeta(9, 4, ConfState({"n1"})))),
    msg.InstallSnapshot("n2", "n1", 3, Snapshot(SnapshotMeta(9, 3, ConfState()))),
    msg.InstallSnapshot("n2", "n1", 3, Snapshot(SnapshotMeta(9, 3, ConfState({"a"}, {"a"})))),
])
def test_structurally_impossible_messages_are_named(bad):
    assert problem(bad) is not None


def test_well_formed_messages_pass():
    ok = [msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 7), Entry(3, 8)]),
          msg.AppendEntriesResponse("n2", "n1", 3, 9, True, 3, 1, reset=True),
          msg.InstallSnapshot("n2", "n1", 3, Snapshot(SnapshotMeta(9, 3, ConfState({"n1"})))),
          msg.Heartbeat("n2", "n1", MAX_NUMBER, 0)]
    assert [problem(m) for m in ok] == [None] * len(ok)


def test_non_contiguous_entries_do_not_corrupt_the_log():
    n = follower()
    before = list(n._log.entries)
    n.step(msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 9), Entry(3, 12)]))
    assert n._log.entries == before and n.status().dropped == 1
    assert_healthy(n)


def test_rewriting_a_committed_entry_is_dropped_not_raised():
    n = follower()
    # Entries start at prev_index + 1 > commit in any valid message, so
    # only a non-contiguous one reaches a committed index (LogError before).
    n.step(msg.AppendEntries("n2", "n1", 4, BOOT + 2, 3, 0, [Entry(4, BOOT + 2)]))
    assert n.term_at(BOOT + 2) == 3 and n.status().dropped == 1
    assert_healthy(n)


def test_impossible_conf_change_is_dropped_not_raised():
    n = follower()
    remove = [Entry(3, BOOT + 4 + i, EntryKind.CONF_CHANGE,
                    ConfChange(ConfChangeOp.REMOVE_NODE, v).encode())
              for i, v in enumerate(VOTERS)]
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 3, 3, 0, remove))
    assert n.status().last_index == BOOT + 3 and n.status().dropped == 1
    assert n.conf.voters == set(VOTERS)
    learner = [Entry(3, BOOT + 4, EntryKind.CONF_CHANGE,
                     ConfChange(ConfChangeOp.ADD_LEARNER, "n2").encode())]
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 3, 3, 0, learner))
    assert n.status().dropped == 2
    assert_healthy(n)


def test_leader_ignores_acks_beyond_its_log_and_non_members():
    n = leader()
    last = n.status().last_index
    n.step(msg.AppendEntriesResponse("n3", "n1", n.term, last + 100))
    n.step(msg.InstallSnapshotResponse("n3", "n1", n.term, last + 100))
    assert n._progress["n3"].match == 0 and n.status().dropped == 2
    n.step(msg.ReadIndexRequest("evil", "n1", n.term, b"r"))
    assert not drain(n)
    assert_healthy(n)


def test_timeout_now_only_from_the_leader():
    n = follower()
    n.step(msg.TimeoutNow("n3", "n1", 3))
    assert n.role == Role.FOLLOWER and n.status().dropped == 1
    n.step(msg.TimeoutNow("n2", "n1", 3))
    assert n.role == Role.CANDIDATE


# -- fuzz: any decodable message, any role --------------------------------

_ids = st.sampled_from(["n1", "n2", "n3", "evil", ""]) | st.text(max_size=3)
_nums = (st.integers(0, 12) | st.integers(0, codec.MAX_DECODED)
         | st.sampled_from([MAX_NUMBER, MAX_NUMBER + 1, codec.MAX_DECODED]))
_conf_data = (st.builds(lambda op, nid: ConfChange(op, nid).encode(),
                        st.sampled_from(list(ConfChangeOp)), _ids)
              | st.binary(max_size=4))


@st.composite
def _entries(draw, contiguous_after=None):
    count = draw(st.integers(0, 4))
    out = []
    for i in range(count):
        kind = draw(st.sampled_from(list(EntryKind)))
        data = draw(_conf_data) if kind == EntryKind.CONF_CHANGE else draw(st.binary(max_size=3))
        index = contiguous_after + 1 + i if contiguous_after is not None else draw(_nums)
        out.append(Entry(draw(_nums), index, kind, data))
    return out


@st.composite
def _append(draw):
    prev = draw(_nums)
    plausible = draw(st.booleans())
    return msg.AppendEntries(draw(_ids), draw(_ids), draw(_nums), prev, draw(_nums),
                             draw(_nums), draw(_entries(prev if plausible else None)))


_snapshots = st.builds(
    lambda i, t, v, learners, d: Snapshot(SnapshotMeta(i, t, ConfState(v, learners)), d),
    _nums, _nums, st.frozensets(_ids, max_size=3), st.frozensets(_ids, max_size=2),
    st.binary(max_size=4))
_messages = st.one_of(
    st.builds(msg.RequestVote, _ids, _ids, _nums, _nums, _nums, st.booleans()),
    st.builds(msg.RequestVoteResponse, _ids, _ids, _nums, st.booleans()),
    st.builds(msg.PreVote, _ids, _ids, _nums, _nums, _nums),
    st.builds(msg.PreVoteResponse, _ids, _ids, _nums, st.booleans()),
    _append(),
    st.builds(msg.AppendEntriesResponse, _ids, _ids, _nums, _nums, st.booleans(),
              _nums, _nums, st.booleans()),
    st.builds(msg.Heartbeat, _ids, _ids, _nums, _nums, st.binary(max_size=3)),
    st.builds(msg.HeartbeatResponse, _ids, _ids, _nums, st.binary(max_size=3)),
    st.builds(msg.InstallSnapshot, _ids, _ids, _nums, _snapshots),
    st.builds(msg.InstallSnapshotResponse, _ids, _ids, _nums, _nums),
    st.builds(msg.ReadIndexRequest, _ids, _ids, _nums, st.binary(max_size=3)),
    st.builds(msg.ReadIndexResponse, _ids, _ids, _nums, st.binary(max_size=3), _nums),
    st.builds(msg.TimeoutNow, _ids, _ids, _nums),
)


def _wire(m):
    """The message as a peer's bytes would decode, or None if not encodable."""
    try:
        return codec.decode(codec.encode(m))
    except codec.CodecError:
        return None


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# One test per role: pytest-twisted cannot run a parametrized @given test.
@_FUZZ
@given(data=st.data())
def test_step_never_raises_leader(data):
    _step_fuzz(leader(), data)


@_FUZZ
@given(data=st.data())
def test_step_never_raises_follower(data):
    _step_fuzz(follower(), data)


@_FUZZ
@given(data=st.data())
def test_step_never_raises_candidate(data):
    _step_fuzz(candidate(), data)


@_FUZZ
@given(data=st.data())
def test_step_never_raises_pre_candidate(data):
    _step_fuzz(pre_candidate(), data)


def _step_fuzz(node, data):
    """Any decodable messages, mostly addressed to the node: step never
    raises and the node stays usable."""
    sequence = data.draw(st.lists(_messages, min_size=1, max_size=6))
    decoded = [w for w in map(_wire, sequence) if w is not None]
    assume(decoded)
    for m in decoded:
        if data.draw(st.booleans()):  # mostly address it to the node
            m = _readdress(m, "n1")
        m = _wire(m)
        if m is not None:
            node.step(m)
    assert_healthy(node)


def _readdress(m, dst):
    return attrs.evolve(m, dst=dst)
