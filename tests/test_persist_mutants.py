"""Rules of the durable storage that mutation testing found unchecked
(issue 14): the WAL's record layout and every recovery refusal with its
reason, segment bookkeeping (rotation, release, restart points), snapshot
files and DiskStorage's error reports. Pure: a LazyFileSystem, no reactor."""

import errno
import struct
import zlib

import pytest
from twisted.logger import capturedLogs

from doozertw.consensus import codec
from doozertw.consensus.messages import (
    ConfState, Entry, HardState, Snapshot, SnapshotMeta,
)
from doozertw.consensus.ready import Ready
from doozertw.persist import snapfile, wal
from doozertw.persist.durable import StorageStats
from doozertw.persist.errors import (
    CorruptLog, DataDirError, StorageFailed, StorageFull,
)
from doozertw.persist.fs import LazyFileSystem
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
from doozertw.persist.storage import DiskStorage
from doozertw.persist.wal import Mark

META = DataDirMeta(FORMAT_VERSION, "clu", "n1", "m-1")
W = "/w"


def seg_path(seq):
    return f"{W}/{wal.segment_name(seq)}"


NO_MARK, NO_HS = Mark(), HardState()


def header(seq=0, mark=NO_MARK, hs=NO_HS):
    return wal.header_record(seq, mark, hs)


def entry(index, term=1):
    return wal.entry_record(Entry(term, index, data=b"e%d" % index))


def mark(index, term=1, received=False):
    return wal.mark_record(Mark(index, term, received))


def wal_dir(*segments, first=0):
    """A LazyFileSystem whose W holds one segment per bytes argument."""
    fs = LazyFileSystem()
    fs.makedirs(W)
    for seq, data in enumerate(segments, first):
        h = fs.open_append(seg_path(seq))
        h.write(data)
        h.fsync()
        h.close()
    fs.fsync_dir(W)
    return fs


def replay(fs):
    return wal.replay(fs, W, StorageStats())


def corrupt_message(fs):
    with pytest.raises(CorruptLog) as info:
        replay(fs)
    return str(info.value)


# -- record layout ------------------------------------------------------------


def test_record_layout_is_type_length_data_crc_head_crc_payload():
    rec = wal.encode_record(wal.HARD_STATE, b"abc")
    pre = struct.pack(">BII", 2, 3, zlib.crc32(b"\x02abc"))
    assert rec == pre + struct.pack(">I", zlib.crc32(pre)) + b"abc"
    assert wal.HEAD_SIZE == 13
    e = Entry(2, 7, data=b"x")
    assert wal.entry_record(e) == wal.encode_record(1, codec.encode_entry(e))
    hs = HardState(3, "n2", 4)
    assert wal.hard_state_record(hs) == wal.encode_record(
        2, codec.encode_hard_state(hs))
    assert mark(7, 2, True) == wal.encode_record(
        3, struct.pack(">BQQ", 1, 7, 2))
    assert mark(7, 2) == wal.encode_record(3, struct.pack(">BQQ", 0, 7, 2))
    assert header(5, Mark(7, 2, True), hs) == wal.encode_record(
        4, struct.pack(">IQ", 1, 5) + struct.pack(">BQQ", 1, 7, 2)
        + codec.encode_hard_state(hs))


def test_segment_names_are_sixteen_hex_digits_and_dot_wal():
    assert wal.segment_name(26) == "000000000000001a.wal"
    assert wal.parse_segment_name("000000000000001a.wal") == 26
    assert wal.parse_segment_name("0000000000000010.wal") == 16
    for bad in ("00000000000001a.wal", "0000000000000001a.wal",
                "000000000000001a.wax", "000000000000001a_wal",
                "000000000000000g.wal", "00000000000000-1.wal",
                "000000000000001a.wal.tmp", "LOCK"):
        assert wal.parse_segment_name(bad) is None, bad


def test_a_mark_kind_above_one_is_undecodable():
    fs = wal_dir(header() + entry(1) + wal.encode_record(
        wal.SNAPSHOT_MARK, struct.pack(">BQQ", 2, 1, 1)))
    off = len(header() + entry(1))
    assert corrupt_message(fs) == (
        f"{seg_path(0)}: undecodable record (bad mark kind) at byte "
        f"offset {off}")


def test_segment_header_refusals_say_why():
    short = wal.encode_record(wal.SEGMENT_HEADER,
                              struct.pack(">IQ", 1, 0) + bytes(16))
    assert corrupt_message(wal_dir(short)) == (
        f"{seg_path(0)}: undecodable record (short segment header) at "
        f"byte offset 0")
    no_hs = wal.encode_record(wal.SEGMENT_HEADER,
                              struct.pack(">IQ", 1, 0) + bytes(17))
    assert corrupt_message(wal_dir(no_hs)) == (
        f"{seg_path(0)}: undecodable record (truncated message) at byte "
        f"offset 0")
    v2 = wal.encode_record(wal.SEGMENT_HEADER, struct.pack(">IQ", 2, 0)
                           + bytes(17) + codec.encode_hard_state(HardState()))
    assert corrupt_message(wal_dir(v2)) == (
        f"{seg_path(0)}: undecodable record (unknown wal version 2) at "
        f"byte offset 0")


# -- scanning -----------------------------------------------------------------


def test_damage_in_an_older_segment_names_its_kind_and_offset():
    good = header() + entry(1)
    off = len(good)
    nxt = header(1, hs=HardState()) + entry(2)
    cases = [
        (good + b"\x01\x02", "short record header"),
        (good + bytes(20), "zero bytes"),
        (good + entry(2)[:-1], "short record payload"),
        (good + entry(2)[:-1] + b"\xff", "bad record checksum"),
        (good + b"\x00" + entry(2)[1:], "bad record header checksum"),
        (good + wal.encode_record(9, b"x"), "unknown record type 9"),
    ]
    for data, problem in cases:
        msg = corrupt_message(wal_dir(data, nxt))
        assert msg == f"{seg_path(0)}: {problem} at byte offset {off}", problem


def test_an_unknown_record_type_at_the_very_end_is_corrupt_not_torn():
    fs = wal_dir(header() + entry(1) + wal.encode_record(9, b""))
    assert "unknown record type 9" in corrupt_message(fs)


def test_a_lone_garbage_header_at_the_end_is_a_torn_tail():
    """Exactly HEAD_SIZE bytes with a bad header checksum end the last
    segment: torn (cut); one byte more and it is damage."""
    good = header() + entry(1)
    state, _ = replay(wal_dir(good + b"\x07" * wal.HEAD_SIZE))
    assert [e.index for e in state.entries] == [1]
    fs = wal_dir(good + b"\x07" * (wal.HEAD_SIZE + 1))
    assert "bad record header checksum" in corrupt_message(fs)


def test_scan_returns_the_records_and_the_good_length():
    data = header() + entry(1) + mark(1)
    records, good = wal.scan_segment(data, "p", True)
    assert good == len(data)
    assert [(off, t) for off, t, _ in records] == [
        (0, 4), (len(header()), 1), (len(header() + entry(1)), 3)]
    assert records[1][2] == codec.encode_entry(Entry(1, 1, data=b"e1"))
    records, good = wal.scan_segment(data + b"\x04\x00", "p", True)
    assert good == len(data) and len(records) == 3
    with pytest.raises(CorruptLog, match="^p: short record header at byte"):
        wal.scan_segment(data + b"\x04\x00", "p", False)


def test_a_failed_fsync_of_the_cut_tail_names_the_segment():
    fs = wal_dir(header() + entry(1) + entry(2)[:5])
    fs.fail_next_fsync_with_eio()
    with pytest.raises(StorageFailed) as info:
        replay(fs)
    assert str(info.value).startswith(f"{seg_path(0)}: fsync failed: ")


def test_an_intact_log_is_read_without_writing_or_logging():
    fs = wal_dir(header() + entry(1), header(1) + entry(2))
    stats = StorageStats()
    with capturedLogs() as events:
        wal.replay(fs, W, stats)
    assert events == [] and stats.fsyncs == 0


def test_failed_fsyncs_of_the_wal_name_the_segment():
    fs = LazyFileSystem()
    fs.makedirs(W)
    fs.fail_next_fsync_with_eio()
    with pytest.raises(StorageFailed) as info:
        wal.WriteAheadLog.create(fs, W, 1 << 20, StorageStats())
    assert str(info.value).startswith(f"{seg_path(0)}: fsync failed: ")
    fs, w, _ = new_wal()
    w.append(entry(1), 1, 1)
    fs.fail_next_fsync_with_eio()
    with pytest.raises(StorageFailed) as info:
        w.sync()
    assert str(info.value).startswith(f"{seg_path(0)}: fsync failed: ")


def test_a_torn_tail_is_cut_and_logged():
    fs = wal_dir(header() + entry(1) + entry(2)[:5])
    with capturedLogs() as events:
        state, _ = replay(fs)
    assert [e.index for e in state.entries] == [1]
    assert fs.size(seg_path(0)) == len(header() + entry(1))
    assert fs.durable_content(seg_path(0)) == header() + entry(1)
    [ev] = [e for e in events if "torn" in e["log_format"]]
    assert ev["log_format"] == ("{path}: cutting torn tail at byte offset "
                                "{off} ({n} bytes dropped)")
    assert (ev["path"], ev["off"], ev["n"]) == (
        seg_path(0), len(header() + entry(1)), 5)


# -- replay: the log's own rules ---------------------------------------------


def test_replay_refusals_say_why():
    hs = HardState(1, "n1", 0)
    cases = [
        (header(mark=Mark(5, 1)) + entry(5),
         "entry 5 at or below snapshot point 5", len(header(mark=Mark(5, 1)))),
        (header() + entry(1) + entry(3),
         "entry 3 leaves a gap after 1", len(header() + entry(1))),
        (header() + entry(1) + entry(2) + mark(2) + mark(1),
         "snapshot mark 1 below 2", len(header() + entry(1) + entry(2) + mark(2))),
        (header() + entry(1) + mark(2),
         "compaction mark 2 beyond the log", len(header() + entry(1))),
        (header() + entry(1) + entry(2) + mark(2, 5),
         "compaction mark 2/5 does not match the log",
         len(header() + entry(1) + entry(2))),
        (header() + wal.hard_state_record(hs) + header(0),
         "segment header disagrees with the log before it",
         len(header() + wal.hard_state_record(hs))),
    ]
    for data, problem, off in cases:
        msg = corrupt_message(wal_dir(data))
        assert msg == f"{seg_path(0)}: {problem} at byte offset {off}", problem
    fs = wal_dir(header(), header(3))
    assert corrupt_message(fs) == (
        f"{seg_path(1)}: segment header says sequence 3, expected 1 at byte "
        f"offset 0")


def test_a_later_segment_header_repeating_the_hard_state_is_accepted():
    hs = HardState(1, "n1", 0)
    fs = wal_dir(header() + entry(1) + wal.hard_state_record(hs),
                 header(1, hs=hs) + entry(2))
    state, segs = replay(fs)
    assert state.hard_state == hs and [e.index for e in state.entries] == [1, 2]
    assert [(s.seq, s.base, s.max_index) for s in segs] == [(0, 0, 1), (1, 0, 2)]


def test_an_entry_replaces_the_suffix_from_its_index():
    fs = wal_dir(header() + entry(1) + entry(2) + entry(3) + entry(2, 2))
    state, segs = replay(fs)
    assert state.entries == [Entry(1, 1, data=b"e1"), Entry(2, 2, data=b"e2")]
    assert (state.base, state.base_term) == (0, 0)
    assert segs[0].max_index == 3  # the highest ever written, for release


def test_entries_after_deleted_segments_start_a_base_without_term():
    fs = wal_dir(header(4, Mark(2, 1)) + entry(11) + entry(12) + mark(12),
                 first=4)
    state, segs = replay(fs)
    assert (state.base, state.base_term) == (10, None)
    assert [e.index for e in state.entries] == [11, 12]
    assert state.mark == Mark(12, 1)
    assert [(s.seq, s.base, s.max_index) for s in segs] == [(4, 2, 12)]


def test_a_compaction_mark_past_the_entries_of_deleted_segments():
    """Header mark 0, no entry yet, then a compaction mark at 8: the entries
    up to 8 were in deleted segments; replay resumes after it."""
    fs = wal_dir(header(3) + mark(8, 2) + entry(9, 2), first=3)
    state, _ = replay(fs)
    assert (state.base, state.base_term, state.mark) == (8, 2, Mark(8, 2))
    assert [e.index for e in state.entries] == [9]


def test_a_received_mark_replaces_the_log_and_entries_continue_after_it():
    fs = wal_dir(header() + entry(1) + entry(2) + mark(20, 3, True)
                 + entry(21, 3))
    state, _ = replay(fs)
    assert (state.base, state.base_term) == (20, 3)
    assert state.mark == Mark(20, 3, True)
    assert [e.index for e in state.entries] == [21]
    # after a received mark a gap is damage (the log restarted there)
    fs = wal_dir(header() + mark(20, 3, True) + entry(22, 3))
    assert "entry 22 leaves a gap after 20" in corrupt_message(fs)


def test_a_compaction_mark_matching_the_log_or_below_a_deleted_base():
    fs = wal_dir(header() + entry(1) + entry(2, 2) + mark(2, 2))
    state, _ = replay(fs)
    assert state.mark == Mark(2, 2) and len(state.entries) == 2
    # the mark's term cannot be checked below the first replayed entry
    fs = wal_dir(header(2) + entry(11) + entry(12) + mark(10, 7), first=2)
    state, _ = replay(fs)
    assert state.mark == Mark(10, 7) and state.base == 10


def test_an_entry_at_the_base_rolls_the_log_back_before_it():
    """After deleted segments the base is the first replayed entry - 1; an
    entry at the base replaces everything from there, base included."""
    fs = wal_dir(header(2, Mark(8, 1)) + entry(11) + entry(12) + entry(10, 2)
                 + mark(9), first=2)
    state, _ = replay(fs)
    assert (state.base, state.base_term) == (9, None)
    assert state.entries == [Entry(2, 10, data=b"e10")]


def test_a_first_entry_one_past_the_next_index_starts_after_a_gap():
    assert corrupt_message(wal_dir(header() + entry(2))) == (
        f"{seg_path(0)}: entries 1..1 are missing and no snapshot covers "
        f"them (latest mark 0) at byte offset 0")


def test_a_compaction_mark_at_the_header_mark_must_match_its_term():
    fs = wal_dir(header(mark=Mark(4, 1)) + mark(4, 2))
    assert corrupt_message(fs) == (
        f"{seg_path(0)}: compaction mark 4/2 does not match the log at byte "
        f"offset {len(header(mark=Mark(4, 1)))}")
    state, _ = replay(wal_dir(header(mark=Mark(4, 1)) + mark(4, 1)))
    assert (state.base, state.base_term, state.mark) == (4, 1, Mark(4, 1))


def test_entries_missing_before_the_first_segment_are_corrupt():
    fs = wal_dir(header(2, Mark(3, 1)) + entry(11) + mark(4), first=2)
    assert corrupt_message(fs) == (
        f"{seg_path(2)}: entries 5..10 are missing and no snapshot covers "
        f"them (latest mark 4) at byte offset 0")


# -- replay: segments ---------------------------------------------------------


def test_a_missing_middle_segment_is_named():
    fs = wal_dir(header() + entry(1), header(1) + entry(2),
                 header(2) + entry(3))
    fs.remove(seg_path(1))
    assert corrupt_message(fs) == (
        f"{seg_path(1)}: segment missing (have {wal.segment_name(0)} and "
        f"{wal.segment_name(2)}) at byte offset 0")


def test_an_empty_last_segment_is_removed_and_logged():
    """A crash while rotating can leave the new segment without its
    header: it held nothing yet, so it goes."""
    fs = wal_dir(header() + entry(1), b"\x04\x00\x00")
    with capturedLogs() as events:
        state, segs = replay(fs)
    assert [e.index for e in state.entries] == [1]
    assert [s.seq for s in segs] == [0]
    assert not fs.exists(seg_path(1))
    assert fs.durable_content(seg_path(1)) is None  # and durably so
    [ev] = [e for e in events if e["log_format"]
            == "{path}: removing segment with no complete header"]
    assert ev["path"] == seg_path(1)


def test_a_lone_segment_without_a_header_is_corrupt():
    for data in (b"", entry(1), b"\x04\x00"):
        assert corrupt_message(wal_dir(data)) == (
            f"{seg_path(0)}: no segment header at byte offset 0")
    assert corrupt_message(wal_dir(header(), entry(2))) == (
        f"{seg_path(1)}: no segment header at byte offset 0")


def test_replay_starts_at_the_newest_restart_point():
    """A rewrite (received mark in the header) that crashed before
    deleting the older segments: they are deleted, durably, and logged."""
    rp = Mark(9, 2, True)
    fs = wal_dir(header() + entry(1), header(1) + entry(2),
                 header(2, rp) + entry(10, 2), header(3, Mark(9, 2)) + entry(11, 2))
    with capturedLogs() as events:
        state, segs = replay(fs)
    assert [s.seq for s in segs] == [2, 3]
    assert (state.base, state.base_term) == (9, 2)
    assert [e.index for e in state.entries] == [10, 11]
    assert fs.listdir(W) == [wal.segment_name(2), wal.segment_name(3)]
    fs.crash()
    assert fs.listdir(W) == [wal.segment_name(2), wal.segment_name(3)]
    deleted = [e for e in events if e["log_format"]
               == "{path}: deleting segment before a restart point"]
    assert [e["path"] for e in deleted] == [seg_path(0), seg_path(1)]


def test_the_second_segment_can_be_the_restart_point():
    fs = wal_dir(header() + entry(1), header(1, Mark(5, 1, True)))
    state, segs = replay(fs)
    assert [s.seq for s in segs] == [1] and state.base == 5


def test_the_first_segment_is_never_deleted_as_a_restart_point():
    fs = wal_dir(header(0, Mark(5, 1, True)) + entry(6), header(1) + entry(7))
    state, segs = replay(fs)
    assert [s.seq for s in segs] == [0, 1]
    assert [e.index for e in state.entries] == [6, 7]


def test_a_damaged_newer_header_is_not_a_restart_point_but_older_ones_are():
    rp = Mark(5, 1, True)
    bad = header(2, rp)
    bad = bad[:-1] + bytes([bad[-1] ^ 1])
    fs = wal_dir(header() + entry(1), header(1, rp) + entry(6), bad + entry(7))
    # segment 2 does not parse: replay starts at 1 and finds 2 damaged
    msg = corrupt_message(fs)
    assert msg.startswith(seg_path(2)) and fs.listdir(W)[0] == wal.segment_name(1)
    short = wal.encode_record(wal.SEGMENT_HEADER, b"\x00" * 3)
    fs = wal_dir(header() + entry(1), header(1, rp) + entry(6), short)
    assert "short segment header" in corrupt_message(fs)
    assert not fs.exists(seg_path(0))
    entry_first = entry(7)
    fs = wal_dir(header() + entry(1), header(1, rp) + entry(6), entry_first)
    assert "no segment header" in corrupt_message(fs)
    assert not fs.exists(seg_path(0))


# -- the writer ---------------------------------------------------------------


def new_wal(seg=1 << 20):
    fs = LazyFileSystem()
    fs.makedirs(W)
    stats = StorageStats()
    return fs, wal.WriteAheadLog.create(fs, W, seg, stats), stats


def test_create_writes_a_durable_first_segment():
    fs, w, stats = new_wal()
    assert fs.listdir(W) == [wal.segment_name(0)]
    assert fs.durable_content(seg_path(0)) == header()
    assert (stats.records_written, stats.fsyncs) == (1, 2)
    assert [(s.seq, s.base, s.max_index) for s in w.segments] == [(0, 0, 0)]
    assert w.base == 0


def test_append_counts_and_tracks_the_highest_index():
    fs, w, stats = new_wal()
    w.append(entry(1) + entry(2), 2, 2)
    w.append(entry(1, 2), 1, 1)
    assert stats.records_written == 4  # with the segment header
    assert w.segments[-1].max_index == 2
    assert fs.read_file(seg_path(0)) == header() + entry(1) + entry(2) + entry(1, 2)
    assert fs.durable_content(seg_path(0)) == header()  # no fsync yet
    w.sync()
    assert fs.durable_content(seg_path(0)) == fs.read_file(seg_path(0))


def test_rotation_is_due_at_exactly_the_segment_size():
    size = len(header()) + len(entry(1))
    fs, w, _ = new_wal(seg=size)
    assert not w.needs_rotation()
    w.append(entry(1), 1, 1)
    assert w.needs_rotation()
    w.rotate(Mark(1, 1), HardState(1, "", 1))
    assert not w.needs_rotation()
    assert [(s.seq, s.base) for s in w.segments] == [(0, 0), (1, 1)]
    assert fs.durable_content(seg_path(1)) == header(1, Mark(1, 1),
                                                     HardState(1, "", 1))
    w.append(entry(2), 1, 2)
    assert fs.read_file(seg_path(1)).endswith(entry(2))


def test_enospc_cuts_the_segment_back_and_a_failed_cut_is_fatal():
    fs, w, _ = new_wal()
    w.append(entry(1), 1, 1)
    fs.fail_writes_with_enospc_after(3)
    with pytest.raises(OSError) as info:
        w.append(entry(2), 1, 2)
    assert info.value.errno == errno.ENOSPC
    assert fs.read_file(seg_path(0)) == header() + entry(1)
    assert w.segments[-1].max_index == 1

    class Broken:
        def truncate(self, size):
            raise OSError(errno.EIO, "EIO")

        def write(self, data):
            raise OSError(errno.ENOSPC, "full")

    w._handle = Broken()
    with pytest.raises(StorageFailed) as failed:
        w.append(entry(2), 1, 2)
    assert str(failed.value) == (f"{seg_path(0)}: cannot roll back a partial "
                                 f"write: [Errno 5] EIO")


def test_other_write_errors_propagate_without_a_roll_back():
    """Only ENOSPC is rolled back (the caller may retry); after any other
    error the storage is poisoned, so the segment is left as it is."""
    fs, w, stats = new_wal()
    cuts = []

    class Failing:
        def write(self, data):
            raise OSError(errno.EIO, "EIO")

        def truncate(self, size):
            cuts.append(size)

    w._handle = Failing()
    with pytest.raises(OSError) as info:
        w.append(entry(1), 1, 1)
    assert info.value.errno == errno.EIO and cuts == []
    assert w.segments[-1].max_index == 0 and stats.records_written == 1


def test_release_deletes_the_oldest_segments_covered_by_the_floor():
    fs, w, stats = new_wal(seg=1)
    for i in range(1, 5):
        w.append(entry(i), 1, i)
        w.rotate(Mark(), HardState())
    assert [s.max_index for s in w.segments] == [1, 2, 3, 4, 0]
    fsyncs = stats.fsyncs
    assert w.release(2) == 2
    assert [s.seq for s in w.segments] == [2, 3, 4]
    assert stats.fsyncs == fsyncs + 2  # one directory fsync per deletion
    assert fs.listdir(W) == [wal.segment_name(s) for s in (2, 3, 4)]
    assert w.release(2) == 0
    assert w.release(10) == 2  # never the current segment
    assert [s.seq for s in w.segments] == [4]
    fs.crash()
    assert fs.listdir(W) == [wal.segment_name(4)]


def test_rewrite_replaces_the_log_by_one_restart_point():
    fs, w, stats = new_wal(seg=1)
    w.append(entry(1), 1, 1)
    w.rotate(Mark(), HardState())
    w.received_base = 7
    records = stats.records_written
    hs = HardState(2, "n2", 9)
    w.rewrite(Mark(8, 2), hs, [Entry(2, 9), Entry(2, 10), Entry(2, 11)])
    assert stats.records_written == records + 4  # header + three entries
    assert w.base == 0
    assert [(s.seq, s.path, s.base, s.max_index) for s in w.segments] == [
        (2, seg_path(2), 8, 11)]
    fs.crash()
    assert fs.listdir(W) == [wal.segment_name(2)]
    assert fs.read_file(seg_path(2)) == (
        header(2, Mark(8, 2, True), hs) + wal.entry_record(Entry(2, 9))
        + wal.entry_record(Entry(2, 10)) + wal.entry_record(Entry(2, 11)))
    w2, state = wal.WriteAheadLog.open(fs, W, 1, StorageStats())
    assert (state.base, state.base_term, state.hard_state) == (8, 2, hs)
    assert w2.base == 8
    w2.append(entry(12, 2), 1, 12)  # appends to the rewritten segment
    assert fs.read_file(seg_path(2)).endswith(entry(12, 2))
    # the rewritten segment is released like any other once covered
    w2.rotate(Mark(12, 2), hs)
    assert w2.release(12) == 1 and not fs.exists(seg_path(2))


def test_rewrite_without_entries():
    fs, w, _ = new_wal()
    w.rewrite(Mark(4, 1), HardState(1, "", 4), [])
    assert [(s.seq, s.base, s.max_index) for s in w.segments] == [(1, 4, 0)]
    w.append(entry(5), 1, 5)
    w.sync()
    _, state = wal.WriteAheadLog.open(fs, W, 1 << 20, StorageStats())
    assert [e.index for e in state.entries] == [5] and state.base == 4


def test_a_failed_new_segment_is_removed():
    fs, w, _ = new_wal()
    fs.fail_writes_with_enospc_after(5)
    with pytest.raises(OSError):
        w.rotate(Mark(), HardState())
    assert fs.listdir(W) == [wal.segment_name(0)]
    assert len(w.segments) == 1
    fs.clear_enospc()
    w.append(entry(1), 1, 1)  # the old segment is still the current one
    assert fs.read_file(seg_path(0)).endswith(entry(1))


def test_open_resumes_appending_at_the_end_of_the_last_segment():
    fs, w, _ = new_wal()
    w.append(entry(1), 1, 1)
    w.sync()
    w.close()
    w2, state = wal.WriteAheadLog.open(fs, W, len(header() + entry(1)),
                                       StorageStats())
    assert w2.needs_rotation()  # its size counts what is already there
    assert w2.base == 0


# -- snapshot files -------------------------------------------------------------


def snap(index, term, data=b""):
    return Snapshot(SnapshotMeta(index, term, ConfState({"n1"})), data)


def test_snapshot_file_names():
    assert snapfile.snap_name(26, 3) == "snap-000000000000001a-0000000000000003.snap"
    assert snapfile.parse_snap_name(snapfile.snap_name(26, 3)) == (26, 3)
    assert snapfile.parse_snap_name(snapfile.snap_name(16, 17)) == (16, 17)
    good = snapfile.snap_name(26, 3)
    for bad in (good[:-1], good + "x", "x" + good[1:], good[:-5] + ".snaq",
                good[:21] + "_" + good[22:], good[:5] + "g" + good[6:],
                good[:22] + "g" + good[23:], good + ".tmp", "meta"):
        assert snapfile.parse_snap_name(bad) is None, bad


def test_snapshot_file_layout():
    s = snap(5, 2, b"state")
    body = codec.encode_snapshot(s)
    data = snapfile.encode_snapfile(s)
    assert data == (b"DZTWSNAP" + struct.pack(">IIQ", 1, zlib.crc32(body),
                                              len(body)) + body)
    assert snapfile.decode_snapfile(data, "p") == s


def test_damaged_snapshot_files_say_why():
    s = snap(5, 2, b"state")
    data = snapfile.encode_snapfile(s)
    body = codec.encode_snapshot(s)
    head = struct.Struct(">8sIIQ")
    cases = [
        (data[:23], "p: shorter than a snapshot header"),
        (b"DZTWSNAQ" + data[8:], "p: bad magic"),
        (head.pack(b"DZTWSNAP", 2, zlib.crc32(body), len(body)) + body,
         "p: unknown snapshot version 2"),
        (data + b"x", f"p: body is {len(body) + 1} bytes, header says {len(body)}"),
        (data[:-1] + bytes([data[-1] ^ 1]), "p: checksum mismatch"),
        (head.pack(b"DZTWSNAP", 1, zlib.crc32(b"\x01"), 1) + b"\x01",
         "p: undecodable snapshot: truncated message"),
    ]
    for bad, why in cases:
        with pytest.raises(ValueError) as info:
            snapfile.decode_snapfile(bad, "p")
        assert str(info.value) == why
    # exactly a header and an empty body: the body is checked, not the size
    empty = head.pack(b"DZTWSNAP", 1, zlib.crc32(b""), 0)
    with pytest.raises(ValueError, match="undecodable"):
        snapfile.decode_snapfile(empty, "p")


def snap_dir():
    fs = LazyFileSystem()
    fs.makedirs("/s")
    return fs


def test_read_snapshot_returns_none_and_logs_for_every_unusable_file():
    fs = snap_dir()
    stats = StorageStats()
    assert snapfile.write_snapshot(fs, "/s", snap(5, 2, b"x"), stats) == \
        snapfile.snap_name(5, 2)
    assert snapfile.read_snapshot(fs, "/s", 5, 2) == snap(5, 2, b"x")
    with capturedLogs() as events:
        assert snapfile.read_snapshot(fs, "/s", 6, 2) is None
        name = "/s/" + snapfile.snap_name(5, 2)
        fs.rename(name, "/s/" + snapfile.snap_name(5, 3))
        assert snapfile.read_snapshot(fs, "/s", 5, 3) is None
        fs.corrupt("/s/" + snapfile.snap_name(5, 3), b"junk")
        assert snapfile.read_snapshot(fs, "/s", 5, 3) is None
    assert [(e["log_format"], e.get("path"), e.get("i"), e.get("t"),
             e.get("problem")) for e in events] == [
        ("{path}: snapshot file missing", "/s/" + snapfile.snap_name(6, 2),
         None, None, None),
        ("{path}: holds snapshot {i}/{t}", "/s/" + snapfile.snap_name(5, 3),
         5, 2, None),
        ("damaged snapshot file: {problem}", None, None, None,
         "/s/" + snapfile.snap_name(5, 3) + ": shorter than a snapshot header"),
    ]


def test_a_snapshot_with_the_right_term_but_another_index_is_refused():
    fs = snap_dir()
    snapfile.write_snapshot(fs, "/s", snap(5, 2), StorageStats())
    fs.rename("/s/" + snapfile.snap_name(5, 2), "/s/" + snapfile.snap_name(6, 2))
    assert snapfile.read_snapshot(fs, "/s", 6, 2) is None


def test_retain_keeps_the_current_and_the_one_before_it():
    fs = snap_dir()
    stats = StorageStats()
    for i, t in ((3, 1), (5, 1), (7, 2), (9, 2)):
        snapfile.write_snapshot(fs, "/s", snap(i, t), stats)
    h = fs.open_append("/s/x.tmp")
    h.close()
    h = fs.open_append("/s/notes")
    h.close()
    fsyncs = stats.fsyncs
    assert snapfile.retain(fs, "/s", 7, 2, stats) == (5, 1)
    assert stats.fsyncs == fsyncs + 1
    assert fs.listdir("/s") == sorted(
        ["notes", snapfile.snap_name(5, 1), snapfile.snap_name(7, 2)])
    fs.crash()
    assert snapfile.snap_name(9, 2) not in fs.listdir("/s")
    fsyncs = stats.fsyncs
    assert snapfile.retain(fs, "/s", 7, 2, stats) == (5, 1)
    assert stats.fsyncs == fsyncs  # nothing deleted: no directory fsync
    assert snapfile.retain(fs, "/s", 5, 1, stats) is None
    assert snapfile.list_snapshots(fs, "/s") == [(5, 1)]


def test_list_snapshots_sorts_by_index_then_term():
    fs = snap_dir()
    stats = StorageStats()
    for i, t in ((16, 1), (9, 3), (9, 2), (2, 5)):
        snapfile.write_snapshot(fs, "/s", snap(i, t), stats)
    assert snapfile.list_snapshots(fs, "/s") == [(2, 5), (9, 2), (9, 3), (16, 1)]


# -- DiskStorage ----------------------------------------------------------------


def ents(first, n, term=1):
    return tuple(Entry(term, i, data=b"e%d" % i) for i in range(first, first + n))


def new_storage(fs, seg=1 << 20):
    return DiskStorage.create(fs, "/data", META, segment_size=seg)


def reopen(fs, seg=1 << 20):
    return DiskStorage.open(fs, "/data", "clu", "n1", segment_size=seg)


def test_io_errors_name_the_operation_and_are_logged():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    fs.fail_next_write_with_eio()
    with capturedLogs() as events, pytest.raises(StorageFailed) as info:
        s.compact(snap(2, 1))
    assert str(info.value).startswith("/data: compact: ")
    [ev] = [e for e in events if e.get("log_level") is not None
            and e["log_level"].name == "error"]
    assert ev["log_format"] == ("{path}: {what} failed, storage is now "
                                "unusable: {exc}")
    assert (ev["path"], ev["what"], ev["exc"]) == ("/data", "compact",
                                                   str(info.value))
    with pytest.raises(StorageFailed) as info:
        s.last_index()
    assert str(info.value).startswith(
        "/data: storage failed earlier and refuses every call: /data: compact")
    fs = LazyFileSystem()
    s = new_storage(fs)
    fs.fail_next_write_with_eio()
    with pytest.raises(StorageFailed, match="^/data: save: "):
        s.save(Ready(entries=ents(1, 1)))


def test_enospc_is_storage_full_naming_the_operation():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    fs.fail_writes_with_enospc_after(0)
    with pytest.raises(StorageFull) as info:
        s.compact(snap(2, 1))
    assert str(info.value) == ("/data: compact: no space left on device; "
                               "nothing was changed")
    with pytest.raises(StorageFull, match="^/data: save: no space"):
        s.save(Ready(entries=ents(4, 1)))
    assert not s.failed


class FailingRemoves(LazyFileSystem):
    """Removes raise EIO while ``failing``."""

    failing = False

    def remove(self, path):
        if self.failing:
            raise OSError(errno.EIO, "EIO", path)
        super().remove(path)


@pytest.mark.parametrize("what, op", [
    ("clean up after compaction", lambda s: s.compact(snap(2, 1))),
    ("clean up after a received snapshot",
     lambda s: s.apply_snapshot(snap(9, 2))),
])
def test_a_failed_clean_up_names_it_and_poisons_the_storage(what, op):
    fs = FailingRemoves()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    fs.open_append("/data/snap/stale.tmp").close()
    fs.failing = True
    with capturedLogs() as events, pytest.raises(StorageFailed) as info:
        op(s)
    assert str(info.value) == (f"/data: {what}: [Errno 5] EIO: "
                               f"'/data/snap/stale.tmp'")
    assert s.failed
    assert [e["what"] for e in events if "what" in e] == [what]


def test_single_entry_segments_before_any_snapshot_are_all_kept():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    for i in range(1, 4):
        s.save(Ready(entries=ents(i, 1)))
    s.close()
    assert [e.index for e in reopen(fs, seg=1).entries] == [1, 2, 3]


def test_segments_without_entries_go_at_the_next_rotation():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    s.save(Ready(hard_state=HardState(1, "n1", 0)))
    s.save(Ready(hard_state=HardState(2, "n1", 0)))
    assert fs.listdir("/data/wal") == [wal.segment_name(2)]
    s.close()
    assert reopen(fs, seg=1).hard_state == HardState(2, "n1", 0)


def test_create_accepts_an_empty_directory_and_refuses_a_file():
    fs = LazyFileSystem()
    fs.makedirs("/empty")
    s = DiskStorage.create(fs, "/empty", META)
    assert s.meta == META and s.path == "/empty"
    s.close()
    fs.open_append("/file").close()
    with pytest.raises(DataDirError) as info:
        DiskStorage.create(fs, "/file", META)
    assert str(info.value) == ("/file: not empty; refusing to create a data "
                               "directory there")


def test_an_io_error_while_creating_names_the_create():
    fs = LazyFileSystem()
    fs.fail_writes_with_enospc_after(0)
    with pytest.raises(StorageFull) as info:
        new_storage(fs)
    assert str(info.value) == ("/data: create: no space left on device; "
                               "nothing was changed")
    assert not fs.exists("/data/meta")
    fs.clear_enospc()
    fs.lock("/data/LOCK").release()  # the failed create released it


def test_a_lock_that_fails_otherwise_says_so():
    class NoLocks(LazyFileSystem):
        def lock(self, path):
            raise OSError(errno.EIO, "EIO", path)

    with pytest.raises(DataDirError) as info:
        DiskStorage.create(NoLocks(), "/data", META)
    assert str(info.value) == ("/data: cannot lock: [Errno 5] EIO: "
                               "'/data/LOCK'")


def test_compaction_writes_one_mark_record():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    records = s.stats.records_written
    s.compact(snap(2, 1))
    assert s.stats.records_written == records + 1


def test_an_io_error_while_opening_names_the_open():
    """Opening may write (a fall-back rewrites the log): ENOSPC there is
    StorageFull naming the open, and the directory is left unlocked."""
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 8)))
    s.compact(snap(3, 1))
    s.compact(snap(6, 1))
    s.close()
    fs.corrupt("/data/snap/" + snapfile.snap_name(6, 1), b"bad")
    fs.fail_writes_with_enospc_after(0)
    with pytest.raises(StorageFull) as info:
        reopen(fs)
    assert str(info.value) == ("/data: open: no space left on device; "
                               "nothing was changed")
    fs.clear_enospc()
    fs.fail_next_write_with_eio()
    with pytest.raises(StorageFailed, match="^/data: open: .*Errno 5"):
        reopen(fs)
    assert reopen(fs).snapshot.index == 3


def test_close_survives_a_failing_handle_close():
    fs = LazyFileSystem()
    s = new_storage(fs)

    class Broken:
        def close(self):
            raise OSError(errno.EIO, "EIO")

    s._wal._handle = Broken()
    s.close()
    reopen(fs).close()  # the lock was released all the same


def test_a_snapshot_at_index_zero_is_kept_with_its_configuration():
    fs = LazyFileSystem()
    s = new_storage(fs)
    zero = Snapshot(SnapshotMeta(0, 0, ConfState({"n1", "n2"})), b"boot")
    s.apply_snapshot(zero)
    assert s.snapshot == zero
    s.close()
    assert reopen(fs).snapshot == zero


def test_fallback_to_a_received_snapshot_after_a_compaction():
    """A received snapshot at 10, entries after it, a compaction at 15:
    the received snapshot is the fall-back, so the segments it needs stay."""
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    s.save(Ready(snapshot=snap(10, 1, b"ten")))
    for i in range(11, 17):
        s.save(Ready(entries=ents(i, 1)))
    s.compact(snap(15, 1, b"fifteen"))
    assert s._floor == 10
    s.close()
    fs.corrupt("/data/snap/" + snapfile.snap_name(15, 1), b"bad")
    t = reopen(fs, seg=1)
    assert t.snapshot == snap(10, 1, b"ten")
    assert [e.index for e in t.entries] == list(range(11, 17))


def test_closed_storage_refuses_calls_and_close_is_idempotent():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.close()
    s.close()
    with pytest.raises(StorageFailed) as info:
        s.last_index()
    assert str(info.value) == "/data: storage is closed"
    reopen(fs).close()  # the lock was released once, and is free


def test_compaction_checks_the_term_of_the_entry_at_its_index():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 2) + ents(3, 2, term=2)))
    s.compact(snap(3, 2))
    assert [e.index for e in s.entries] == [4]
    s.compact(snap(4, 2))
    assert s.entries == [] and s.snapshot == snap(4, 2)


def test_compaction_refusals_say_why():
    from doozertw.consensus.log import LogError
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    with pytest.raises(LogError) as info:
        s.compact(snap(4, 1))
    assert str(info.value) == "compacting beyond the stored log"
    with pytest.raises(LogError) as info:
        s.compact(snap(2, 5))
    assert str(info.value) == "snapshot term 5 does not match entry 2"
    s.compact(snap(3, 1))  # at the last entry
    assert s.entries == [] and s.last_index() == 3
    s.compact(snap(3, 1))  # again: nothing to do
    s.compact(snap(2, 1))  # older: nothing to do
    assert s.snapshot == snap(3, 1)


def test_storage_refusals_of_a_bad_batch_say_why():
    from doozertw.consensus.log import LogError
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    with pytest.raises(LogError) as info:
        s.append(list(ents(5, 1)))
    assert str(info.value) == "gap: storing 5 after 3"
    with pytest.raises(LogError) as info:
        s.append([Entry(1, 4), Entry(1, 6)])
    assert str(info.value) == "entries not contiguous: 4 then 6"
    with pytest.raises(LogError) as info:
        s.save(Ready(snapshot=snap(10, 2), entries=ents(12, 1, term=2)))
    assert str(info.value) == "gap: storing 12 after 10"
    s.save(Ready(snapshot=snap(10, 2), entries=ents(11, 1, term=2)))
    assert s.last_index() == 11


def test_entries_a_received_snapshot_covers_are_dropped():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 3)))
    s.save(Ready(snapshot=snap(10, 2), entries=ents(9, 4, term=2)))
    assert [e.index for e in s.entries] == [11, 12]
    s.save(Ready(snapshot=snap(8, 1), entries=ents(12, 2, term=3)))  # older
    assert s.snapshot.index == 10
    assert [(e.index, e.term) for e in s.entries] == [(11, 2), (12, 3), (13, 3)]
    s.close()
    t = reopen(fs)
    assert t.snapshot.index == 10
    assert [(e.index, e.term) for e in t.entries] == [(11, 2), (12, 3), (13, 3)]


def test_a_snapshot_at_the_current_index_is_stored_again():
    """A received snapshot at the current snapshot's index (not below it)
    is applied: it replaces the entries after it."""
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(snapshot=snap(5, 1, b"a"), entries=ents(6, 2)))
    s.save(Ready(snapshot=snap(5, 1, b"a")))
    assert s.entries == [] and s.last_index() == 5


def test_hard_state_only_changes_are_durable_only_for_term_or_vote():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 2), hard_state=HardState(1, "n1", 0)))
    n = s.stats.fsyncs
    s.save(Ready(hard_state=HardState(1, "n1", 2)))
    assert s.stats.fsyncs == n
    s.save(Ready(hard_state=HardState(2, "n1", 2)))
    assert s.stats.fsyncs == n + 1
    s.save(Ready(hard_state=HardState(2, "n3", 2)))
    assert s.stats.fsyncs == n + 2
    s.save(Ready(entries=ents(3, 1)))  # entries alone are durable
    assert s.stats.fsyncs == n + 3
    s.apply_snapshot(snap(9, 2))  # so is a snapshot (file + its dir + wal)
    assert s.stats.fsyncs > n + 4
    fs.crash()
    t = reopen(fs)
    assert t.snapshot.index == 9 and t.hard_state == HardState(2, "n3", 2)


def test_rotation_before_a_save_repeats_snapshot_and_hard_state():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    s.save(Ready(entries=ents(1, 3), hard_state=HardState(1, "n1", 2)))
    s.compact(snap(2, 1))
    s.save(Ready(entries=ents(4, 1)))
    segs = fs.listdir("/data/wal")
    last = fs.read_file(f"/data/wal/{segs[-1]}")
    assert last.startswith(wal.header_record(
        int(segs[-1][:16], 16), Mark(2, 1), HardState(1, "n1", 2)))
    s.close()
    t = reopen(fs, seg=1)
    assert [e.index for e in t.entries] == [3, 4] and t.snapshot.index == 2


def _two_per_segment_then_compacted(first_snapshot):
    """Entries 1..8 saved two per segment, compacted at ``first_snapshot``
    then at 6, entry 9 saved; snapshot 6's file then damaged."""
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    for i in range(1, 9, 2):
        s.save(Ready(entries=ents(i, 2)))
    s.compact(snap(first_snapshot, 1, b"first"))
    s.compact(snap(6, 1, b"six"))
    s.save(Ready(entries=ents(9, 1)))
    floor = s._floor
    kept = [seg.max_index for seg in s._wal.segments if seg.max_index]
    s.close()
    fs.corrupt("/data/snap/" + snapfile.snap_name(6, 1), b"bad")
    return fs, floor, kept


def test_fallback_checks_the_term_of_the_log_at_the_older_snapshot():
    """Entries 1..3 of term 1, 4..9 of term 2, two per segment; snapshots at
    3 (term 1) and 6; the replay starts at the segment of 3 and 4."""
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    s.save(Ready(entries=ents(1, 2)))
    s.save(Ready(entries=ents(3, 1) + ents(4, 1, term=2)))
    s.save(Ready(entries=ents(5, 2, term=2)))
    s.save(Ready(entries=ents(7, 2, term=2)))
    s.compact(snap(3, 1, b"three"))
    s.compact(snap(6, 2, b"six"))
    s.close()
    fs.corrupt("/data/snap/" + snapfile.snap_name(6, 2), b"bad")
    with capturedLogs() as events:
        t = reopen(fs, seg=1)
    assert t.snapshot == snap(3, 1, b"three")
    assert [(e.index, e.term) for e in t.entries] == [
        (4, 2), (5, 2), (6, 2), (7, 2), (8, 2)]
    # the damaged file is read (and reported) once
    assert [e["log_format"] for e in events].count(
        "damaged snapshot file: {problem}") == 1


def test_fallback_to_the_snapshot_a_segment_header_starts_from():
    """Compaction at 4, then entries in segments whose headers carry mark 4:
    once the older segments go, replay starts at base 4 with its term, and
    the snapshot at 4 is still a fall-back."""
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    for i in range(1, 5):
        s.save(Ready(entries=ents(i, 1)))
    s.compact(snap(4, 1, b"four"))
    s.save(Ready(entries=ents(5, 1)))
    s.save(Ready(entries=ents(6, 1)))
    s.compact(snap(6, 1, b"six"))
    s.close()
    fs.corrupt("/data/snap/" + snapfile.snap_name(6, 1), b"bad")
    t = reopen(fs, seg=1)
    assert t.snapshot == snap(4, 1, b"four")
    assert [e.index for e in t.entries] == [5, 6]


def test_segments_go_once_a_snapshot_covers_them_keeping_the_fallback():
    fs, floor, kept = _two_per_segment_then_compacted(3)
    # the fall-back snapshot 3 needs the entries after 3: the segment of 3, 4 stays
    assert floor == 3 and min(kept) == 4
    assert snapfile.list_snapshots(fs, "/data/snap") == [(3, 1), (6, 1)]
    t = reopen(fs, seg=1)
    assert t.snapshot == snap(3, 1, b"first")
    assert [e.index for e in t.entries] == list(range(4, 10))


def test_fallback_survives_when_the_previous_snapshot_ends_a_segment():
    # the previous snapshot's index (4) ends a segment: that segment stays,
    # so that the fall-back can check the term of entry 4
    fs, floor, kept = _two_per_segment_then_compacted(4)
    assert floor == 4 and min(kept) == 4
    t = reopen(fs, seg=1)
    assert t.snapshot == snap(4, 1, b"first")
    assert [e.index for e in t.entries] == list(range(5, 10))


def test_the_fallback_is_not_kept_after_a_received_snapshot():
    fs = LazyFileSystem()
    s = new_storage(fs, seg=1)
    for i in range(1, 6):
        s.save(Ready(entries=ents(i, 1)))
    s.compact(snap(3, 1))
    s.save(Ready(snapshot=snap(20, 2)))
    assert s._floor == 20
    assert [seg.seq for seg in s._wal.segments] == [s._wal.segments[-1].seq]


def test_tmp_files_are_removed_on_open():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 1)))
    s.close()
    for p in ("/data/wal/x.tmp", "/data/snap/y.tmp"):
        fs.open_append(p).close()
    fs.open_append("/data/snap/keep").close()
    reopen(fs).close()
    assert fs.listdir("/data/wal") == [wal.segment_name(0)]
    assert fs.listdir("/data/snap") == ["keep"]


def _compacted_at_3_and_6():
    """A closed storage of entries 1..8 with snapshot files at 3 and 6."""
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 8)))
    s.compact(snap(3, 1, b"three"))
    s.compact(snap(6, 1, b"six"))
    s.close()
    return fs


def test_a_fallback_is_logged_and_the_damaged_file_set_aside():
    fs = _compacted_at_3_and_6()
    bad = "/data/snap/" + snapfile.snap_name(6, 1)
    fs.corrupt(bad, b"damaged")
    with capturedLogs() as events:
        t = reopen(fs)
    assert t.snapshot == snap(3, 1, b"three")
    [ev] = [e for e in events if "falling" in e["log_format"]]
    assert ev["log_format"] == ("{dir}/{name}: current snapshot unusable; "
                                "falling back to snapshot {index}, the WAL "
                                "still covers the entries after it")
    assert (ev["dir"], ev["name"], ev["index"]) == (
        "/data/snap", snapfile.snap_name(6, 1), 3)
    assert fs.read_file(bad + ".corrupt") == b"damaged"
    assert not fs.exists(bad)
    t.close()
    # the fall-back was made the log's restart point: it opens again
    t = reopen(fs)
    assert t.snapshot.index == 3 and t.last_index() == 8


def test_a_missing_current_snapshot_falls_back_without_renaming():
    fs = _compacted_at_3_and_6()
    fs.remove("/data/snap/" + snapfile.snap_name(6, 1))
    t = reopen(fs)
    assert t.snapshot.index == 3
    assert not any(n.endswith(".corrupt") for n in fs.listdir("/data/snap"))


def test_no_fallback_older_than_the_replayable_wal_or_of_another_term():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 8)))
    s.compact(snap(6, 1, b"six"))
    s.close()
    # a stray older snapshot of another term is not the log's entry 3
    snapfile.write_snapshot(fs, "/data/snap", snap(3, 9), StorageStats())
    fs.corrupt("/data/snap/" + snapfile.snap_name(6, 1), b"x")
    with pytest.raises(CorruptLog) as info:
        reopen(fs)
    assert str(info.value) == (
        "/data/snap/" + snapfile.snap_name(6, 1) + ": snapshot 6/1 is missing"
        " or damaged and the WAL (starting after index 0) does not cover an"
        " intact older snapshot")


def test_a_damaged_snapshot_at_index_zero_of_a_new_log_is_no_snapshot():
    fs = LazyFileSystem()
    s = new_storage(fs)
    s.save(Ready(entries=ents(1, 2)))
    s.close()
    snapfile.write_snapshot(fs, "/data/snap", snap(0, 0), StorageStats())
    fs.corrupt("/data/snap/" + snapfile.snap_name(0, 0), b"junk")
    t = reopen(fs)
    assert t.snapshot == Snapshot() and t.last_index() == 2
