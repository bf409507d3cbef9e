"""The data directory's identity file ``<dir>/meta``.

Layout: magic ``DZTWMETA``, format_version u64, cluster, node, member_id
(each u16 length + UTF-8), then CRC32 (zlib) of everything before it, u32
big-endian. Written to ``meta.tmp``, fsynced, renamed, directory fsynced:
its presence marks a completely created data directory
(see ``durable.write_durably``).
"""

from __future__ import annotations

import struct
import zlib

import attrs

from doozertw.consensus.codec import CodecError, _Reader, _Writer
from doozertw.persist.errors import DataDirError

FORMAT_VERSION = 1
MAGIC = b"DZTWMETA"
_CRC = struct.Struct(">I")


@attrs.frozen
class DataDirMeta:
    """Who owns a data directory, and in which on-disk format."""

    format_version: int
    cluster: str
    node: str
    member_id: str


def encode_meta(meta: DataDirMeta) -> bytes:
    w = _Writer()
    w.parts.append(MAGIC)
    w.u64(meta.format_version)
    w.text(meta.cluster)
    w.text(meta.node)
    w.text(meta.member_id)
    body = b"".join(w.parts)
    return body + _CRC.pack(zlib.crc32(body))


def decode_meta(data: bytes, path: str) -> DataDirMeta:
    """The meta in ``data``; DataDirError naming ``path`` if damaged."""
    if len(data) < len(MAGIC) + _CRC.size or not data.startswith(MAGIC):
        raise DataDirError(f"{path}: not a doozertw meta file")
    body, crc = data[:-_CRC.size], _CRC.unpack(data[-_CRC.size:])[0]
    if zlib.crc32(body) != crc:
        raise DataDirError(f"{path}: meta file checksum mismatch")
    r = _Reader(body)
    r.pos = len(MAGIC)
    try:
        meta = DataDirMeta(r.u64(), r.text(), r.text(), r.text())
    except (CodecError, struct.error) as exc:
        raise DataDirError(f"{path}: malformed meta file: {exc}") from exc
    if r.pos != len(body):
        raise DataDirError(f"{path}: trailing bytes in meta file")
    return meta
