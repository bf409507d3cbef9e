"""Compact, deterministic binary codec for Raft peer messages.

Layout: one byte naming the message type (its position in MESSAGE_TYPES),
then each attrs field in declaration order:

- int: unsigned 64-bit big-endian; bool: one byte 0/1
- str: u16 length + UTF-8; bytes: u32 length + raw bytes
- entries: u32 count, then per entry term u64, index u64, kind u8, data
- snapshot: index u64, term u64, voters, learners (u16 count + str each,
  sorted), data

``decode(encode(m)) == m`` for every message; malformed input raises
CodecError and never anything else. Decoding refuses an integer above
MAX_DECODED (2^63 - 1, so it is also a valid signed 64-bit value), a node
set with a duplicate or empty id: every decoded message re-encodes to the
same bytes, and a term adopted from a peer leaves room to count up.
"""

from __future__ import annotations

import struct

import attrs

from doozertw.consensus import messages as m

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_ENTRY_HEAD = struct.Struct(">QQB")
MAX_DECODED = 2 ** 63 - 1


class CodecError(ValueError):
    """The bytes are not a valid encoded message."""


class _Writer:
    def __init__(self):
        self.parts = []

    def u64(self, v):
        self.parts.append(_U64.pack(v))

    def boolean(self, v):
        self.parts.append(b"\x01" if v else b"\x00")

    def text(self, v):
        raw = v.encode("utf-8")
        self.parts.append(_U16.pack(len(raw)))
        self.parts.append(raw)

    def blob(self, v):
        self.parts.append(_U32.pack(len(v)))
        self.parts.append(bytes(v))

    def entries(self, entries):
        self.parts.append(_U32.pack(len(entries)))
        for e in entries:
            self.parts.append(_ENTRY_HEAD.pack(e.term, e.index, int(e.kind)))
            self.blob(e.data)

    def node_set(self, ids):
        ordered = sorted(ids)
        self.parts.append(_U16.pack(len(ordered)))
        for nid in ordered:
            self.text(nid)

    def snapshot(self, snap):
        self.u64(snap.meta.index)
        self.u64(snap.meta.term)
        self.node_set(snap.meta.conf.voters)
        self.node_set(snap.meta.conf.learners)
        self.blob(snap.data)


class _Reader:
    def __init__(self, data):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise CodecError("truncated message")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u64(self):
        return _in_range(_U64.unpack(self.take(8))[0])

    def boolean(self):
        b = self.take(1)[0]
        if b > 1:
            raise CodecError("bad boolean")
        return b == 1

    def text(self):
        n = _U16.unpack(self.take(2))[0]
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError("bad utf-8") from exc

    def blob(self):
        n = _U32.unpack(self.take(4))[0]
        return bytes(self.take(n))

    def entries(self):
        count = _U32.unpack(self.take(4))[0]
        return tuple(_read_entry(self) for _ in range(count))

    def node_set(self):
        count = _U16.unpack(self.take(2))[0]
        ids = frozenset(self.text() for _ in range(count))
        if len(ids) != count or "" in ids:
            raise CodecError("duplicate or empty node id")
        return ids

    def snapshot(self):
        index = self.u64()
        term = self.u64()
        conf = m.ConfState(self.node_set(), self.node_set())
        return m.Snapshot(m.SnapshotMeta(index, term, conf), self.blob())


_KIND_BY_ANNOTATION = {
    "str": "text",
    "int": "u64",
    "bool": "boolean",
    "bytes": "blob",
    "tuple": "entries",
    "Snapshot": "snapshot",
}


def _layout(cls):
    return tuple(
        (f.name, _KIND_BY_ANNOTATION[f.type]) for f in attrs.fields(cls)
    )


_LAYOUTS = {cls: (tag, _layout(cls)) for tag, cls in enumerate(m.MESSAGE_TYPES)}


def encode(message) -> bytes:
    """The bytes of ``message``; raises TypeError for a non-message."""
    try:
        tag, layout = _LAYOUTS[type(message)]
    except KeyError:
        raise TypeError(f"not a raft message: {type(message).__name__}")
    w = _Writer()
    w.parts.append(bytes([tag]))
    try:
        for name, kind in layout:
            getattr(w, kind)(getattr(message, name))
    except struct.error as exc:
        raise CodecError(f"value out of range: {exc}") from exc
    return b"".join(w.parts)


def decode(data: bytes):
    """The message encoded in ``data``; raises CodecError if malformed."""
    if not data:
        raise CodecError("empty message")
    tag = data[0]
    if tag >= len(m.MESSAGE_TYPES):
        raise CodecError(f"unknown message type {tag}")
    cls = m.MESSAGE_TYPES[tag]
    r = _Reader(data)
    r.pos = 1
    values = {name: getattr(r, kind)() for name, kind in _LAYOUTS[cls][1]}
    if r.pos != len(data):
        raise CodecError("trailing bytes")
    return cls(**values)


# -- single records, for the on-disk log (doozertw/persist) -----------------


def _decode_whole(data, read):
    r = _Reader(data)
    try:
        value = read(r)
    except struct.error as exc:
        raise CodecError(f"malformed record: {exc}") from exc
    if r.pos != len(data):
        raise CodecError("trailing bytes")
    return value


def _in_range(value):
    if value > MAX_DECODED:
        raise CodecError(f"value out of range: {value}")
    return value


def _read_entry(r):
    term, index, kind = _ENTRY_HEAD.unpack(r.take(_ENTRY_HEAD.size))
    try:
        kind = m.EntryKind(kind)
    except ValueError as exc:
        raise CodecError("bad entry kind") from exc
    return m.Entry(_in_range(term), _in_range(index), kind, r.blob())


def encode_entry(entry: m.Entry) -> bytes:
    """One Entry: term u64, index u64, kind u8, data (u32 length + bytes)."""
    w = _Writer()
    w.parts.append(_ENTRY_HEAD.pack(entry.term, entry.index, int(entry.kind)))
    w.blob(entry.data)
    return b"".join(w.parts)


def decode_entry(data: bytes) -> m.Entry:
    """Inverse of encode_entry; raises CodecError if malformed."""
    return _decode_whole(data, _read_entry)


def encode_snapshot(snapshot: m.Snapshot) -> bytes:
    """A Snapshot in the same layout as inside InstallSnapshot."""
    w = _Writer()
    w.snapshot(snapshot)
    return b"".join(w.parts)


def decode_snapshot(data: bytes) -> m.Snapshot:
    """Inverse of encode_snapshot; raises CodecError if malformed."""
    return _decode_whole(data, _Reader.snapshot)


def encode_hard_state(hs: m.HardState) -> bytes:
    """A HardState: term u64, vote (u16 length + UTF-8), commit u64."""
    w = _Writer()
    w.u64(hs.term)
    w.text(hs.vote)
    w.u64(hs.commit)
    return b"".join(w.parts)


def decode_hard_state(data: bytes) -> m.HardState:
    """Inverse of encode_hard_state; raises CodecError if malformed."""
    return _decode_whole(
        data, lambda r: m.HardState(r.u64(), r.text(), r.u64()))
