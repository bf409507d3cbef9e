"""Compact, deterministic binary codec for Raft peer messages.

Layout: one byte naming the message type (its position in MESSAGE_TYPES),
then each attrs field in declaration order, in doozertw.wire.binary's
primitives:

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
from collections.abc import Callable, Iterable
from typing import TypeVar

import attrs

from doozertw.consensus import messages as m

from doozertw.wire.binary import U16, U32, Reader, Writer

_ENTRY_HEAD = struct.Struct(">QQB")
MAX_DECODED = 2 ** 63 - 1
_T = TypeVar("_T")


class CodecError(ValueError):
    """The bytes are not a valid encoded message."""


class _Writer(Writer):
    """doozertw.wire's primitives plus Raft's entries, node sets, snapshots."""

    __slots__ = ()

    def entries(self, entries: tuple[m.Entry, ...]) -> None:
        self.parts.append(U32.pack(len(entries)))
        for e in entries:
            self.parts.append(_ENTRY_HEAD.pack(e.term, e.index, int(e.kind)))
            self.blob(e.data)

    def node_set(self, ids: Iterable[str]) -> None:
        ordered = sorted(ids)
        self.parts.append(U16.pack(len(ordered)))
        for nid in ordered:
            self.text(nid)

    def snapshot(self, snap: m.Snapshot) -> None:
        self.u64(snap.meta.index)
        self.u64(snap.meta.term)
        self.node_set(snap.meta.conf.voters)
        self.node_set(snap.meta.conf.learners)
        self.blob(snap.data)


class _Reader(Reader):
    """doozertw.wire's primitives (integers capped at MAX_DECODED) plus
    Raft's composite fields; raises CodecError."""

    error = CodecError
    what = "message"

    def u64(self) -> int:
        return _in_range(super().u64())

    def entries(self) -> tuple[m.Entry, ...]:
        count = self.u32()
        return tuple(_read_entry(self) for _ in range(count))

    def node_set(self) -> frozenset[str]:
        count = self.u16()
        ids = frozenset(self.text() for _ in range(count))
        if len(ids) != count or "" in ids:
            raise CodecError("duplicate or empty node id")
        return ids

    def snapshot(self) -> m.Snapshot:
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


def _layout(cls: type[m.Message]) -> tuple[tuple[str, str], ...]:
    return tuple(
        # the annotations are plain names ("tuple", not "tuple[Entry, ...]")
        (f.name, _KIND_BY_ANNOTATION[str(f.type)]) for f in attrs.fields(cls)
    )


_LAYOUTS = {cls: (tag, _layout(cls)) for tag, cls in enumerate(m.MESSAGE_TYPES)}


def encode(message: m.Message) -> bytes:
    """The bytes of ``message``; raises TypeError for a non-message."""
    try:
        tag, layout = _LAYOUTS[type(message)]
    except KeyError:
        raise TypeError(f"not a raft message: {type(message).__name__}") from None
    w = _Writer()
    w.u8(tag)
    try:
        for name, kind in layout:
            getattr(w, kind)(getattr(message, name))
    except struct.error as exc:
        raise CodecError(f"value out of range: {exc}") from exc
    return w.getvalue()


def decode(data: bytes) -> m.Message:
    """The message encoded in ``data``; raises CodecError if malformed."""
    if not data:
        raise CodecError("empty message")
    tag = data[0]
    if tag >= len(m.MESSAGE_TYPES):
        raise CodecError(f"unknown message type {tag}")
    cls = m.MESSAGE_TYPES[tag]
    r = _Reader(data, 1)
    values = {name: getattr(r, kind)() for name, kind in _LAYOUTS[cls][1]}
    r.expect_end()
    return cls(**values)


# -- single records, for the on-disk log (doozertw/persist) -----------------


def _decode_whole(data: bytes, read: Callable[[_Reader], _T]) -> _T:
    r = _Reader(data)
    value = read(r)  # Reader.take checks every length: no struct.error
    r.expect_end()
    return value


def _in_range(value: int) -> int:
    if value > MAX_DECODED:
        raise CodecError(f"value out of range: {value}")
    return value


def _read_entry(r: _Reader) -> m.Entry:
    term, index, code = _ENTRY_HEAD.unpack(r.take(_ENTRY_HEAD.size))
    try:
        kind = m.EntryKind(code)
    except ValueError as exc:
        raise CodecError("bad entry kind") from exc
    return m.Entry(_in_range(term), _in_range(index), kind, r.blob())


def encode_entry(entry: m.Entry) -> bytes:
    """One Entry: term u64, index u64, kind u8, data (u32 length + bytes)."""
    w = _Writer()
    w.parts.append(_ENTRY_HEAD.pack(entry.term, entry.index, int(entry.kind)))
    w.blob(entry.data)
    return w.getvalue()


def decode_entry(data: bytes) -> m.Entry:
    """Inverse of encode_entry; raises CodecError if malformed."""
    return _decode_whole(data, _read_entry)


def encode_snapshot(snapshot: m.Snapshot) -> bytes:
    """A Snapshot in the same layout as inside InstallSnapshot."""
    w = _Writer()
    w.snapshot(snapshot)
    return w.getvalue()


def decode_snapshot(data: bytes) -> m.Snapshot:
    """Inverse of encode_snapshot; raises CodecError if malformed."""
    return _decode_whole(data, _Reader.snapshot)


def encode_hard_state(hs: m.HardState) -> bytes:
    """A HardState: term u64, vote (u16 length + UTF-8), commit u64."""
    w = _Writer()
    w.u64(hs.term)
    w.text(hs.vote)
    w.u64(hs.commit)
    return w.getvalue()


def decode_hard_state(data: bytes) -> m.HardState:
    """Inverse of encode_hard_state; raises CodecError if malformed."""
    return _decode_whole(
        data, lambda r: m.HardState(r.u64(), r.text(), r.u64()))
