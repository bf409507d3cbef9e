"""Backup files: one store snapshot with where it came from, checksummed.

A backup is what ``GET /v1/snapshot`` streams and ``doozer snapshot
save`` writes; ``doozer snapshot restore`` turns one into new data
directories (doozertw.cluster.recovery). Layout, integers big-endian::

    magic        8 bytes  b"DZTWBKUP"
    version      u32      BACKUP_VERSION (1)
    cluster      u16 length + UTF-8   cluster name of the node it was taken on
    node         u16 length + UTF-8   that node's name
    revision     u64      the store revision it holds
    raft index   u64      last Raft entry applied into it (0: unknown)
    raft term    u64      that entry's term (0: unknown)
    taken at     u64      wall-clock time taken, milliseconds since the epoch
    snapshot     u64 length + bytes   the store snapshot (DZS2, store/snapshot.py)
    crc          u32      zlib CRC32 of every byte before it

``decode_backup`` is strict: a wrong magic or version, a short file, a
length that does not match the bytes, trailing bytes, a checksum mismatch,
a store snapshot that does not decode or whose revision differs from the
header's: each raises ``BackupError`` saying what is wrong. Nothing else
escapes it.
"""

from __future__ import annotations

import struct
import zlib

import attrs

from doozertw.errors import DoozerError
from doozertw.store import snapshot as store_snapshot

MAGIC = b"DZTWBKUP"
BACKUP_VERSION = 1
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_POSITION = struct.Struct(">QQQQ")  # revision, raft index, raft term, taken at
_MIN_SIZE = len(MAGIC) + _U32.size + 2 * _U16.size + _POSITION.size + _U64.size + _U32.size
MAX_NAME = 1024


class BackupError(ValueError):
    """The bytes are not a valid backup; the message says why."""


@attrs.frozen
class Backup:
    """A decoded backup (see the module docstring)."""

    cluster: str
    node: str
    revision: int
    store_snapshot: bytes
    raft_index: int = 0
    raft_term: int = 0
    taken_at_ms: int = 0


def encode_backup(backup: Backup) -> bytes:
    """The backup file's bytes."""
    parts = [MAGIC, _U32.pack(BACKUP_VERSION)]
    for text in (backup.cluster, backup.node):
        raw = text.encode("utf-8")
        if len(raw) > MAX_NAME:
            raise ValueError(f"name too long for a backup: {text[:40]!r}...")
        parts += (_U16.pack(len(raw)), raw)
    parts.append(_POSITION.pack(backup.revision, backup.raft_index, backup.raft_term,
                                backup.taken_at_ms))
    parts += (_U64.pack(len(backup.store_snapshot)), backup.store_snapshot)
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


def decode_backup(data: bytes) -> Backup:
    """Parse and check a backup file's bytes; BackupError if invalid."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise BackupError("not a doozertw backup (bad magic)")
    if len(data) < _MIN_SIZE:
        raise BackupError(f"truncated backup: {len(data)} bytes, shorter than any backup")
    (version,) = _U32.unpack_from(data, len(MAGIC))
    if version != BACKUP_VERSION:
        raise BackupError(f"unsupported backup version {version} (this build reads "
                          f"{BACKUP_VERSION})")
    reader = _Reader(data, len(MAGIC) + _U32.size)
    cluster = reader.text("cluster name")
    node = reader.text("node name")
    revision, raft_index, raft_term, taken_at = reader.take(_POSITION)
    (size,) = reader.take(_U64)
    expected = reader.pos + size + _U32.size
    if expected > len(data):
        raise BackupError(f"truncated backup: {len(data)} bytes, the header says "
                          f"{expected}")
    if expected < len(data):
        raise BackupError(f"{len(data) - expected} trailing bytes after the backup")
    body = data[:-_U32.size]
    (crc,) = _U32.unpack_from(data, len(body))
    if zlib.crc32(body) != crc:
        raise BackupError("backup checksum mismatch: the file is corrupt")
    snap = data[reader.pos:reader.pos + size]
    try:
        image = store_snapshot.decode(snap)
    except DoozerError as exc:
        raise BackupError(f"the store snapshot in the backup is invalid: "
                          f"{exc.detail}") from None
    if image.rev != revision:
        raise BackupError(f"the store snapshot is at revision {image.rev}, the header "
                          f"says {revision}")
    return Backup(cluster=cluster, node=node, revision=revision, store_snapshot=snap,
                  raft_index=raft_index, raft_term=raft_term, taken_at_ms=taken_at)


class _Reader:
    """Bounded sequential reads; BackupError('truncated') past the end."""

    def __init__(self, data, pos):
        self.data = data
        self.pos = pos

    def take(self, layout):
        if self.pos + layout.size > len(self.data):
            raise BackupError("truncated backup header")
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def text(self, what):
        (size,) = self.take(_U16)
        if size > MAX_NAME or self.pos + size > len(self.data):
            raise BackupError(f"truncated or malformed backup header ({what})")
        raw = self.data[self.pos:self.pos + size]
        self.pos += size
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BackupError(f"malformed backup header ({what} is not UTF-8)") from None


__all__ = ["BACKUP_VERSION", "Backup", "BackupError", "MAGIC", "decode_backup",
           "encode_backup"]
