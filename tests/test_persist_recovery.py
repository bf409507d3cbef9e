"""Recovery of the on-disk log: torn tails are cut, any other damage is
CorruptLog naming file and offset, and a crash at any fsync reopens to a
state the storage had acknowledged (or the one being saved)."""

import copy

import pytest

from doozertw.consensus.messages import (
    ConfState, Entry, HardState, Snapshot, SnapshotMeta,
)
from doozertw.consensus.ready import Ready
from doozertw.persist import wal
from doozertw.persist.errors import CorruptLog
from doozertw.persist.fs import LazyFileSystem, SimulatedCrash
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
from doozertw.persist.storage import DiskStorage

META = DataDirMeta(FORMAT_VERSION, "clu", "n1", "m-1")
WAL_DIR = "/data/wal"


def new_storage(fs, seg=1 << 20):
    return DiskStorage.create(fs, "/data", META, segment_size=seg)


def reopen(fs, seg=1 << 20):
    return DiskStorage.open(fs, "/data", "clu", "n1", segment_size=seg)


def ents(first, n, term=1):
    return tuple(Entry(term, i, data=b"e%d" % i) for i in range(first, first + n))


def state(s):
    return s.hard_state, s.snapshot, list(s.entries)


def snap(index, term, data=b""):
    return Snapshot(SnapshotMeta(index, term, ConfState({"n1"})), data)


def segments(fs):
    return [f"{WAL_DIR}/{n}" for n in fs.listdir(WAL_DIR) if n.endswith(".wal")]


def build(nsaves=5, seg=1 << 20):
    fs = LazyFileSystem()
    s = new_storage(fs, seg)
    for i in range(1, nsaves + 1):
        s.save(Ready(entries=ents(i, 1), hard_state=HardState(1, "n1", i - 1)))
    return fs, s


def records(fs, path):
    data = fs.read_file(path)
    return wal.scan_segment(data, path, True)[0], data


# -- torn tails --------------------------------------------------------------


def test_torn_last_record_at_every_byte_offset():
    fs, s = build()
    before = state(s)
    [seg] = segments(fs)
    start = fs.size(seg)
    s.save(Ready(entries=ents(6, 1)))  # exactly one record
    full = fs.read_file(seg)
    s.close()
    assert len(full) - start > wal.HEAD_SIZE
    for cut in range(start, len(full)):
        fs2 = copy.deepcopy(fs)
        fs2.corrupt(seg, full[:cut])
        t = reopen(fs2)
        assert state(t) == before, cut
        assert fs2.size(seg) == start
        t.save(Ready(entries=ents(6, 1, term=2)))  # appends where it cut
        t.close()
        assert reopen(fs2).entries[-1] == Entry(2, 6, data=b"e6")


def test_torn_group_commit_keeps_whole_records_only():
    fs, s = build()
    hs0, snap0, entries0 = state(s)
    [seg] = segments(fs)
    start = fs.size(seg)
    s.save(Ready(entries=ents(6, 3), hard_state=HardState(2, "n1", 5)))
    full = fs.read_file(seg)
    s.close()
    for cut in range(start, len(full)):
        fs2 = copy.deepcopy(fs)
        fs2.corrupt(seg, full[:cut])
        t = reopen(fs2)
        extra = t.entries[len(entries0):]
        assert t.entries[:len(entries0)] == entries0
        assert extra == list(ents(6, len(extra)))
        assert t.hard_state == hs0  # the last record: never complete here
        t.close()


def test_bad_checksum_at_the_very_tail_and_trailing_zeros_are_torn():
    fs, s = build()
    before = state(s)
    [seg] = segments(fs)
    start = fs.size(seg)
    s.save(Ready(entries=ents(6, 1)))
    after = state(s)
    full = fs.read_file(seg)
    s.close()
    for damaged, expect in [
            (full[:-1] + bytes([full[-1] ^ 0x40]), before),
            (full + bytes(100), after),
            (full[:start] + bytes(len(full) - start), before),
            (full[:start] + bytes(3), before)]:
        fs2 = copy.deepcopy(fs)
        fs2.corrupt(seg, damaged)
        assert state(reopen(fs2)) == expect


# -- corruption --------------------------------------------------------------


@pytest.mark.parametrize("which", ["last segment", "older segment"])
def test_bit_flip_in_a_middle_record_is_corrupt(which):
    fs, s = build(nsaves=12, seg=400)
    s.close()
    segs = segments(fs)
    assert len(segs) >= 3
    seg = segs[-1] if which == "last segment" else segs[0]
    recs, data = records(fs, seg)
    assert len(recs) >= 3
    off, end = recs[1][0], recs[2][0]
    for pos in range(off, end):
        for bit in (0x01, 0x80):
            fs2 = copy.deepcopy(fs)
            fs2.corrupt(seg, data[:pos] + bytes([data[pos] ^ bit])
                        + data[pos + 1:])
            with pytest.raises(CorruptLog) as info:
                reopen(fs2, seg=400)
            assert seg in str(info.value)
            assert f"byte offset {off}" in str(info.value)


def test_truncated_older_segment_is_corrupt():
    fs, s = build(nsaves=12, seg=400)
    s.close()
    seg = segments(fs)[0]
    data = fs.read_file(seg)
    fs.corrupt(seg, data[:-1])
    with pytest.raises(CorruptLog, match="short record payload at byte offset"):
        reopen(fs, seg=400)


def test_removed_middle_segment_is_corrupt():
    fs, s = build(nsaves=12, seg=400)
    s.close()
    segs = segments(fs)
    fs.remove(segs[1])
    with pytest.raises(CorruptLog) as info:
        reopen(fs, seg=400)
    assert segs[1] in str(info.value) and "missing" in str(info.value)


def test_removed_first_segment_is_corrupt_unless_a_snapshot_covers_it():
    fs, s = build(nsaves=12, seg=400)
    s.close()
    fs.remove(segments(fs)[0])
    with pytest.raises(CorruptLog, match="missing"):
        reopen(fs, seg=400)


def test_no_segments_or_bad_header_is_corrupt():
    fs, s = build()
    s.close()
    [seg] = segments(fs)
    data = fs.read_file(seg)
    fs2 = copy.deepcopy(fs)
    fs2.corrupt(seg, data[:5] + bytes([data[5] ^ 1]) + data[6:])
    with pytest.raises(CorruptLog, match="byte offset 0"):
        reopen(fs2)
    fs.remove(seg)
    with pytest.raises(CorruptLog, match="no wal segments"):
        reopen(fs)


def test_damaged_snapshot_falls_back_only_if_the_wal_covers_it():
    fs, s = build(nsaves=12, seg=400)
    s.compact(snap(4, 1, b"four"))
    s.compact(snap(8, 1, b"eight"))
    s.close()
    name = "/data/snap/snap-0000000000000008-0000000000000001.snap"
    good = copy.deepcopy(fs)
    fs.corrupt(name, fs.read_file(name)[:-1])
    t = reopen(fs, seg=400)
    assert t.snapshot == snap(4, 1, b"four")
    assert [e.index for e in t.entries] == list(range(5, 13))
    t.save(Ready(entries=ents(13, 1)))
    t.close()
    fs.crash()
    t = reopen(fs, seg=400)
    assert t.snapshot.index == 4 and t.last_index() == 13
    t.close()
    # a received snapshot replaces the log: nothing older to fall back to
    t = reopen(good, seg=400)
    t.save(Ready(snapshot=snap(20, 2, b"twenty")))
    t.close()
    name = "/data/snap/snap-0000000000000014-0000000000000002.snap"
    good.remove(name)
    with pytest.raises(CorruptLog) as info:
        reopen(good, seg=400)
    assert name in str(info.value)


# -- crash at every fsync ------------------------------------------------------


def _workload(s, model):
    """Operations on ``s``; appends the state after each to ``model``."""
    ops = [
        lambda: s.save(Ready(entries=ents(1, 3), hard_state=HardState(1, "n1", 0))),
        lambda: s.save(Ready(entries=ents(4, 2), hard_state=HardState(1, "n1", 3))),
        lambda: s.save(Ready(entries=ents(5, 3, term=2),
                             hard_state=HardState(2, "n2", 4))),
        lambda: s.compact(snap(4, 1, b"four")),
        lambda: s.save(Ready(entries=ents(8, 4, term=2),
                             hard_state=HardState(2, "n2", 9))),
        lambda: s.compact(snap(9, 2, b"nine")),
        lambda: s.save(Ready(snapshot=snap(15, 3, b"fifteen"),
                             entries=ents(16, 2, term=3),
                             hard_state=HardState(3, "", 15))),
        lambda: s.save(Ready(entries=ents(18, 3, term=3))),
        lambda: s.compact(snap(17, 3, b"seventeen")),
        lambda: s.save(Ready(entries=ents(19, 2, term=4),
                             hard_state=HardState(4, "n1", 18))),
    ]
    for op in ops:
        op()
        model.append(state(s))


def test_crash_at_every_fsync_reopens_to_an_acknowledged_state():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=300)
    model = [state(s)]
    base_fsyncs = s.stats.fsyncs
    _workload(s, model)
    total = s.stats.fsyncs - base_fsyncs
    assert total > 20
    for n in range(1, total + 1):
        fs = LazyFileSystem()
        s = new_storage(fs, seg=300)
        done = [state(s)]
        fs.crash_at_fsync(n)
        with pytest.raises(SimulatedCrash):
            _workload(s, done)
        t = reopen(fs, seg=300)
        j = len(done) - 1
        assert state(t) in (model[j], model[j + 1]), n
        t.close()
