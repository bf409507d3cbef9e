"""Snapshot files: ``<dir>/snap-<index:016x>-<term:016x>.snap``.

Layout: magic ``DZTWSNAP`` (8 bytes), version u32, CRC32 (zlib) of the
body u32, body length u64, body = the codec encoding of the Snapshot.
Written to ``<name>.tmp``, fsynced, renamed, directory fsynced.

Which snapshot is current is decided by the WAL's latest snapshot mark,
not by the newest file name: a file newer than the mark is left over from
a save that crashed before its WAL records were durable (for a received
snapshot its index may sit past entries of a conflicting log), so it must
not be loaded. At most two files are kept: the current one and the one
before it, the fall-back if the current one turns out damaged.
"""

from __future__ import annotations

import struct
import zlib

from twisted.logger import Logger

from doozertw.consensus import codec
from doozertw.consensus.messages import Snapshot
from doozertw.persist import durable

log = Logger()

MAGIC = b"DZTWSNAP"
SNAP_VERSION = 1
_HEAD = struct.Struct(">8sIIQ")


def snap_name(index: int, term: int) -> str:
    return f"snap-{index:016x}-{term:016x}.snap"


def parse_snap_name(name: str) -> tuple[int, int] | None:
    """(index, term) of a snapshot file name, None for any other name."""
    if len(name) != 43 or not name.startswith("snap-") \
            or not name.endswith(".snap") or name[21] != "-":
        return None
    try:
        return int(name[5:21], 16), int(name[22:38], 16)
    except ValueError:
        return None


def encode_snapfile(snapshot: Snapshot) -> bytes:
    body = codec.encode_snapshot(snapshot)
    return _HEAD.pack(MAGIC, SNAP_VERSION, zlib.crc32(body), len(body)) + body


def decode_snapfile(data: bytes, path: str) -> Snapshot:
    """The snapshot in ``data``; ValueError saying what is wrong."""
    if len(data) < _HEAD.size:
        raise ValueError(f"{path}: shorter than a snapshot header")
    magic, version, crc, length = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"{path}: bad magic")
    if version != SNAP_VERSION:
        raise ValueError(f"{path}: unknown snapshot version {version}")
    body = data[_HEAD.size:]
    if len(body) != length:
        raise ValueError(f"{path}: body is {len(body)} bytes, header says "
                         f"{length}")
    if zlib.crc32(body) != crc:
        raise ValueError(f"{path}: checksum mismatch")
    try:
        return codec.decode_snapshot(body)
    except codec.CodecError as exc:
        raise ValueError(f"{path}: undecodable snapshot: {exc}") from exc


def write_snapshot(fs, directory: str, snapshot: Snapshot, stats) -> str:
    """Durably write ``snapshot``; returns its file name. OSError from a
    write propagates (the tmp file is removed)."""
    name = snap_name(snapshot.index, snapshot.term)
    durable.write_durably(fs, directory, name, encode_snapfile(snapshot),
                          stats)
    return name


def list_snapshots(fs, directory: str) -> list[tuple[int, int]]:
    """(index, term) of every snapshot file, oldest first."""
    return sorted(p for p in map(parse_snap_name, fs.listdir(directory))
                  if p is not None)


def read_snapshot(fs, directory: str, index: int, term: int) -> Snapshot | None:
    """The snapshot (index, term) if its file exists and is intact (else
    None, logged)."""
    path = f"{directory}/{snap_name(index, term)}"
    if not fs.exists(path):
        log.warn("{path}: snapshot file missing", path=path)
        return None
    try:
        snap = decode_snapfile(fs.read_file(path), path)
    except ValueError as exc:
        log.warn("damaged snapshot file: {problem}", problem=str(exc))
        return None
    if (snap.index, snap.term) != (index, term):
        log.warn("{path}: holds snapshot {i}/{t}", path=path, i=snap.index,
                 t=snap.term)
        return None
    return snap


def retain(fs, directory: str, index: int, term: int, stats):
    """Keep snapshot (index, term) and the newest one before it; delete
    every other snapshot file and stale tmp file. Returns the (index, term)
    of the older kept one, or None."""
    keep = (index, term)
    older = [p for p in list_snapshots(fs, directory) if p[0] < index]
    previous = older[-1] if older else None
    doomed = [name for name in fs.listdir(directory)
              if name.endswith(".tmp")
              or (parse_snap_name(name) not in (None, keep, previous))]
    for name in doomed:
        fs.remove(f"{directory}/{name}")
    if doomed:
        durable.sync_dir(fs, directory, stats)
    return previous
