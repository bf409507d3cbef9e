"""Rules of the pure Raft core that mutation testing found unchecked
(issue 14, item 1): each test names the rule it pins. Pure: RaftNodes
driven by hand, no reactor, no clock."""

import random

import pytest

from doozertw.consensus import codec
from doozertw.consensus import messages as msg
from doozertw.consensus.log import LogError, MemoryStorage, RaftLog
from doozertw.consensus.membership import validate_change
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, Entry, EntryKind, HardState,
    Snapshot, SnapshotMeta,
)
from doozertw.consensus.progress import Progress, ProgressState
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.readonly import ReadOnly
from doozertw.consensus.ready import (
    ConfChangeInProgress, InvalidConfChange, NotLeader, ReadState, Ready, Role,
    SoftState, early_send_allowed, is_leader_early_message,
)
from doozertw.consensus.validate import MAX_NUMBER, problem
from doozertw.testing.raftkit import drain, make_leader, sent

VOTERS = ("n1", "n2", "n3")
BOOT = len(VOTERS)


def make(nid="n1", voters=VOTERS, **kw):
    return RaftNode(nid, voters, MemoryStorage(), random.Random(0), **kw)


def ack(leader, src, index):
    leader.step(msg.AppendEntriesResponse(src, leader.id, leader.term, index))


def follower():
    """n1 following n2 in term 3, entries up to BOOT + 3, BOOT + 2 committed."""
    n = make()
    es = [Entry(3, BOOT + 1), Entry(3, BOOT + 2), Entry(3, BOOT + 3)]
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT, 1, BOOT + 2, es))
    drain(n)
    return n


def compacted_leader():
    """n1 leading n2, n3; n3 has everything, which is applied and compacted
    away; n2 never answered."""
    n = make_leader(make())
    n.propose_batch([b"a", b"b"])
    drain(n)
    last = n.status().last_index
    ack(n, "n3", last)
    drain(n)
    assert n.status().applied == last
    n.compact(last, b"state")
    return n


def snapshotting_leader():
    """compacted_leader() with an InstallSnapshot on its way to n2."""
    n = compacted_leader()
    pr = n._progress["n2"]
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, pr.next - 1, True, 0))
    [inst] = sent(n, msg.InstallSnapshot)
    assert inst.dst == "n2" and pr.state == ProgressState.SNAPSHOT
    return n, inst.snapshot.index


# -- leader: membership --------------------------------------------------


def test_removed_leader_hands_over_to_the_smallest_most_caught_up_voter():
    voters = ("n1", "n2", "n3", "n4", "n5")
    n = make_leader(make(voters=voters))
    last = n.status().last_index
    for v in voters[1:]:
        ack(n, v, last)
    index, _ = n.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, "n1"))
    drain(n)
    for v in ("n5", "n4", "n3"):  # n2 lags behind
        ack(n, v, index)
    out = sent(n, msg.TimeoutNow)
    assert out == [msg.TimeoutNow("n1", "n3", n.term)]
    assert n.role == Role.FOLLOWER


def test_membership_change_keeps_progress_of_members_and_drops_the_removed():
    n = make_leader(make())
    last = n.status().last_index
    ack(n, "n2", last)
    index, _ = n.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, "n4"))
    [probe] = [m for m in sent(n, msg.AppendEntries) if m.dst == "n4"]
    # a new member is probed at the end of the log: (index, term) of the change
    assert (probe.prev_index, probe.entries) == (index, ())
    assert n.status().progress["n2"].match == last
    ack(n, "n2", index)
    ack(n, "n4", index)
    n.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, "n3"))
    assert set(n.status().progress) == {"n1", "n2", "n4"}
    assert n.status().progress["n2"].match == index


# -- leader: replication and snapshots ------------------------------------


def test_leader_sends_no_snapshot_to_an_inactive_replicating_follower():
    """A follower not heard from this election timeout gets no snapshot
    (and broadcasting stops at once instead of looping)."""
    n = compacted_leader()
    pr = n._progress["n2"]
    pr.match = 0
    pr.become_replicate()
    pr.recent_active = False
    sends = []

    def send(m):
        sends.append(m)
        assert len(sends) < 20, "broadcast does not stop"
    n._send = send
    n.propose(b"c")
    assert [m for m in sends if m.dst == "n2"] == []


def test_snapshot_report_sets_where_the_leader_probes_next():
    n, snap_index = snapshotting_leader()
    pr = n._progress["n2"]
    n.report_snapshot("n2", ok=True)  # the follower has the snapshot now
    assert (pr.state, pr.next) == (ProgressState.PROBE, snap_index + 1)
    n, _ = snapshotting_leader()
    pr = n._progress["n2"]
    n.report_snapshot("n2", ok=False)  # lost: probe from what it matched
    assert (pr.state, pr.next) == (ProgressState.PROBE, 1)


def test_snapshot_report_ignores_peers_not_being_sent_a_snapshot():
    n = compacted_leader()
    n.report_snapshot("n3", ok=True)
    n.report_snapshot("n9", ok=False)
    assert n._progress["n3"].state == ProgressState.REPLICATE


def test_campaigning_leader_forgets_its_followers_progress():
    n = make_leader(make())
    n.campaign()
    assert n.role == Role.PRE_CANDIDATE and n.status().progress == {}
    n.report_unreachable("n2")
    n.report_snapshot("n2", ok=False)
    assert n.status().progress == {}


def test_transfer_leadership_to_a_lagging_voter_sends_what_it_lacks():
    n = make_leader(make())
    ack(n, "n3", n.status().last_index)
    n.propose(b"x")
    drain(n)
    assert n.transfer_leadership("n3") is False
    assert [m.dst for m in sent(n, msg.AppendEntries)] == ["n3"]
    with pytest.raises(InvalidConfChange, match="^n1 is not another voter$"):
        n.transfer_leadership("n1")
    with pytest.raises(InvalidConfChange, match="^n9 is not another voter$"):
        n.transfer_leadership("n9")
    f = follower()
    with pytest.raises(NotLeader) as exc:
        f.transfer_leadership("n3")
    assert exc.value.leader == "n2"
    assert str(exc.value) == "not the leader (leader is 'n2')"


def test_conf_change_refusals_say_why():
    n = make_leader(make())
    with pytest.raises(ConfChangeInProgress,
                       match="^leader has not committed in its term$"):
        n.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, "n4"))
    ack(n, "n2", n.status().last_index)
    n.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, "n4"))
    with pytest.raises(ConfChangeInProgress,
                       match="^a configuration change is pending$"):
        n.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, "n5"))


@pytest.mark.parametrize("conf, change, why", [
    (ConfState({"a", "b"}), ConfChange(ConfChangeOp.ADD_VOTER, "a"), "a is already a voter"),
    (ConfState({"a"}, {"b"}), ConfChange(ConfChangeOp.ADD_LEARNER, "b"), "b is already a member"),
    (ConfState({"a"}), ConfChange(ConfChangeOp.REMOVE_NODE, "c"), "c is not a member"),
    (ConfState({"a"}), ConfChange(ConfChangeOp.REMOVE_NODE, "a"), "cannot remove the last voter"),
])
def test_invalid_conf_changes_say_why(conf, change, why):
    with pytest.raises(InvalidConfChange) as exc:
        validate_change(conf, change)
    assert str(exc.value) == why


# -- ReadIndex ------------------------------------------------------------


def test_single_voter_answers_a_read_with_its_ctx():
    n = make(voters=("n1",))
    n.campaign()
    drain(n)
    assert n.is_leader and n.status().committed_in_term
    n.read_index(b"r1")
    assert drain(n).read_states == (ReadState(b"r1", n.status().commit),)


def test_repeated_read_request_heartbeats_its_own_ctx():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    drain(n)
    n.read_index(b"a")
    n.read_index(b"b")
    drain(n)
    n.read_index(b"a")
    assert {m.ctx for m in sent(n, msg.Heartbeat)} == {b"a"}


def test_read_only_releases_exactly_the_requests_up_to_a_ctx():
    ro = ReadOnly()
    for i, ctx in enumerate((b"a", b"b", b"c")):
        ro.add(ctx, i, "n1", 0)
    assert [r.ctx for r in ro.release_through(b"b")] == [b"a", b"b"]
    assert ro.queue == [b"c"] and list(ro.pending) == [b"c"]


# -- followers and stale messages -----------------------------------------


def test_stale_messages_are_answered_with_the_newer_term():
    n = make(check_quorum=True, pre_vote=False)
    n.step(msg.Heartbeat("n2", "n1", 5, 0))
    drain(n)
    n.step(msg.AppendEntries("n3", "n1", 3, 0, 0, 0))
    n.step(msg.PreVote("n3", "n1", 4, 99, 3))
    n.step(msg.RequestVote("n3", "n1", 4, 99, 3))
    assert list(drain(n).messages) == [
        msg.AppendEntriesResponse("n1", "n3", 5, 0),
        msg.PreVoteResponse("n1", "n3", 5, False),
        msg.RequestVoteResponse("n1", "n3", 5, False),
    ]


def test_snapshot_matching_the_log_only_advances_the_commit_index():
    n = follower()
    n.step(msg.InstallSnapshot("n2", "n1", 3, Snapshot(
        SnapshotMeta(BOOT + 3, 3, ConfState(set(VOTERS))))))
    st = n.status()
    assert (st.commit, st.last_index, st.snapshot_index) == (BOOT + 3, BOOT + 3, 0)


def test_snapshot_at_the_commit_index_never_replaces_the_log():
    n = follower()
    n.step(msg.InstallSnapshot("n2", "n1", 3, Snapshot(
        SnapshotMeta(BOOT + 2, 2, ConfState(set(VOTERS))))))
    st = n.status()
    assert (st.commit, st.last_index, st.snapshot_index) == (BOOT + 2, BOOT + 3, 0)
    assert n.term_at(BOOT + 2) == 3


def test_compaction_keeps_the_configuration_at_the_compaction_point():
    n = make()
    learner = Entry(3, BOOT + 2, EntryKind.CONF_CHANGE,
                    ConfChange(ConfChangeOp.ADD_LEARNER, "n4").encode())
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT, 1, BOOT + 2,
                             [Entry(3, BOOT + 1), learner]))
    drain(n)
    assert n.conf.learners == {"n4"}
    snap = n.compact(BOOT + 1, b"s")
    assert snap.meta.conf == ConfState(set(VOTERS))


# -- progress, log and storage --------------------------------------------


def test_probe_restarts_right_after_the_match():
    pr = Progress(next_index=20, max_inflight=4)
    pr.match = 5
    pr.become_replicate()
    pr.become_probe()
    assert pr.next == 6
    pr.become_snapshot(3)  # an older snapshot than the match
    pr.become_probe()
    assert pr.next == 6
    pr.become_snapshot(9)
    pr.become_probe()
    assert pr.next == 10


def test_replicating_rejection_rewinds_to_the_match():
    pr = Progress(next_index=20, max_inflight=4)
    pr.match = 5
    pr.become_replicate()
    pr.sent_entries(12)
    assert pr.maybe_decrease(8, 0) and pr.next == 6


def test_raft_log_compaction_refusals_say_why():
    log = RaftLog(entries=[Entry(1, 1), Entry(1, 2), Entry(1, 3)], committed=3)
    log.applied_to(2)
    with pytest.raises(LogError, match="^cannot compact unapplied index 3$"):
        log.compact(3, b"", ConfState())
    log.compact(2, b"", ConfState())
    with pytest.raises(LogError, match="^index 2 already compacted$"):
        log.compact(2, b"", ConfState())
    assert log.snapshot.index == 2


def test_storage_compaction_is_idempotent_and_bounded():
    st = MemoryStorage()
    st.append([Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    st.compact(Snapshot(SnapshotMeta(2, 1), b"first"))
    st.compact(Snapshot(SnapshotMeta(2, 1), b"again"))
    assert st.snapshot.data == b"first" and st.entries == [Entry(1, 3)]
    with pytest.raises(LogError, match="^compacting beyond the stored log$"):
        st.compact(Snapshot(SnapshotMeta(5, 1)))


def test_received_snapshot_replaces_the_stored_log_from_its_index():
    st = MemoryStorage()
    st.append([Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    st.compact(Snapshot(SnapshotMeta(2, 1), b"mine"))
    st.apply_snapshot(Snapshot(SnapshotMeta(2, 1), b"leader's"))
    assert st.snapshot.data == b"leader's" and st.entries == []


def test_ready_is_true_when_any_part_is_set():
    assert not Ready()
    parts = dict(messages=(msg.TimeoutNow("a", "b", 1),), entries=(Entry(1, 1),),
                 hard_state=HardState(1), committed_entries=(Entry(1, 1),),
                 snapshot=Snapshot(), read_states=(ReadState(b"", 1),),
                 soft_state=SoftState(None, Role.FOLLOWER))
    for name, value in parts.items():
        assert Ready(**{name: value}), name


# -- hostile input: validation and codec ----------------------------------


def _snap(index, term, voters=("n1",), learners=()):
    return msg.InstallSnapshot("n2", "n1", 3, Snapshot(
        SnapshotMeta(index, term, ConfState(voters, learners))))


@pytest.mark.parametrize("m, why", [
    (object(), "not a raft message"),
    (msg.Heartbeat("n2", "n1", 3, MAX_NUMBER + 1), "commit out of range"),
    (msg.Heartbeat("", "n1", 3, 0), "empty node id"),
    (msg.Heartbeat("n2", "", 3, 0), "empty node id"),
    (msg.Heartbeat("n1", "n1", 3, 0), "message to itself"),
    (msg.PreVote("n2", "n1", 3, 9, 4), "last_term above term"),
    (msg.RequestVote("n2", "n1", 3, 9, 4), "last_term above term"),
    (msg.AppendEntries("n2", "n1", 3, 6, 4, 6), "bad prev_term"),
    (msg.AppendEntries("n2", "n1", 3, 0, 1, 0), "bad prev_term"),
    (msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 8)]),
     "entries not contiguous after prev_index"),
    (msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(4, 7)]),
     "entry term or index out of range"),
    (msg.AppendEntries("n2", "n1", 3, 6, 2, 6, [Entry(1, 7)]),
     "entry term or index out of range"),
    (msg.AppendEntries("n2", "n1", 3, 6, 3, 6, [Entry(3, 7), Entry(2, 8)]),
     "entry term or index out of range"),
    (msg.AppendEntries("n2", "n1", 3, MAX_NUMBER, 3, 6, [Entry(3, MAX_NUMBER + 1)]),
     "entry term or index out of range"),
    (msg.AppendEntries("n2", "n1", 3, 6, 3, 6,
                       [Entry(3, 7, EntryKind.CONF_CHANGE, b"\x07x")]),
     "undecodable conf change"),
    (msg.AppendEntries("n2", "n1", 3, 6, 3, 6,
                       [Entry(3, 7, EntryKind.CONF_CHANGE, b"\x00")]),
     "undecodable conf change"),
    (msg.AppendEntries("n2", "n1", 3, 6, 3, 6,
                       [Entry(3, 7, EntryKind.CONF_CHANGE, b"\x00\xff")]),
     "undecodable conf change"),
    (msg.AppendEntriesResponse("n2", "n1", 3, 4, True, 5), "hint beyond the rejected index"),
    (msg.AppendEntriesResponse("n2", "n1", 3, 4, True, 4, 4),
     "hint beyond the rejected index"),
    (_snap(9, 4), "snapshot term or index out of range"),
    (_snap(1, 0), "snapshot without term or voters"),
    (_snap(9, 0), "snapshot without term or voters"),
    (_snap(9, 3, voters=()), "snapshot without term or voters"),
    (_snap(9, 3, learners=("n1",)), "bad snapshot configuration"),
    (_snap(9, 3, voters=("n1", "")), "bad snapshot configuration"),
])
def test_impossible_messages_are_refused_with_their_reason(m, why):
    assert problem(m) == why


@pytest.mark.parametrize("m", [
    msg.InstallSnapshot("n2", "n1", 3, Snapshot()),  # index 0: nothing to install
    _snap(MAX_NUMBER, 3),
    _snap(9, 3, learners=("n4",)),
    msg.AppendEntries("n2", "n1", 3, 0, 0, 0, [Entry(1, 1)]),
    msg.AppendEntries("n2", "n1", 3, 6, 2, 6, [Entry(2, 7), Entry(3, 8)]),
    msg.AppendEntries("n2", "n1", 3, MAX_NUMBER - 1, 3, 6, [Entry(3, MAX_NUMBER)]),
    msg.AppendEntries("n2", "n1", 3, 6, 3, 6,
                      [Entry(3, 7, EntryKind.CONF_CHANGE, b"\x00n4")]),
    msg.AppendEntriesResponse("n2", "n1", 3, 4, True, 4, 3),
    msg.AppendEntriesResponse("n2", "n1", 3, 4, False, 9, 9),
    msg.RequestVote("n2", "n1", 3, 9, 3),
    msg.Heartbeat("n2", "n1", 3, MAX_NUMBER),
])
def test_boundary_messages_pass(m):
    assert problem(m) is None


def test_codec_refuses_an_empty_node_id():
    data = codec.encode_snapshot(Snapshot(SnapshotMeta(1, 1, ConfState({"a", ""}))))
    with pytest.raises(codec.CodecError) as exc:
        codec.decode_snapshot(data)
    assert str(exc.value) == "duplicate or empty node id"


def test_codec_layout_follows_the_message_fields():
    assert codec._layout(msg.AppendEntries) == (
        ("src", "text"), ("dst", "text"), ("term", "u64"), ("prev_index", "u64"),
        ("prev_term", "u64"), ("commit", "u64"), ("entries", "entries"))
    assert codec._layout(msg.InstallSnapshot)[-1] == ("snapshot", "snapshot")
    assert codec._layout(msg.Heartbeat)[-1] == ("ctx", "blob")
    assert codec._layout(msg.RequestVote)[-1] == ("transfer", "boolean")


# -- second batch ---------------------------------------------------------


def test_check_quorum_round_keeps_the_leader_itself_active():
    n = make_leader(make(check_quorum=True))
    ack(n, "n2", n.status().last_index)
    for _ in range(10):
        n.tick()
    assert n.is_leader
    active = {nid: p.recent_active for nid, p in n.status().progress.items()}
    assert active == {"n1": True, "n2": False, "n3": False}


def test_heartbeat_answer_frees_a_full_window_and_resends():
    n = make_leader(make(max_inflight_msgs=1))
    ack(n, "n2", n.status().last_index)
    drain(n)
    i1, _ = n.propose(b"a")
    i2, _ = n.propose(b"b")
    assert [m.entries for m in sent(n, msg.AppendEntries) if m.dst == "n2"] == [
        (Entry(n.term, i1, data=b"a"),)]
    n.step(msg.HeartbeatResponse("n2", "n1", n.term))
    assert [m.entries for m in sent(n, msg.AppendEntries) if m.dst == "n2"] == [
        (Entry(n.term, i2, data=b"b"),)]


def test_heartbeat_answer_of_a_caught_up_follower_sends_nothing():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    drain(n)
    n.step(msg.HeartbeatResponse("n2", "n1", n.term))
    assert sent(n) == []


def test_candidate_follows_a_leader_of_its_term_and_takes_its_entries():
    n = make(pre_vote=False)
    n.campaign()
    drain(n)
    assert n.role == Role.CANDIDATE and n.term == 2
    n.step(msg.AppendEntries("n2", "n1", 2, BOOT, 1, BOOT, [Entry(2, BOOT + 1)]))
    assert (n.role, n.leader) == (Role.FOLLOWER, "n2")
    assert sent(n) == [msg.AppendEntriesResponse("n1", "n2", 2, BOOT + 1)]


def test_pre_candidate_follows_a_leader_of_its_term_and_takes_its_entries():
    n = make()
    n.campaign()
    drain(n)
    assert n.role == Role.PRE_CANDIDATE and n.term == 1
    n.step(msg.AppendEntries("n2", "n1", 1, BOOT, 1, BOOT, [Entry(1, BOOT + 1)]))
    assert (n.role, n.leader) == (Role.FOLLOWER, "n2")
    assert sent(n) == [msg.AppendEntriesResponse("n1", "n2", 1, BOOT + 1)]


@pytest.mark.parametrize("pre_vote", [True, False])
def test_campaigning_node_keeps_late_read_answers(pre_vote):
    n = make(pre_vote=pre_vote)
    n.campaign()
    drain(n)
    n.step(msg.ReadIndexResponse("n2", "n1", n.term, b"r", 7))
    assert drain(n).read_states == (ReadState(b"r", 7),)


def test_empty_read_ctx_is_refused():
    n = make_leader(make())
    with pytest.raises(ValueError, match="^read ctx must not be empty$"):
        n.read_index(b"")
    assert problem(msg.ReadIndexRequest("n2", "n1", 2, b"")) == "empty read ctx"
    assert problem(msg.ReadIndexRequest("n2", "n1", 2, b"r")) is None


def test_conflict_search_stops_at_the_snapshot():
    log = RaftLog(Snapshot(SnapshotMeta(5, 3)), [Entry(4, 6), Entry(4, 7)], 5)
    assert log.find_conflict_by_term(7, 2) == (5, 3)
    assert log.find_conflict_by_term(7, 4) == (7, 4)


def test_storage_append_skips_what_the_snapshot_covers_and_refuses_gaps():
    st = MemoryStorage()
    st.append([Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    st.compact(Snapshot(SnapshotMeta(2, 1)))
    st.append([Entry(1, 2), Entry(2, 3), Entry(2, 4)])
    assert st.entries == [Entry(2, 3), Entry(2, 4)]
    with pytest.raises(LogError, match="^gap: storing 6 after 4$"):
        st.append([Entry(2, 6)])


def test_probe_rejection_never_rewinds_below_the_match():
    pr = Progress(next_index=9, max_inflight=4)
    pr.match = 5
    pr.probe_sent = True
    assert pr.maybe_decrease(8, 0)
    assert (pr.next, pr.probe_sent) == (6, False)


def test_early_send_needs_the_durable_term_and_vote():
    rd = Ready(hard_state=HardState(2, "n1", 5))
    assert early_send_allowed(rd, HardState(2, "n1", 3))
    assert not early_send_allowed(rd, HardState(2, "n2", 3))
    assert not early_send_allowed(rd, HardState(1, "n1", 3))
    assert not early_send_allowed(rd, None)
    assert early_send_allowed(Ready(), None)
    assert is_leader_early_message(msg.AppendEntries("n1", "n2", 2, 0, 0, 0))
    assert not is_leader_early_message(msg.AppendEntriesResponse("n1", "n2", 2, 0))


# -- progress state machine -----------------------------------------------


def test_new_leader_reports_followers_inactive_until_they_answer():
    n = make(pre_vote=False)
    n.campaign()
    n.step(msg.RequestVoteResponse("n2", "n1", 2, True))
    assert n.is_leader
    st = n.status().progress
    assert st["n2"].recent_active is False and st["n3"].recent_active is False
    ack(n, "n2", n.status().last_index)
    assert n.status().progress["n2"].recent_active is True


def test_replicate_starts_right_after_the_match():
    pr = Progress(next_index=3, max_inflight=4)
    pr.match = 5
    pr.become_replicate()
    assert pr.next == 6


def test_accepted_append_moves_match_and_next():
    pr = Progress(next_index=3, max_inflight=4)
    pr.probe_sent = True
    assert pr.maybe_update(7)
    assert (pr.match, pr.next, pr.is_paused()) == (7, 8, False)
    assert not pr.maybe_update(7)  # a duplicate ack changes nothing
    assert not pr.maybe_update(4)
    assert (pr.match, pr.next) == (7, 8)


def test_snapshot_in_flight_times_out_after_an_election_timeout():
    n, _ = snapshotting_leader()
    pr = n._progress["n2"]
    for _ in range(10):  # election_ticks
        n.tick()
        n.step(msg.HeartbeatResponse("n3", "n1", n.term))
    assert n.is_leader and pr.state == ProgressState.SNAPSHOT
    n.tick()
    assert pr.state == ProgressState.PROBE


# -- third batch: timing, log invariants, Ready ---------------------------


def test_check_quorum_counts_exactly_one_election_timeout_per_round():
    n = make_leader(make(check_quorum=True))  # election_ticks 10
    ack(n, "n2", n.status().last_index)
    for _ in range(10):
        n.tick()
    assert n.is_leader  # n2 answered in the first round
    for _ in range(9):
        n.tick()
    assert n.is_leader
    n.tick()  # nobody answered in the second round
    assert n.role == Role.FOLLOWER


def test_leader_heartbeats_every_heartbeat_interval():
    n = make_leader(make(check_quorum=False, heartbeat_ticks=3))
    beats = []
    for t in range(1, 10):
        n.tick()
        if sent(n, msg.Heartbeat):
            beats.append(t)
    assert beats == [3, 6, 9]


def test_heartbeats_carry_the_newest_pending_read_or_nothing():
    n = make_leader(make(check_quorum=False))
    ack(n, "n2", n.status().last_index)
    drain(n)
    n.tick()
    assert {m.ctx for m in sent(n, msg.Heartbeat)} == {b""}
    n.read_index(b"r1")
    n.read_index(b"r2")
    drain(n)
    n.tick()  # a resend: the first heartbeats may have been lost
    assert {m.ctx for m in sent(n, msg.Heartbeat)} == {b"r2"}


def test_raft_log_refusals_say_why():
    assert RaftLog().committed == 0
    with pytest.raises(LogError, match="^entries do not follow the snapshot$"):
        RaftLog(Snapshot(SnapshotMeta(5, 1)), [Entry(1, 7)])
    with pytest.raises(LogError, match="^commit index beyond the log$"):
        RaftLog(entries=[Entry(1, 1)], committed=2)
    log = RaftLog(entries=[Entry(1, 1), Entry(1, 2), Entry(1, 3)], committed=2)
    with pytest.raises(LogError, match="^conflict at committed index 2$"):
        log.maybe_append(1, 1, [Entry(2, 2)])
    with pytest.raises(LogError, match="^truncating committed entries$"):
        log.truncate_after(1)
    assert log.maybe_append(2, 1, [Entry(2, 3)]) == 3 and log.term(3) == 2


def test_impossible_conf_change_is_refused_with_its_reason():
    n = follower()
    remove = [Entry(3, BOOT + 4 + i, EntryKind.CONF_CHANGE,
                    ConfChange(ConfChangeOp.REMOVE_NODE, v).encode())
              for i, v in enumerate(VOTERS)]
    dropped = n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 3, 3, 0, remove))
    assert (dropped.kind, dropped.src, dropped.reason) == (
        "AppendEntries", "n2", "impossible configuration change")


def test_has_ready_for_unpersisted_entries_alone():
    n = make_leader(make())  # no follower answered: every probe is paused
    assert not n.has_ready()
    n.propose(b"x")
    assert n.has_ready()
    rd = drain(n)
    assert rd.messages == () and rd.hard_state is None and len(rd.entries) == 1


def test_has_ready_for_unapplied_committed_entries_alone():
    n = make(max_apply_per_ready=1)
    assert len(drain(n).committed_entries) == 1  # BOOT entries, one at a time
    assert n.has_ready()
    rd = drain(n)
    assert rd.hard_state is None and rd.messages == () and rd.entries == ()
    assert len(rd.committed_entries) == 1


def test_raft_log_marks_refuse_impossible_moves():
    log = RaftLog(entries=[Entry(1, 1), Entry(1, 2), Entry(2, 3)], committed=2)
    with pytest.raises(LogError, match="^leader append must extend the log$"):
        log.append([Entry(2, 5)])
    with pytest.raises(LogError, match="^commit 9 beyond last 3$"):
        log.commit_to(9)
    with pytest.raises(LogError, match="^bad applied index 3$"):
        log.applied_to(3)
    log.applied_to(1)
    log.applied_to(1)  # again: no move
    with pytest.raises(LogError, match="^bad applied index 0$"):
        log.applied_to(0)
    assert (log.committed, log.applied, log.last_term()) == (2, 1, 2)
    assert RaftLog(Snapshot(SnapshotMeta(5, 4))).last_term() == 4


def test_conf_at_an_index_includes_the_change_at_that_index():
    add = Entry(1, 2, EntryKind.CONF_CHANGE,
                ConfChange(ConfChangeOp.ADD_LEARNER, "n4").encode())
    log = RaftLog(Snapshot(SnapshotMeta(1, 1, ConfState({"n1"}))), [add, Entry(1, 3)])
    assert log.conf_at(1) == ConfState({"n1"})
    assert log.conf_at(2) == ConfState({"n1"}, {"n4"})


def test_raft_log_from_storage_keeps_snapshot_and_commit():
    st = MemoryStorage()
    st.append([Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    st.compact(Snapshot(SnapshotMeta(2, 1)))
    st.hard_state = HardState(1, "", 3)
    log = RaftLog.from_storage(st)
    assert (log.snapshot.index, log.committed, log.last_index()) == (2, 3, 3)


def test_follower_append_around_the_snapshot():
    log = RaftLog(Snapshot(SnapshotMeta(5, 3, ConfState({"n1"}))), [], 5)
    assert log.maybe_append(5, 2, [Entry(3, 6)]) is None  # (5, 2) is not (5, 3)
    # entries the snapshot covers are skipped, whatever they say
    assert log.maybe_append(4, 3, [Entry(2, 5), Entry(3, 6)]) == 6
    assert (log.last_index(), log.term(6)) == (6, 3)


def test_slice_on_a_compacted_log_bounds_by_count_and_bytes():
    es = [Entry(1, i, data=b"x") for i in range(4, 9)]  # 25 bytes each
    log = RaftLog(Snapshot(SnapshotMeta(3, 1)), es, 8)
    assert log.slice(5, 8) == es[1:4]
    assert log.slice(5, 9, max_bytes=50) == es[1:3]  # exactly 50 bytes fit
    assert log.slice(5, 9, max_bytes=49) == es[1:2]
    assert log.slice(5, 9, max_bytes=1) == es[1:2]  # always one entry
    with pytest.raises(LogError, match="^entry 3 is compacted$"):
        log.slice(3, 5)


def test_next_committed_hands_out_the_last_committed_entry():
    log = RaftLog(entries=[Entry(1, 1), Entry(1, 2), Entry(1, 3)], committed=3)
    log.applied_to(2)
    assert log.next_committed() == [Entry(1, 3)]
    log.applied_to(3)
    assert log.next_committed() == []


def test_truncating_an_uncommitted_conf_change_reverts_the_configuration():
    n = make()
    learner = Entry(3, BOOT + 1, EntryKind.CONF_CHANGE,
                    ConfChange(ConfChangeOp.ADD_LEARNER, "n4").encode())
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT, 1, BOOT, [learner]))
    assert n.conf.learners == {"n4"}
    n.step(msg.AppendEntries("n3", "n1", 4, BOOT, 1, BOOT, [Entry(4, BOOT + 1)]))
    assert n.conf == ConfState(set(VOTERS)) and n.term_at(BOOT + 1) == 4


def test_truncate_after_on_a_compacted_log():
    log = RaftLog(Snapshot(SnapshotMeta(3, 1)), [Entry(1, i) for i in range(4, 9)], 4)
    log.truncate_after(5)
    assert log.last_index() == 5 and log.entries == [Entry(1, 4), Entry(1, 5)]


def test_unstable_entries_of_a_compacted_log():
    log = RaftLog(Snapshot(SnapshotMeta(3, 1)), [Entry(1, i) for i in range(4, 9)], 4)
    log.truncate_after(6)
    log.append([Entry(2, 7), Entry(2, 8)])
    assert log.unstable_entries() == [Entry(2, 7), Entry(2, 8)]


def test_ack_refills_the_whole_window_even_without_a_commit():
    n = make_leader(make(max_inflight_msgs=2, max_entries_per_msg=1))
    for v in ("n2", "n3"):
        ack(n, v, n.status().last_index)
    drain(n)
    idx = [i for i, _ in n.propose_batch([b"a", b"b", b"c", b"d"])]
    drain(n)
    ack(n, "n3", idx[3])  # commits everything
    drain(n)
    ack(n, "n2", idx[1])  # frees n2's window: c and d go out at once
    to_n2 = [m.entries for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert [e.index for es in to_n2 for e in es] == idx[2:]


def test_follower_that_lost_its_log_is_resent_everything():
    n = make_leader(make())
    last = n.status().last_index
    ack(n, "n2", last)
    drain(n)
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, last, True, 0, 0, reset=True))
    assert n.status().progress["n2"].match == 0
    [resend] = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert resend.prev_index == 0 and resend.entries[0].index == 1


def conf_entry(term, index, op, nid):
    return Entry(term, index, EntryKind.CONF_CHANGE, ConfChange(op, nid).encode())


def test_resent_entries_with_a_conf_change_are_accepted():
    n = follower()
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 2, 3, BOOT + 2, [
        Entry(3, BOOT + 3), conf_entry(3, BOOT + 4, ConfChangeOp.ADD_LEARNER, "n4")]))
    assert n.status().dropped == 0 and n.conf.learners == {"n4"}


def test_conf_change_is_checked_against_the_conf_it_will_follow():
    n = make()
    drop_two = [conf_entry(3, BOOT + 1, ConfChangeOp.REMOVE_NODE, "n2"),
                conf_entry(3, BOOT + 2, ConfChangeOp.REMOVE_NODE, "n3")]
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT, 1, BOOT, drop_two))
    assert n.conf.voters == {"n1"}
    # a new leader replaces both: removing n1 from {n1, n2, n3} is fine
    n.step(msg.AppendEntries("n3", "n1", 4, BOOT, 1, BOOT,
                             [conf_entry(4, BOOT + 1, ConfChangeOp.REMOVE_NODE, "n1")]))
    assert n.status().dropped == 0 and n.conf.voters == {"n2", "n3"}


def test_follower_that_lost_its_log_tells_the_leader_on_a_heartbeat():
    """A heartbeat committing past the follower's log: the leader believes
    it has entries it lost. It answers with a reset rejection carrying its
    real end, and commits only what it has."""
    n = follower()
    n.step(msg.Heartbeat("n2", "n1", 3, BOOT + 9, b"r"))
    assert sent(n) == [
        msg.AppendEntriesResponse("n1", "n2", 3, BOOT + 9, True, BOOT + 3, 3,
                                  reset=True),
        msg.HeartbeatResponse("n1", "n2", 3, b"r")]
    assert n.status().commit == BOOT + 3


def test_pre_vote_of_the_current_term_is_refused_while_following_a_leader():
    """A pre-vote is granted for a later term only: at the follower's own
    term (where it already follows n2) it is refused, however good the log."""
    n = follower()
    n.step(msg.PreVote("n3", "n1", 3, BOOT + 9, 3))
    assert sent(n) == [msg.PreVoteResponse("n1", "n3", 3, False)]


def test_granting_a_vote_restarts_the_election_timeout():
    n = make()
    n.step(msg.RequestVote("n2", "n1", 2, 0, 0))  # stale log: refused
    assert sent(n) == [msg.RequestVoteResponse("n1", "n2", 2, False)]
    for _ in range(3):
        n.tick()
    n.step(msg.RequestVote("n3", "n1", 2, BOOT + 5, 1))
    assert sent(n) == [msg.RequestVoteResponse("n1", "n3", 2, True)]
    for _ in range(n._randomized_timeout - 1):
        n.tick()
    assert sent(n) == []  # a full election timeout from the grant
    n.tick()
    assert [type(m) for m in sent(n)] == [msg.PreVote, msg.PreVote]


def leader_over_term_2_entries():
    """n1 leading in term 3 over BOOT entries of term 1 and three of term 2
    from an earlier leader; n3 is probed at prev_index BOOT + 3."""
    n = make()
    n.step(msg.AppendEntries("n2", "n1", 2, BOOT, 1, BOOT,
                             [Entry(2, BOOT + i) for i in (1, 2, 3)]))
    drain(n)
    n = make_leader(n)
    assert n.term == 3 and n._progress["n3"].next == BOOT + 4
    return n


@pytest.mark.parametrize("hint_term, resent_prev", [
    (1, BOOT),          # skip back past every entry of a later term
    (0, BOOT + 2),      # no term hint: just below the rejected index
])
def test_a_rejection_hint_skips_the_leaders_entries_of_later_terms(hint_term, resent_prev):
    n = leader_over_term_2_entries()
    n.step(msg.AppendEntriesResponse("n3", "n1", 3, BOOT + 3, True, BOOT + 3, hint_term))
    [probe] = [m for m in sent(n, msg.AppendEntries) if m.dst == "n3"]
    assert probe.prev_index == resent_prev


def probing_n2_with_match():
    """n1 leading n2, n3; n2 matched everything up to ``last``, then
    rejected an append past it: probing again, match kept."""
    n = make_leader(make())
    last = n.status().last_index
    ack(n, "n3", last)
    ack(n, "n2", last)
    drain(n)
    n.propose_batch([b"a"])
    n.propose_batch([b"b"])
    drain(n)
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, last + 1, True, last + 1, n.term))
    pr = n._progress["n2"]
    assert (pr.state, pr.match) == (ProgressState.PROBE, last)
    drain(n)
    return n, last


def test_a_probe_answered_at_the_match_resumes_replication():
    """The probe's answer need not move the match: an ack at the match
    itself confirms it, and replication resumes from there."""
    n, last = probing_n2_with_match()
    ack(n, "n2", last)
    pr = n._progress["n2"]
    assert (pr.state, pr.match, pr.next) == (ProgressState.REPLICATE, last, last + 3)
    to_n2 = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert [e.index for m in to_n2 for e in m.entries] == [last + 1, last + 2]


def test_a_stale_ack_below_the_match_leaves_a_probe_alone():
    n, last = probing_n2_with_match()
    ack(n, "n2", last - 1)
    pr = n._progress["n2"]
    assert (pr.state, pr.match) == (ProgressState.PROBE, last)
    assert sent(n) == []


def test_an_ack_unpausing_a_follower_sends_it_the_commit():
    """n3's ack committed the leader's entry; n2's probe answer then finds
    nothing new to commit: n2 still gets an (empty) append with the new
    commit index, which it would otherwise learn only on a heartbeat."""
    n = make_leader(make())
    last = n.status().last_index
    ack(n, "n3", last)
    drain(n)
    ack(n, "n2", last)
    to_n2 = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert [(m.entries, m.commit) for m in to_n2] == [((), last)]


def test_an_append_ack_at_the_snapshot_index_ends_the_snapshot():
    n, index = snapshotting_leader()
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, index))
    pr = n._progress["n2"]
    assert (pr.state, pr.match) == (ProgressState.REPLICATE, index)


@pytest.mark.parametrize("make_ack", [
    lambda n, i: msg.AppendEntriesResponse("n2", "n1", n.term, i),
    lambda n, i: msg.InstallSnapshotResponse("n2", "n1", n.term, i),
])
def test_an_ack_beyond_the_leaders_log_is_refused_with_its_reason(make_ack):
    from doozertw.consensus.ready import Dropped
    n = make_leader(make())
    m = make_ack(n, n.status().last_index + 1)
    assert n.step(m) == Dropped(type(m).__name__, "n2",
                                "acknowledges entries the leader does not have")


def test_a_snapshot_answer_at_its_index_resumes_probing_with_an_append():
    """n2 installed exactly the snapshot (the whole log): the leader probes
    again and sends it an append at once, though it has no entry to send."""
    n, index = snapshotting_leader()
    n.step(msg.InstallSnapshotResponse("n2", "n1", n.term, index))
    pr = n._progress["n2"]
    assert pr.state == ProgressState.PROBE and pr.match == index
    [app] = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert (app.prev_index, app.entries) == (index, ())


def test_a_late_snapshot_answer_leaves_a_replicating_follower_replicating():
    n = make_leader(make())
    last = n.status().last_index
    ack(n, "n2", last)
    drain(n)
    n.step(msg.InstallSnapshotResponse("n2", "n1", n.term, last))
    assert n._progress["n2"].state == ProgressState.REPLICATE


def test_a_reset_claiming_more_than_the_leaders_log_resends_from_its_end():
    """A (hostile or corrupt) reset whose hint lies past the leader's log:
    the leader still probes at its own last entry, never past it (where it
    has no term, and would send a snapshot)."""
    n = make_leader(make())
    last = n.status().last_index
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, last + 9, True,
                                     last + 5, n.term, reset=True))
    [app] = [m for m in sent(n) if m.dst == "n2"]
    assert isinstance(app, msg.AppendEntries) and app.prev_index == last


def test_appends_are_bounded_by_max_bytes_per_msg():
    n = make_leader(make(max_bytes_per_msg=Entry(2, 9, data=b"x" * 40).size()))
    last = n.status().last_index
    ack(n, "n2", last)
    ack(n, "n3", last)
    drain(n)
    n.propose_batch([b"x" * 40, b"y" * 40, b"z" * 40])
    to_n2 = [m.entries for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert [[e.index for e in es] for es in to_n2] == [
        [last + 1], [last + 2], [last + 3]]


def test_a_new_leader_counts_its_own_stable_log_as_replicated():
    n = make()
    n.campaign()
    for m in sent(n, msg.PreVote):
        n.step(msg.PreVoteResponse(m.dst, "n1", m.term, True))
    drain(n)
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    assert n.is_leader
    own = n.status().progress["n1"]
    assert (own.match, own.state) == (BOOT, ProgressState.REPLICATE.value)


@pytest.mark.parametrize("seed", range(12))
def test_a_pre_candidate_tries_again_after_one_to_two_election_timeouts(seed):
    """A pre-vote round nobody answers is retried after a randomized
    election timeout drawn from [election_ticks, 2 * election_ticks)."""
    n = RaftNode("n1", ("n1", "n2", "n3"), MemoryStorage(), random.Random(seed),
                 election_ticks=10)
    n.campaign()
    n.advance(n.ready())
    for ticks in range(1, 21):
        n.tick()
        rd = n.ready()
        n.advance(rd)
        if any(isinstance(m, msg.PreVote) for m in rd.messages):
            assert 10 <= ticks < 20
            return
    raise AssertionError("no second pre-vote round within two election timeouts")


def test_codec_refusals_say_what_is_wrong():
    from doozertw.consensus.codec import CodecError, decode, decode_entry, encode, encode_entry
    with pytest.raises(TypeError, match="^not a raft message: int$"):
        encode(5)
    with pytest.raises(CodecError, match="^value out of range: "):
        encode(msg.Heartbeat("n1", "n2", -1, 0))
    with pytest.raises(CodecError, match="^empty message$"):
        decode(b"")
    with pytest.raises(CodecError, match=f"^unknown message type {len(msg.MESSAGE_TYPES)}$"):
        decode(bytes([len(msg.MESSAGE_TYPES)]))
    bad_kind = bytearray(encode_entry(Entry(1, 1, data=b"x")))
    bad_kind[16] = 99    # the kind byte after term and index
    with pytest.raises(CodecError, match="^bad entry kind$"):
        decode_entry(bytes(bad_kind))


def test_a_pre_vote_asks_for_the_next_term_and_the_vote_is_not_a_transfer():
    n = make()
    term = n.term
    n.campaign()
    pre = sent(n, msg.PreVote)
    assert pre and {m.term for m in pre} == {term + 1}
    n.step(msg.PreVoteResponse("n2", "n1", term + 1, True))
    votes = sent(n, msg.RequestVote)
    assert votes and {(m.term, m.transfer) for m in votes} == {(term + 1, False)}


def test_a_follower_campaigns_exactly_one_randomized_timeout_after_the_leader_went_quiet():
    n = follower()
    n.step(msg.Heartbeat("n2", "n1", 3, BOOT + 2))
    drain(n)
    for _ in range(n._randomized_timeout - 1):
        n.tick()
    assert not sent(n, msg.PreVote)
    n.tick()
    assert sent(n, msg.PreVote)
    # and the next round, after an unanswered one, comes a full timeout later
    timeout = n._randomized_timeout
    for _ in range(timeout - 1):
        n.tick()
    assert not sent(n, msg.PreVote)
    n.tick()
    assert sent(n, msg.PreVote)


def test_a_timeout_now_from_another_node_is_dropped_with_its_reason():
    n = follower()
    n.step(msg.TimeoutNow("n3", "n1", 3))
    assert n.status().last_dropped.reason == "TimeoutNow not from the leader"
    assert n.role.value == "follower"


def test_a_conf_change_append_leaves_the_configuration_clean():
    n = follower()
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 3, 3, BOOT + 2,
                             [conf_entry(3, BOOT + 4, ConfChangeOp.ADD_LEARNER, "n4")]))
    assert n.conf.learners == {"n4"} and not n._log.conf_dirty


def test_a_storage_with_a_hard_state_but_no_entries_is_not_founded_again():
    storage = MemoryStorage()
    storage.hard_state = HardState(4, "n2", 0)
    n = RaftNode("n1", VOTERS, storage, random.Random(0))
    assert n.status().last_index == 0 and n.term == 4


def test_status_shows_each_peers_next_index():
    n = make_leader(make())
    last = n.status().last_index
    ack(n, "n2", last)
    drain(n)
    st = n.status()
    assert st.progress["n2"].next == last + 1 and st.progress["n2"].match == last


def test_a_malformed_message_is_dropped_with_the_validators_reason():
    from doozertw.consensus.ready import Dropped
    n = make()
    bad = msg.AppendEntries("n2", "n1", 2, BOOT + 5, 1, 0, [Entry(1, BOOT + 9)])
    reason = problem(bad)
    assert reason
    n.step(bad)
    assert n.status().last_dropped == Dropped("AppendEntries", "n2", reason)


def test_constructor_refusals_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"^rng must be injected \(a random\.Random\)$"):
        RaftNode("n1", VOTERS, MemoryStorage(), None)
    with pytest.raises(ValueError, match="^heartbeat_ticks must be < election_ticks$"):
        make(election_ticks=5, heartbeat_ticks=5)
    with pytest.raises(ValueError, match="^lease_reads needs check_quorum$"):
        make(lease_reads=True, check_quorum=False)
    with pytest.raises(ValueError, match="^lease_reads needs election_ticks >= 5$"):
        make(lease_reads=True, election_ticks=4, heartbeat_ticks=1)


def test_default_limits_64_entries_a_message_and_256_messages_in_flight():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    drain(n)
    n.propose_batch([b"x"] * 65)
    appends = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert [len(m.entries) for m in appends][:2] == [64, 1]
    ack(n, "n2", n.status().last_index)
    drain(n)
    count = 0
    for _ in range(300):
        n.propose(b"y")
        count += sum(1 for m in sent(n, msg.AppendEntries) if m.dst == "n2" and m.entries)
    assert count == 256


def test_a_node_without_a_storage_keeps_its_log_in_memory():
    n = RaftNode("n1", VOTERS, rng=random.Random(0))
    assert n.status().last_index == BOOT and n.role == Role.FOLLOWER


def test_membership_changes_keep_the_other_learners():
    conf = ConfState({"a"}, {"b", "c"})
    assert conf.apply(ConfChange(ConfChangeOp.ADD_VOTER, "c")) == ConfState({"a", "c"}, {"b"})
    assert conf.apply(ConfChange(ConfChangeOp.REMOVE_NODE, "b")) == ConfState({"a"}, {"c"})
    with pytest.raises(ValueError, match="^a is a voter; remove it first$"):
        conf.apply(ConfChange(ConfChangeOp.ADD_LEARNER, "a"))
    with pytest.raises(ValueError, match="^empty conf change$"):
        ConfChange.decode(b"")


def test_a_restarted_node_has_nothing_to_persist_until_something_changes():
    storage = MemoryStorage()
    first = RaftNode("n1", VOTERS, storage, random.Random(0))
    rd = first.ready()
    storage.append(rd.entries)
    storage.hard_state = rd.hard_state
    first.advance(rd)
    again = RaftNode("n1", (), storage, random.Random(0))
    assert again.ready().hard_state is None
