"""Segmented write-ahead log.

A log is a directory of segments ``<seq:016x>.wal`` with consecutive
sequence numbers. A segment is a sequence of records::

    type u8 | length u32 | data_crc u32 | head_crc u32 | payload

``data_crc`` is zlib's CRC32 (not CRC32C: zlib is in the standard library
and fast enough here) over the type byte and the payload; ``head_crc`` is
CRC32 over the 9 bytes before it. The separate header checksum lets
recovery trust a record's length, so a flipped length bit in the middle of
a segment is reported as corruption instead of looking like a torn tail.

Record types:

- SEGMENT_HEADER (first record of every segment): format version, sequence
  number, the snapshot mark and hard state current when the segment was
  started, so older segments can be deleted: a replay that starts at a
  segment starts from its header (entries run from its mark's index + 1).
  A header after the first must repeat the replayed hard state.
- ENTRY: one codec-encoded Entry. An entry at index i replaces every entry
  >= i (a follower truncating its conflicting suffix, as in etcd's wal).
- HARD_STATE: codec-encoded HardState.
- SNAPSHOT_MARK: kind, index, term. A RECEIVED mark (snapshot sent by the
  leader) replaces the whole log; a COMPACT mark records the compaction
  point and keeps entries (the storage drops those <= the loaded snapshot).

Recovery: in the LAST segment, a torn last record (short header, short
payload, bad CRC of a record ending exactly at end of file, or only zero
bytes left) is cut off and logged. Anything else that does not parse,
anywhere, and a gap in sequence numbers, raises CorruptLog with the file
and byte offset. Partial data is never loaded silently.
"""

from __future__ import annotations

import errno
import struct
import zlib

import attrs
from twisted.logger import Logger

from doozertw.consensus import codec
from doozertw.consensus.messages import Entry, HardState
from doozertw.persist import durable
from doozertw.persist.errors import CorruptLog, StorageFailed

log = Logger()

WAL_VERSION = 1
ENTRY, HARD_STATE, SNAPSHOT_MARK, SEGMENT_HEADER = 1, 2, 3, 4
_HEAD = struct.Struct(">BIII")
HEAD_SIZE = _HEAD.size
_PRE = struct.Struct(">BII")
_MARK = struct.Struct(">BQQ")
_SEG = struct.Struct(">IQ")
DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024


@attrs.frozen
class Mark:
    """A snapshot point in the log; ``received`` marks a leader's snapshot
    that replaced the whole log (otherwise a local compaction)."""

    index: int = 0
    term: int = 0
    received: bool = False


def encode_record(rtype: int, payload: bytes) -> bytes:
    data_crc = zlib.crc32(payload, zlib.crc32(bytes([rtype])))
    pre = _PRE.pack(rtype, len(payload), data_crc)
    return pre + struct.pack(">I", zlib.crc32(pre)) + payload


def entry_record(entry: Entry) -> bytes:
    return encode_record(ENTRY, codec.encode_entry(entry))


def hard_state_record(hs: HardState) -> bytes:
    return encode_record(HARD_STATE, codec.encode_hard_state(hs))


def _mark_bytes(mark):
    return _MARK.pack(int(mark.received), mark.index, mark.term)


def mark_record(mark: Mark) -> bytes:
    return encode_record(SNAPSHOT_MARK, _mark_bytes(mark))


def header_record(seq: int, mark: Mark, hs: HardState) -> bytes:
    payload = (_SEG.pack(WAL_VERSION, seq) + _mark_bytes(mark)
               + codec.encode_hard_state(hs))
    return encode_record(SEGMENT_HEADER, payload)


def _decode_mark(payload):
    received, index, term = _MARK.unpack(payload)
    if received > 1:
        raise codec.CodecError("bad mark kind")
    return Mark(index, term, bool(received))


def _decode_header(payload):
    if len(payload) < _SEG.size + _MARK.size:
        raise codec.CodecError("short segment header")
    version, seq = _SEG.unpack_from(payload)
    if version != WAL_VERSION:
        raise codec.CodecError(f"unknown wal version {version}")
    mark = _decode_mark(payload[_SEG.size:_SEG.size + _MARK.size])
    hs = codec.decode_hard_state(payload[_SEG.size + _MARK.size:])
    return seq, mark, hs


def segment_name(seq: int) -> str:
    return f"{seq:016x}.wal"


def parse_segment_name(name: str) -> int | None:
    if len(name) != 20 or not name.endswith(".wal"):
        return None
    try:
        return int(name[:16], 16)
    except ValueError:
        return None


# -- scanning one segment ----------------------------------------------------


def scan_segment(data: bytes, path: str, is_last: bool):
    """Split ``data`` into records: ([(offset, type, payload)], good_length).

    ``good_length < len(data)`` only for a torn tail of the last segment;
    any other damage raises CorruptLog naming ``path`` and the offset."""
    records = []
    off, end = 0, len(data)
    while off < end:
        problem, torn = _check_record(data, off, end)
        if problem is None:
            rtype, length = data[off], _PRE.unpack_from(data, off)[1]
            start = off + HEAD_SIZE
            records.append((off, rtype, data[start:start + length]))
            off = start + length
            continue
        if is_last and torn:
            return records, off
        raise CorruptLog(f"{path}: {problem} at byte offset {off}")
    return records, off


def _check_record(data, off, end):
    """(None, _) if a whole valid record starts at ``off``, else (problem,
    whether it looks like a torn tail)."""
    problem, torn = _record_problem(data, off, end)
    if problem is not None and not torn:
        torn = data.count(0, off) == end - off
        if torn:
            problem = "zero bytes"
    return problem, torn


def _record_problem(data, off, end):
    remaining = end - off
    if remaining < HEAD_SIZE:
        return "short record header", True
    rtype, length, data_crc, head_crc = _HEAD.unpack_from(data, off)
    if zlib.crc32(memoryview(data)[off:off + _PRE.size]) != head_crc:
        return "bad record header checksum", remaining == HEAD_SIZE
    if remaining - HEAD_SIZE < length:
        return "short record payload", True
    start = off + HEAD_SIZE
    crc = zlib.crc32(memoryview(data)[start:start + length],
                     zlib.crc32(bytes([rtype])))
    if crc != data_crc:
        return "bad record checksum", start + length == end
    if rtype not in (ENTRY, HARD_STATE, SNAPSHOT_MARK, SEGMENT_HEADER):
        return f"unknown record type {rtype}", False
    return None, False


# -- replay -------------------------------------------------------------------


@attrs.define
class _Segment:
    seq: int
    path: str
    base: int          # snapshot index in its header
    max_index: int = 0  # highest entry index written in it


@attrs.define
class Replay:
    """What the log holds: ``entries`` run contiguously from ``base + 1``
    (they may include entries the latest mark compacted away);
    ``base_term`` is None when the entries up to ``base`` are gone (their
    segments were deleted once a snapshot covered them)."""

    hard_state: HardState
    mark: Mark
    base: int
    base_term: int | None
    entries: list


class _Replayer:
    """Applies records in order. ``known`` is the latest snapshot point the
    log itself states (header or mark): no later entry may be at or below
    it (the writer drops entries a snapshot covers). Entries between
    ``known`` and the first entry replayed may be missing (deleted
    segments); that is checked at the end: the final mark must cover
    them."""

    def __init__(self, seq, mark, hs):
        self.state = Replay(hs, mark, mark.index, mark.term, [])
        self.seq = seq
        self.known = mark.index
        self.started = False

    def last_index(self):
        s = self.state
        return s.entries[-1].index if s.entries else s.base

    def term_at(self, index):
        s = self.state
        if index == s.base:
            return s.base_term
        if s.base < index <= self.last_index():
            return s.entries[index - s.base - 1].term
        return None

    def apply(self, rtype, payload):
        """Apply one record; returns an error text or None."""
        s = self.state
        if rtype == ENTRY:
            return self._entry(codec.decode_entry(payload))
        if rtype == HARD_STATE:
            s.hard_state = codec.decode_hard_state(payload)
        elif rtype == SNAPSHOT_MARK:
            return self._mark(_decode_mark(payload))
        else:
            seq, _, hs = _decode_header(payload)
            if seq != self.seq:
                return f"segment header says sequence {seq}, expected {self.seq}"
            if hs != s.hard_state:
                return "segment header disagrees with the log before it"
        return None

    def _entry(self, e):
        s = self.state
        if e.index <= self.known:
            return f"entry {e.index} at or below snapshot point {self.known}"
        if e.index > self.last_index() + 1 and self.started:
            return f"entry {e.index} leaves a gap after {self.last_index()}"
        self.started = True
        if e.index <= s.base or e.index > self.last_index() + 1:
            # the entries before it are in deleted segments
            s.base, s.base_term, s.entries = e.index - 1, None, []
        del s.entries[e.index - s.base - 1:]
        s.entries.append(e)
        return None

    def _mark(self, mark):
        s = self.state
        if mark.index < self.known:
            return f"snapshot mark {mark.index} below {self.known}"
        if mark.received or (mark.index > self.last_index()
                             and not self.started):
            # a received snapshot replaces the log; a compaction mark past
            # the entries replayed so far covers deleted segments
            s.base, s.base_term, s.entries = mark.index, mark.term, []
            self.started = mark.received
        elif mark.index > self.last_index():
            return f"compaction mark {mark.index} beyond the log"
        elif mark.index >= s.base and self.term_at(mark.index) not in (
                mark.term, None):
            return (f"compaction mark {mark.index}/{mark.term} does not "
                    f"match the log")
        self.known = mark.index
        s.mark = mark
        return None

    def check_end(self, path):
        s = self.state
        if s.mark.index < s.base:
            raise CorruptLog(
                f"{path}: entries {self.known + 1}..{s.base} are missing and "
                f"no snapshot covers them (latest mark {s.mark.index}) at "
                f"byte offset 0")


def replay(fs, directory: str, stats) -> tuple[Replay, list]:
    """Read every segment, cutting a torn tail off the last one.

    Replay starts at the newest segment whose header is a restart point
    (written by ``WriteAheadLog.rewrite``); older ones are deleted.
    Returns the Replay and the list of live _Segment records."""
    seqs = sorted(s for s in map(parse_segment_name, fs.listdir(directory))
                  if s is not None)
    if not seqs:
        raise CorruptLog(f"{directory}: no wal segments")
    paths = [f"{directory}/{segment_name(seq)}" for seq in seqs]
    start = _restart_point(fs, paths)
    for path in paths[:start]:
        log.info("{path}: deleting segment before a restart point", path=path)
        fs.remove(path)
        durable.sync_dir(fs, directory, stats)
    seqs, paths = seqs[start:], paths[start:]
    for a, b in zip(seqs, seqs[1:]):
        if b != a + 1:
            raise CorruptLog(f"{directory}/{segment_name(a + 1)}: segment "
                             f"missing (have {segment_name(a)} and "
                             f"{segment_name(b)}) at byte offset 0")
    replayer: _Replayer | None = None
    segments: list[_Segment] = []
    for seq, path in zip(seqs, paths):
        is_last = path == paths[-1]
        data = fs.read_file(path)
        records, good = scan_segment(data, path, is_last)
        if good < len(data):
            log.warn("{path}: cutting torn tail at byte offset {off} "
                     "({n} bytes dropped)", path=path, off=good,
                     n=len(data) - good)
            _truncate(fs, path, good, stats)
        if not records and is_last and segments:
            log.warn("{path}: removing segment with no complete header",
                     path=path)
            fs.remove(path)
            durable.sync_dir(fs, directory, stats)
            break
        if not records or records[0][1] != SEGMENT_HEADER:
            raise CorruptLog(f"{path}: no segment header at byte offset 0")
        hseq, mark, hs = _parse(path, 0, _decode_header, records[0][2])
        if replayer is None:
            replayer = _Replayer(hseq, mark, hs)
        replayer.seq = seq
        segment = _Segment(seq, path, mark.index)
        for off, rtype, payload in records:
            problem = _parse(path, off, replayer.apply, rtype, payload)
            if problem:
                raise CorruptLog(f"{path}: {problem} at byte offset {off}")
            if rtype == ENTRY:
                segment.max_index = max(segment.max_index,
                                        replayer.last_index())
        segments.append(segment)
    if replayer is None:  # the first segment always has a header (checked above)
        raise CorruptLog(f"{paths[0]}: no segment header at byte offset 0")
    replayer.check_end(paths[0])
    return replayer.state, segments


def _restart_point(fs, paths):
    """Position of the newest segment whose header is a restart point."""
    for k in range(len(paths) - 1, 0, -1):
        data = fs.read_file(paths[k])
        problem, _ = _record_problem(data, 0, len(data))
        if problem is None and data[0] == SEGMENT_HEADER:
            length = _PRE.unpack_from(data)[1]
            try:
                mark = _decode_header(data[HEAD_SIZE:HEAD_SIZE + length])[1]
            except (codec.CodecError, struct.error):
                continue
            if mark.received:
                return k
    return 0


def _parse(path, off, fn, *args):
    try:
        return fn(*args)
    except (codec.CodecError, struct.error) as exc:
        raise CorruptLog(f"{path}: undecodable record ({exc}) at byte "
                         f"offset {off}") from exc


def _truncate(fs, path, size, stats):
    handle = fs.open_append(path)
    try:
        handle.truncate(size)
        durable.sync_file(handle, path, stats)
    finally:
        handle.close()


# -- the writer --------------------------------------------------------------


class WriteAheadLog:
    """Appends to the last segment; the caller decides when to fsync and
    when to rotate. Not thread-safe."""

    def __init__(self, fs, directory, segments, segment_size, stats):
        self.fs = fs
        self.directory = directory
        self.segment_size = segment_size
        self.stats = stats
        self.segments = segments
        self.received_base = 0
        self._size = fs.size(segments[-1].path)
        self._handle = fs.open_append(segments[-1].path)

    @classmethod
    def create(cls, fs, directory, segment_size, stats):
        """A new log in the (existing, empty) ``directory``."""
        path = f"{directory}/{segment_name(0)}"
        _write_new_segment(fs, path, header_record(0, Mark(), HardState()),
                           stats)
        durable.sync_dir(fs, directory, stats)
        return cls(fs, directory, [_Segment(0, path, 0)], segment_size, stats)

    @classmethod
    def open(cls, fs, directory, segment_size, stats):
        state, segments = replay(fs, directory, stats)
        wal = cls(fs, directory, segments, segment_size, stats)
        wal.received_base = state.base
        return wal, state

    @property
    def base(self) -> int:
        """Entries up to here cannot be replayed (replaced or deleted)."""
        return self.received_base

    def append(self, data: bytes, records: int, max_index: int = 0) -> None:
        """Write ``data`` (whole records) without fsync. On ENOSPC the
        segment is cut back to its previous length and the OSError
        propagates; if that cut fails, StorageFailed."""
        try:
            durable.write(self._handle, data, self.stats)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._roll_back()
            raise
        self._size += len(data)
        self.stats.records_written += records
        seg = self.segments[-1]
        seg.max_index = max(seg.max_index, max_index)

    def _roll_back(self):
        try:
            self._handle.truncate(self._size)
        except OSError as exc:
            raise StorageFailed(f"{self.segments[-1].path}: cannot roll back "
                                f"a partial write: {exc}") from exc

    def sync(self) -> None:
        durable.sync_file(self._handle, self.segments[-1].path, self.stats)

    def needs_rotation(self) -> bool:
        return self._size >= self.segment_size

    def rotate(self, mark: Mark, hs: HardState) -> None:
        """Start the next segment with a durable header. The current segment
        is fsynced first: the new header repeats the hard state, so a record
        left unsynced before it (a commit-only change) must not be lost
        while the header survives. On ENOSPC the new file is removed and the
        OSError propagates."""
        self.sync()
        seq = self.segments[-1].seq + 1
        path = f"{self.directory}/{segment_name(seq)}"
        header = header_record(seq, mark, hs)
        _write_new_segment(self.fs, path, header, self.stats)
        durable.sync_dir(self.fs, self.directory, self.stats)
        self._handle.close()
        self._handle = self.fs.open_append(path)
        self._size = len(header)
        self.segments.append(_Segment(seq, path, mark.index))

    def release(self, floor: int) -> int:
        """Delete the oldest segments (never the current one) whose entries
        are all <= ``floor``, which must not exceed the durable snapshot
        mark. Each later segment header repeats the hard state and mark, so
        nothing else is lost. Removals go oldest first, each made durable
        before the next, so a crash leaves a suffix that replays the same.
        Returns how many were deleted."""
        deleted = 0
        while len(self.segments) > 1:
            first = self.segments[0]
            if first.max_index > floor:
                break
            self.fs.remove(first.path)
            durable.sync_dir(self.fs, self.directory, self.stats)
            self.segments.pop(0)
            deleted += 1
        return deleted

    def rewrite(self, mark: Mark, hs: HardState, entries) -> None:
        """Replace the whole log by one new segment holding ``mark``, ``hs``
        and ``entries`` after ``mark``. Its header is a restart point:
        replay starts there and ignores older segments. Written under a tmp
        name, fsynced and renamed, so a crash leaves the old log or the
        complete new segment; then older segments are deleted."""
        seq = self.segments[-1].seq + 1
        path = f"{self.directory}/{segment_name(seq)}"
        mark = attrs.evolve(mark, received=True)
        data = header_record(seq, mark, hs) + b"".join(
            entry_record(e) for e in entries)
        _write_new_segment(self.fs, path + ".tmp", data, self.stats)
        self.stats.records_written += len(entries)
        self.fs.rename(path + ".tmp", path)
        durable.sync_dir(self.fs, self.directory, self.stats)
        self._handle.close()
        self._handle = self.fs.open_append(path)
        self._size = len(data)
        top = entries[-1].index if entries else 0
        self.segments.append(_Segment(seq, path, mark.index, top))
        self.received_base = 0
        while len(self.segments) > 1:
            self.fs.remove(self.segments.pop(0).path)
            durable.sync_dir(self.fs, self.directory, self.stats)

    def close(self) -> None:
        self._handle.close()


def _write_new_segment(fs, path, header, stats):
    handle = fs.open_append(path)
    try:
        durable.write(handle, header, stats)
        stats.records_written += 1
        durable.sync_file(handle, path, stats)
    except OSError:
        handle.close()
        durable.remove_quietly(fs, path)
        raise
    handle.close()
