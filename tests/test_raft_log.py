"""RaftLog, MemoryStorage, Progress and quorum arithmetic."""

import pytest

from doozertw.consensus.log import LogError, MemoryStorage, RaftLog
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, Entry, EntryKind, HardState,
    Snapshot, SnapshotMeta,
)
from doozertw.consensus.progress import (
    Progress, ProgressState, committed_index, has_quorum,
)
from doozertw.consensus.ready import Ready


def log_of(*terms):
    return RaftLog(entries=[Entry(t, i) for i, t in enumerate(terms, start=1)])


def test_term_lookup_covers_snapshot_point_and_absent_indexes():
    log = RaftLog(Snapshot(SnapshotMeta(5, 2)), [Entry(3, 6), Entry(3, 7)])
    assert [log.term(i) for i in (4, 5, 6, 7, 8)] == [None, 2, 3, 3, None]
    assert (log.first_index(), log.last_index(), log.last_term()) == (6, 7, 3)


def test_slice_honours_count_and_byte_limits_but_returns_one_entry():
    log = RaftLog(entries=[Entry(1, i, data=b"x" * 100) for i in range(1, 11)])
    assert len(log.slice(1, 11, max_count=4)) == 4
    assert len(log.slice(1, 11, max_bytes=300)) == 2
    assert len(log.slice(3, 11, max_bytes=1)) == 1
    log.applied = log.committed = 5
    log.compact(5, b"", ConfState())
    with pytest.raises(LogError):
        log.slice(5, 8)


def test_is_up_to_date_compares_last_term_then_length():
    log = log_of(1, 2, 2)
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_find_conflict_by_term_skips_higher_terms():
    log = log_of(1, 1, 2, 4, 4, 5)
    assert log.find_conflict_by_term(6, 3) == (3, 2)
    assert log.find_conflict_by_term(6, 0) == (0, 0)
    assert log.find_conflict_by_term(20, 5) == (6, 5)


def test_maybe_append_never_truncates_committed_entries():
    log = log_of(1, 1, 2)
    log.committed = 3
    with pytest.raises(LogError):
        log.maybe_append(1, 1, [Entry(3, 2)])


def test_maybe_append_below_snapshot_keeps_entries_after_it():
    log = RaftLog(Snapshot(SnapshotMeta(5, 2)), [Entry(2, 6)], committed=5)
    assert log.maybe_append(3, 9, [Entry(2, 4), Entry(2, 5), Entry(2, 6),
                                   Entry(3, 7)]) == 7
    assert [e.term for e in log.entries] == [2, 3]


def test_unstable_entries_track_truncation_and_stable_marks():
    log = log_of(1, 1)
    assert log.unstable_entries() == []
    log.append([Entry(2, 3), Entry(2, 4)])
    assert [e.index for e in log.unstable_entries()] == [3, 4]
    log.stable_to(4, 2)
    log.truncate_after(2)
    log.append([Entry(3, 3)])
    assert [e.index for e in log.unstable_entries()] == [3]
    log.stable_to(3, 2)  # stale ack of a replaced entry: ignored
    assert log.stable == 2


def test_appending_past_the_end_leaves_the_configuration_clean():
    # a follower recomputes its configuration (a scan of the whole log) only
    # when entries were really dropped: appends at the end must not ask for it
    log = log_of(1, 1)
    assert log.maybe_append(2, 1, [Entry(1, 3), Entry(1, 4)]) == 4
    assert not log.conf_dirty
    log.truncate_after(4)
    assert (log.conf_dirty, log.last_index()) == (False, 4)
    log.stable_to(4, 1)
    log.truncate_after(3)
    assert (log.conf_dirty, log.last_index(), log.stable) == (True, 3, 3)


def test_leader_append_must_extend_the_log():
    with pytest.raises(LogError):
        log_of(1).append([Entry(1, 5)])


def test_conf_at_follows_conf_entries_in_the_log():
    def cc(op, nid, t, i):
        return Entry(t, i, EntryKind.CONF_CHANGE, ConfChange(op, nid).encode())
    log = RaftLog(Snapshot(SnapshotMeta(2, 1, ConfState({"a", "b"}))),
                  [cc(ConfChangeOp.ADD_LEARNER, "c", 1, 3), Entry(1, 4),
                   cc(ConfChangeOp.ADD_VOTER, "c", 1, 5)])
    assert log.conf_at(2) == ConfState({"a", "b"})
    assert log.conf_at(4) == ConfState({"a", "b"}, {"c"})
    assert log.conf_at() == ConfState({"a", "b", "c"})


def test_conf_state_rejects_removing_last_voter_and_demotion():
    with pytest.raises(ValueError):
        ConfState({"a"}).apply(ConfChange(ConfChangeOp.REMOVE_NODE, "a"))
    with pytest.raises(ValueError):
        ConfState({"a", "b"}).apply(ConfChange(ConfChangeOp.ADD_LEARNER, "a"))


def test_storage_append_replaces_overlapping_suffix():
    st = MemoryStorage()
    st.append([Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    st.append([Entry(2, 2)])
    assert [(e.index, e.term) for e in st.entries] == [(1, 1), (2, 2)]
    with pytest.raises(LogError):
        st.append([Entry(2, 9)])


def test_storage_compact_and_snapshot_install():
    st = MemoryStorage()
    st.append([Entry(1, i) for i in range(1, 6)])
    st.compact(Snapshot(SnapshotMeta(3, 1)))
    assert [e.index for e in st.entries] == [4, 5] and st.last_index() == 5
    st.append([Entry(1, 2), Entry(1, 3), Entry(2, 4)])  # covered part ignored
    assert [(e.index, e.term) for e in st.entries] == [(4, 2)]
    with pytest.raises(LogError):
        st.compact(Snapshot(SnapshotMeta(9, 2)))
    st.apply_snapshot(Snapshot(SnapshotMeta(20, 5), b"s"))
    assert st.entries == [] and st.last_index() == 20
    st.apply_snapshot(Snapshot(SnapshotMeta(10, 5), b"old"))
    assert st.snapshot.data == b"s"


def test_storage_save_persists_a_ready():
    st = MemoryStorage()
    st.save(Ready(entries=(Entry(1, 1),), hard_state=HardState(1, "a", 1)))
    assert st.hard_state == HardState(1, "a", 1) and st.last_index() == 1


def test_quorum_commit_index_is_the_majority_match():
    match = {"a": 9, "b": 5, "c": 7, "d": 1, "e": 5}
    assert committed_index(match.keys(), match.get) == 5
    assert committed_index(["a", "b", "c"], match.get) == 7
    assert committed_index([], match.get) == 0
    assert has_quorum({"a", "b", "c"}, {"a", "c", "x"})
    assert not has_quorum({"a", "b", "c", "d"}, {"a", "b"})


def test_progress_probe_replicate_and_snapshot_states():
    pr = Progress(next_index=10, max_inflight=2)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(12)
    assert pr.is_paused()
    assert not pr.maybe_decrease(5, 3)  # stale: not the probe in flight
    assert pr.maybe_decrease(9, 4) and pr.next == 5 and not pr.is_paused()
    pr.maybe_update(6)
    pr.become_replicate()
    pr.sent_entries(8)
    pr.sent_entries(9)
    assert pr.is_paused() and pr.next == 10
    pr.inflights.free_le(8)
    assert not pr.is_paused()
    assert not pr.maybe_decrease(6, 0)  # rejection at or below match: stale
    pr.become_snapshot(40)
    assert pr.is_paused()
    pr.become_probe()
    assert pr.next == 41
