"""The store's snapshot encoding (pure): the tree at the history floor plus the log.

A snapshot carries the store's history window, so a store restored from it
answers reads at any revision in [floor, rev] and watches from any revision
above floor exactly as the original did, and its next change takes rev + 1.

DZS2 (written), all integers big-endian::

    head  = b"DZS2", i64 rev, i64 floor, u32 file count, u32 event count
    file  = u16 path length, i64 rev, u32 value length, path, value
    event = u8 kind (1 SET, 0 DEL), i64 rev, u16 path length,
            u32 value length, path, value

The files are the tree as it was at revision ``floor`` (strictly sorted by
path, each rev in 1..floor, no file inside another). The events are the
history log in order: exactly revisions floor+1 .. rev, so the event count
is ``rev - floor``; a DEL carries an empty value. Replaying the events on
the files gives the current tree, and the store rebuilds its per-path
versions from that same replay, so nothing is stored twice.

DZS3 (written when the store has leases or has ever granted one): DZS2's
head with magic b"DZS3", the same files and events, then::

    leases = u32 count, then per lease u64 id, u64 ttl (ascending ids)
    next   = u64 the id the next grant without a chosen id takes
    owned  = u32 count, then per file u64 lease, u16 path length, path
             (strictly sorted by path; each a current file of a listed lease)

DZS1 (read only, the oldest format)::

    head = b"DZS1", i64 rev, u32 file count; then files as above, at ``rev``

It carries no history: it decodes as floor = rev and no events.

``decode`` checks the structure (lengths, counts against the bytes left,
revision ranges, path syntax and order, trailing bytes) and raises
DoozerError(OTHER) for anything else, never IndexError or struct.error. The
tree rules that need the store (an event must apply cleanly) are checked by
``Store.restore`` while replaying.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import paths
from doozertw.store.mutation import DEL, SET, Event

MAGIC_V1 = b"DZS1"
MAGIC_V2 = b"DZS2"
MAGIC_V3 = b"DZS3"
_LEASE = struct.Struct(">QQ")
_OWNED = struct.Struct(">QH")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEAD_V1 = struct.Struct(">4sqI")
_HEAD_V2 = struct.Struct(">4sqqII")
_FILE = struct.Struct(">HqI")
_EVENT = struct.Struct(">BqHI")
_KIND_CODES = {SET: 1, DEL: 0}
_CODE_KINDS = {code: kind for kind, code in _KIND_CODES.items()}


@attrs.frozen
class SnapshotImage:
    """A decoded snapshot: the tree at ``floor`` and the events floor+1 .. rev.

    ``files`` holds (path, value, rev) sorted by path; ``events`` the log.
    """

    rev: int
    floor: int
    files: tuple[tuple[str, bytes, int], ...]
    events: tuple[Event, ...]
    leases: tuple[tuple[int, int], ...] = ()
    """(id, ttl) of every lease, ascending ids."""
    attached: tuple[tuple[str, int], ...] = ()
    """(path, lease) of every file that belongs to a lease, sorted by path."""
    next_lease: int = 1


def encode(image: SnapshotImage) -> bytes:
    """The DZS2 bytes of ``image``, or DZS3 if it has lease state (see the
    module docstring)."""
    leased = bool(image.leases) or image.next_lease != 1
    parts = [_HEAD_V2.pack(MAGIC_V3 if leased else MAGIC_V2, image.rev, image.floor,
                           len(image.files), len(image.events))]
    for path, value, rev in image.files:
        raw = path.encode("ascii")
        parts += (_FILE.pack(len(raw), rev, len(value)), raw, value)
    for event in image.events:
        raw = event.path.encode("ascii")
        parts += (_EVENT.pack(_KIND_CODES[event.kind], event.rev, len(raw), len(event.value)),
                  raw, event.value)
    if leased:
        parts.append(_U32.pack(len(image.leases)))
        parts += (_LEASE.pack(lease, ttl) for lease, ttl in image.leases)
        parts += (_U64.pack(image.next_lease), _U32.pack(len(image.attached)))
        for path, lease in image.attached:
            raw = path.encode("ascii")
            parts += (_OWNED.pack(lease, len(raw)), raw)
    return b"".join(parts)


def decode(data: bytes) -> SnapshotImage:
    """Parse DZS2 or DZS1 bytes; DoozerError(OTHER) if they are not a valid snapshot."""
    try:
        reader = _Reader(data)
        magic = bytes(reader.peek(len(MAGIC_V2)))
        if magic == MAGIC_V2:
            image = _decode_v2(reader)
        elif magic == MAGIC_V3:
            image = _read_leases(reader, _decode_v2(reader))
        elif magic == MAGIC_V1:
            image = _decode_v1(reader)
        else:
            raise ValueError("not a snapshot")
        if reader.left():
            raise ValueError("trailing bytes")
        return image
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise DoozerError(ErrCode.OTHER, f"bad snapshot: {e}") from None


class _Reader:
    """Sequential reads from a buffer; ValueError when the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data).cast("B")
        self._pos = 0

    def left(self) -> int:
        return len(self._data) - self._pos

    def peek(self, size: int) -> memoryview:
        return self._data[self._pos:self._pos + size]

    def take(self, size: int) -> memoryview:
        if size > self.left():
            raise ValueError("truncated")
        start, self._pos = self._pos, self._pos + size
        return self._data[start:self._pos]

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size))

    def ensure(self, count: int, record: struct.Struct) -> None:
        """Refuse a count that the remaining bytes cannot hold (bounds the loops)."""
        if count * record.size > self.left():
            raise ValueError("count larger than the data")

    def path(self, size: int) -> str:
        path = bytes(self.take(size)).decode("ascii")
        if path == paths.ROOT or not paths.is_valid_path(path):
            raise ValueError("bad path")
        return path


def _decode_v1(reader: _Reader) -> SnapshotImage:
    _, rev, count = reader.unpack(_HEAD_V1)
    if rev < 0:
        raise ValueError("negative revision")
    files = _read_files(reader, count, rev)
    return SnapshotImage(rev=rev, floor=rev, files=files, events=())


def _decode_v2(reader: _Reader) -> SnapshotImage:
    _, rev, floor, file_count, event_count = reader.unpack(_HEAD_V2)
    if not 0 <= floor <= rev or event_count != rev - floor:
        raise ValueError("bad revision range")
    files = _read_files(reader, file_count, floor)
    reader.ensure(event_count, _EVENT)
    events = tuple(_read_event(reader, floor + 1 + i) for i in range(event_count))
    return SnapshotImage(rev=rev, floor=floor, files=files, events=events)


def _read_leases(reader: _Reader, image: SnapshotImage) -> SnapshotImage:
    """The lease section after a DZS3 image's events (structure only; the
    store checks that owned files exist)."""
    (count,) = reader.unpack(_U32)
    reader.ensure(count, _LEASE)
    leases = tuple(reader.unpack(_LEASE) for _ in range(count))
    if any(lease == 0 for lease, _ in leases) or list(leases) != sorted(set(leases)):
        raise ValueError("bad lease list")
    (next_lease,) = reader.unpack(_U64)
    (count,) = reader.unpack(_U32)
    reader.ensure(count, _OWNED)
    attached, previous = [], ""
    for _ in range(count):
        lease, path_len = reader.unpack(_OWNED)
        path = reader.path(path_len)
        if path <= previous:
            raise ValueError("owned files out of order")
        attached.append((path, lease))
        previous = path
    return attrs.evolve(image, leases=leases, attached=tuple(attached),
                        next_lease=next_lease)


def _read_files(reader: _Reader, count: int,
                at_rev: int) -> tuple[tuple[str, bytes, int], ...]:
    """``count`` files of a tree at ``at_rev``: strictly sorted, revs in 1..at_rev."""
    reader.ensure(count, _FILE)
    files, previous = [], ""
    for _ in range(count):
        path_len, rev, value_len = reader.unpack(_FILE)
        path = reader.path(path_len)
        value = bytes(reader.take(value_len))
        if not 0 < rev <= at_rev:
            raise ValueError(f"file {path} has revision {rev}")
        if path <= previous:
            raise ValueError("files out of order")
        files.append((path, value, rev))
        previous = path
    return tuple(files)


def _read_event(reader: _Reader, expected_rev: int) -> Event:
    code, rev, path_len, value_len = reader.unpack(_EVENT)
    kind = _CODE_KINDS.get(code)
    if kind is None or rev != expected_rev:
        raise ValueError(f"bad event at revision {expected_rev}")
    path = reader.path(path_len)
    value = bytes(reader.take(value_len))
    if kind == DEL and value:
        raise ValueError(f"delete with a value at revision {rev}")
    return Event(rev, path, value, kind)


__all__ = ["MAGIC_V1", "MAGIC_V2", "MAGIC_V3", "SnapshotImage", "decode", "encode"]
