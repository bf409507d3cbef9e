"""DiskStorage: round trips, fault handling (ENOSPC, EIO), data directory
identity and locking, and the real file system."""

import copy
import os

import pytest

from doozertw.consensus import codec
from doozertw.consensus.log import LogError, MemoryStorage
from doozertw.consensus.messages import (
    ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta,
)
from doozertw.consensus.ready import Ready
from doozertw.persist import snapfile
from doozertw.persist.errors import (
    DataDirError, StorageFailed, StorageFull,
)
from doozertw.persist.fs import LazyFileSystem, OsFileSystem
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta, encode_meta
from doozertw.persist.storage import DiskStorage, has_state

META = DataDirMeta(FORMAT_VERSION, "clu", "n1", "m-1")


def new_storage(fs, path="/data", seg=1 << 20):
    return DiskStorage.create(fs, path, META, segment_size=seg)


def reopen(fs, path="/data", seg=1 << 20):
    return DiskStorage.open(fs, path, "clu", "n1", segment_size=seg)


def ents(first, n, term=1):
    return tuple(Entry(term, i, data=b"e%d" % i) for i in range(first, first + n))


def state(s):
    return s.hard_state, s.snapshot, list(s.entries)


def snap(index, term, data=b""):
    return Snapshot(SnapshotMeta(index, term, ConfState({"n1"}, {"n9"})), data)


def test_codec_single_record_helpers_round_trip():
    e = Entry(3, 9, EntryKind.CONF_CHANGE, b"\x00abc")
    assert codec.decode_entry(codec.encode_entry(e)) == e
    s = snap(7, 2, b"data")
    assert codec.decode_snapshot(codec.encode_snapshot(s)) == s
    hs = HardState(4, "n2", 3)
    assert codec.decode_hard_state(codec.encode_hard_state(hs)) == hs
    for bad in (b"", codec.encode_entry(e) + b"x", codec.encode_entry(e)[:-1]):
        with pytest.raises(codec.CodecError):
            codec.decode_entry(bad)


def test_round_trip_matches_memory_storage():
    fs = LazyFileSystem()
    s, m = new_storage(fs, seg=256), MemoryStorage()
    readys = [
        Ready(entries=ents(1, 5), hard_state=HardState(1, "n1", 0)),
        Ready(entries=ents(3, 4, term=2), hard_state=HardState(2, "", 2)),
        Ready(hard_state=HardState(2, "n2", 5)),
        Ready(snapshot=snap(10, 3, b"ten"), entries=ents(11, 2, term=3)),
        Ready(entries=ents(13, 10, term=3), hard_state=HardState(3, "n2", 12)),
    ]
    for r in readys:
        s.save(r)
        m.save(r)
        assert state(s) == state(m) and s.last_index() == m.last_index()
    s.compact(snap(15, 3, b"fifteen"))
    m.compact(snap(15, 3, b"fifteen"))
    s.append(list(ents(20, 5, term=4)))
    m.append(list(ents(20, 5, term=4)))
    s.apply_snapshot(snap(12, 3))  # older: ignored by both
    m.apply_snapshot(snap(12, 3))
    assert state(s) == state(m)
    s.close()
    t = reopen(fs, seg=256)
    assert state(t) == state(m)
    assert t.meta == META
    assert len(fs.listdir("/data/snap")) <= 2


def test_save_uses_one_fsync_and_counts():
    fs = LazyFileSystem()
    s = new_storage(fs)
    before = copy.copy((s.stats.fsyncs, s.stats.records_written))
    s.save(Ready(entries=ents(1, 64), hard_state=HardState(1, "n1", 0)))
    assert s.stats.fsyncs == before[0] + 1
    assert s.stats.records_written == before[1] + 65
    s.save(Ready(hard_state=HardState(1, "n1", 0)))  # unchanged: no I/O
    s.save(Ready())
    assert s.stats.fsyncs == before[0] + 1
    assert s.stats.bytes_written > 64 * 30


def test_log_errors_are_raised_before_anything_is_written():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    written = s.stats.bytes_written
    with pytest.raises(LogError):
        s.save(Ready(entries=ents(5, 1)))  # gap
    with pytest.raises(LogError):
        s.append([Entry(1, 4), Entry(1, 6)])  # not contiguous
    with pytest.raises(LogError):
        s.compact(snap(9, 1))  # beyond the log
    with pytest.raises(LogError):
        s.compact(snap(2, 7))  # wrong term
    assert s.stats.bytes_written == written
    assert [e.index for e in s.entries] == [1, 2, 3]


def test_compaction_deletes_covered_segments_and_old_snapshots():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=200)
    for i in range(1, 61):
        s.save(Ready(entries=ents(i, 1), hard_state=HardState(1, "n1", i)))
        if i % 10 == 0:
            s.compact(snap(i - 2, 1, b"%d" % i))
    segs = fs.listdir("/data/wal")
    assert len(fs.listdir("/data/snap")) == 2
    assert len(segs) < 12, segs
    s.close()
    t = reopen(fs, seg=200)
    assert t.snapshot.index == 58 and t.last_index() == 60


def test_enospc_rolls_back_and_the_save_can_be_retried():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=400)
    s.save(Ready(entries=ents(1, 6), hard_state=HardState(1, "n1", 2)))
    ops = [
        lambda st: st.save(Ready(entries=ents(5, 6, term=2),
                                 hard_state=HardState(2, "n1", 4))),
        lambda st: st.save(Ready(snapshot=snap(20, 3, b"x" * 50),
                                 entries=ents(21, 3, term=3))),
        lambda st: st.compact(snap(4, 1, b"y" * 40)),
    ]
    for op in ops:
        for budget in range(0, 400, 7):
            fs2, s2 = copy.deepcopy((fs, s))
            before = state(s2)
            wal_before = {n: fs2.read_file(f"/data/wal/{n}")
                          for n in fs2.listdir("/data/wal")}
            fs2.fail_writes_with_enospc_after(budget)
            try:
                op(s2)
            except StorageFull:
                assert state(s2) == before
                assert {n: fs2.read_file(f"/data/wal/{n}")
                        for n in fs2.listdir("/data/wal")} == wal_before
                crashed = copy.deepcopy(fs2)
                crashed.crash()
                assert state(reopen(crashed, seg=400)) == before
                fs2.clear_enospc()
                op(s2)  # the same call succeeds now
            else:
                assert budget > 0
            after = state(s2)
            s2.close()
            fs2.crash()
            assert state(reopen(fs2, seg=400)) == after


@pytest.mark.parametrize("crash", [True, False])
def test_eio_on_fsync_poisons_the_storage(crash):
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3), hard_state=HardState(1, "n1", 1)))
    before = state(s)
    fs.fail_next_fsync_with_eio()
    with pytest.raises(StorageFailed, match="fsync"):
        s.save(Ready(entries=ents(4, 2), hard_state=HardState(1, "n1", 3)))
    assert state(s) == before and s.failed
    for call in (lambda: s.save(Ready()), s.last_index,
                 lambda: s.append([]), lambda: s.compact(snap(2, 1)),
                 lambda: s.apply_snapshot(snap(9, 1))):
        with pytest.raises(StorageFailed, match="refuses"):
            call()
    s.close()
    if crash:
        fs.crash()
    t = reopen(fs)
    if crash:
        assert state(t) == before
    else:  # the page cache may still hold the write: either is consistent
        assert state(t) in (before, (HardState(1, "n1", 3), Snapshot(),
                                     list(ents(1, 5))))


def test_eio_on_write_and_on_snapshot_fsync_poison_too():
    fs = LazyFileSystem()
    s = new_storage(fs)
    fs.fail_next_write_with_eio()
    with pytest.raises(StorageFailed):
        s.save(Ready(entries=ents(1, 1)))
    with pytest.raises(StorageFailed):
        s.save(Ready(entries=ents(1, 1)))
    s.close()
    t = reopen(fs)
    t.save(Ready(entries=ents(1, 2)))
    fs.fail_next_fsync_with_eio()
    with pytest.raises(StorageFailed):
        t.compact(snap(1, 1))
    with pytest.raises(StorageFailed):
        t.last_index()


def test_data_dir_identity_checks():
    fs = LazyFileSystem()
    assert not has_state(fs, "/data")
    with pytest.raises(DataDirError, match="no data directory"):
        reopen(fs)
    s = new_storage(fs)
    assert DiskStorage.has_state(fs, "/data")
    with pytest.raises(DataDirError, match="locked"):
        reopen(fs)
    s.close()
    with pytest.raises(DataDirError, match="/data.*cluster 'clu'"):
        DiskStorage.open(fs, "/data", "other", "n1")
    with pytest.raises(DataDirError, match="/data.*node 'n1'"):
        DiskStorage.open(fs, "/data", "clu", "n2")
    with pytest.raises(DataDirError, match="not empty"):
        new_storage(fs)
    reopen(fs).close()  # failed opens released the lock
    fs.corrupt("/data/meta", encode_meta(DataDirMeta(99, "clu", "n1", "m")))
    with pytest.raises(DataDirError, match="unknown data format version 99"):
        reopen(fs)
    fs.corrupt("/data/meta", b"DZTWMETA garbage")
    with pytest.raises(DataDirError, match="/data/meta"):
        reopen(fs)
    with pytest.raises(DataDirError, match="format version"):
        DiskStorage.create(fs, "/new", DataDirMeta(2, "c", "n", "m"))


def test_crash_loses_only_what_was_not_fsynced():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3), hard_state=HardState(1, "n1", 2)))
    durable = state(s)
    # a write that never reaches its fsync: appended by hand, then a crash
    s._wal.append(b"\x01" * 40, 1)
    fs.crash()
    t = reopen(fs)
    assert state(t) == durable


def test_orphan_snapshot_file_from_an_unfinished_save_is_ignored():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 5, term=1)))
    stats = s.stats
    snapfile.write_snapshot(fs, "/data/snap", snap(30, 4, b"leader"), stats)
    s.close()
    t = reopen(fs)
    assert t.snapshot == Snapshot() and t.last_index() == 5
    assert fs.listdir("/data/snap") == []


def test_real_filesystem_round_trip_torn_tail_and_lock(tmp_path):
    fs = OsFileSystem()
    path = str(tmp_path / "node")
    s = DiskStorage.create(fs, path, META, segment_size=300)
    m = MemoryStorage()
    for i in range(1, 20):
        r = Ready(entries=ents(i, 1), hard_state=HardState(1, "n1", i - 1))
        s.save(r)
        m.save(r)
    s.compact(snap(10, 1, b"ten"))
    m.compact(snap(10, 1, b"ten"))
    with pytest.raises(DataDirError, match="locked"):
        DiskStorage.open(fs, path, "clu", "n1")
    s.close()
    t = DiskStorage.open(fs, path, "clu", "n1", segment_size=300)
    assert state(t) == state(m)
    t.close()
    wal_dir = os.path.join(path, "wal")
    last = os.path.join(wal_dir, sorted(os.listdir(wal_dir))[-1])
    size = os.path.getsize(last)
    t = DiskStorage.open(fs, path, "clu", "n1", segment_size=1 << 20)
    t.save(Ready(entries=ents(20, 1)))  # big segments: no rotation here
    t.close()
    os.truncate(last, os.path.getsize(last) - 3)
    t = DiskStorage.open(fs, path, "clu", "n1", segment_size=300)
    assert state(t) == state(m)
    assert os.path.getsize(last) == size
    t.close()


def test_a_commit_only_change_is_written_without_fsync_and_may_be_lost():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3), hard_state=HardState(1, "n1", 1)))
    synced = s.stats.fsyncs
    s.save(Ready(hard_state=HardState(1, "n1", 3)))  # commit only: no fsync
    assert s.stats.fsyncs == synced and s.hard_state.commit == 3
    fs.crash()
    lost = reopen(fs)  # the commit index went back; term, vote, entries did not
    assert lost.hard_state == HardState(1, "n1", 1) and len(lost.entries) == 3
    lost.save(Ready(hard_state=HardState(1, "n1", 3)))
    synced = lost.stats.fsyncs
    lost.save(Ready(hard_state=HardState(2, "", 3)))  # a new term must be durable
    assert lost.stats.fsyncs == synced + 1
    lost.save(Ready(hard_state=HardState(2, "n2", 3)))  # so must a vote
    assert lost.stats.fsyncs == synced + 2
    lost.save(Ready(hard_state=HardState(2, "n2", 3)))  # nothing new: nothing written
    assert lost.stats.fsyncs == synced + 2
    fs.crash()
    assert reopen(fs).hard_state == HardState(2, "n2", 3)


def test_a_commit_only_change_before_a_rotation_survives_a_crash():
    """The new segment's header repeats the hard state: the unsynced
    commit-only record before it is fsynced first, or a crash keeps the
    header and loses the record, and the log no longer opens (found by
    test_persist_model)."""
    fs = LazyFileSystem()
    meta = DataDirMeta(FORMAT_VERSION, "clu", "n1", "m-1")
    disk = DiskStorage.create(fs, "/d", meta, segment_size=256)
    disk.save(Ready(entries=tuple(Entry(2, i) for i in range(1, 6)),
                    hard_state=HardState(2, "", 1)))
    disk.save(Ready(entries=tuple(Entry(2, i, data=b"x" * 21) for i in range(6, 9))))
    disk.save(Ready(hard_state=HardState(2, "", 5)))   # commit only: not fsynced,
    # and the segment is now past 256 bytes: the compaction rotates first
    disk.compact(Snapshot(SnapshotMeta(1, 2, ConfState({"n1"})), b""))
    disk.close()
    fs.crash()
    reopened = DiskStorage.open(fs, "/d", "clu", "n1", segment_size=256)
    assert reopened.hard_state == HardState(2, "", 5)
    assert reopened.last_index() == 8
    reopened.close()
