"""Mutations and events as data (pure).

A mutation is what a client asked to change; the store applies it and
answers with an Outcome. Mutations round-trip through ``encode``/``decode``
so the consensus log can carry them as opaque bytes and every replica
applies exactly the same change.

Leases: ``GrantLease`` creates one (id and TTL in whole seconds),
``SetFile.lease`` attaches a file to it, ``RevokeLease`` deletes the lease
and all its files in one apply. ``Txn`` is compares, then the ``success``
or the ``failure`` operations, applied as one step.
"""

import struct
from typing import TypeAlias

import attrs

from doozertw.errors import DoozerError, ErrCode
from doozertw.wire.binary import DecodeError, Reader, Writer

CLOBBER = -1
MISSING = 0
DIR = -2

SET = "set"
DEL = "del"


@attrs.frozen
class SetFile:
    """Write ``value`` at ``path`` if ``rev`` >= the file's revision (-1: always).

    ``lease`` (0: none) attaches the file to that lease, which must exist;
    a write without a lease detaches the file from any lease it had.
    """

    path: str
    rev: int
    value: bytes
    lease: int = 0


@attrs.frozen
class DeleteFile:
    """Delete ``path`` if ``rev`` >= the file's revision (-1: always)."""

    path: str
    rev: int


@attrs.frozen
class Nop:
    """Changes nothing; exists so a round trip through consensus can be proven."""


@attrs.frozen
class GrantLease:
    """Create lease ``lease`` (0: the store picks the next free id) with a
    time-to-live of ``ttl`` seconds. Expiry is decided outside the store
    (by the leader's clock), which then proposes a RevokeLease."""

    lease: int
    ttl: int


@attrs.frozen
class RevokeLease:
    """Delete lease ``lease`` and every file attached to it, in one step:
    the files are deleted in path order, each taking the next revision.
    ``expired`` says whether the lease timed out (vs. was revoked)."""

    lease: int
    expired: bool = False


@attrs.frozen
class Compare:
    """A transaction's condition on ``path``: its revision equals ``rev``
    (0: the file does not exist), or its value equals ``value`` (a missing
    file never does). Exactly one of the two is given."""

    path: str
    rev: int | None = None
    value: bytes | None = None

    def __attrs_post_init__(self) -> None:
        if (self.rev is None) == (self.value is None):
            raise ValueError("a compare gives exactly one of rev and value")


@attrs.frozen
class Txn:
    """If every compare holds, apply ``success``, else ``failure``: each op
    a SetFile or DeleteFile, at most one per path and none inside another
    op's path. The chosen ops are checked first and applied all or none."""

    compares: tuple[Compare, ...] = ()
    success: tuple[SetFile | DeleteFile, ...] = ()
    failure: tuple[SetFile | DeleteFile, ...] = ()


@attrs.frozen
class Event:
    """One change to one file: ``kind`` is SET or DEL; ``value`` is b"" for DEL."""

    rev: int
    path: str
    value: bytes
    kind: str

    @property
    def is_set(self) -> bool:
        return self.kind == SET


@attrs.frozen
class Outcome:
    """What applying a mutation did: the new revision, or the error, or neither (NOP).

    ``event``: the change of a SET or DEL. ``events``: every change of a
    RevokeLease or Txn, in revision order. ``lease``: the id a GrantLease
    created. ``succeeded``: whether a Txn's compares held; ``revs``: the
    revision of each op of the branch it applied (0 for deleting a file
    that did not exist).
    """

    rev: int = 0
    error: ErrCode | None = None
    event: Event | None = None
    events: tuple[Event, ...] = ()
    lease: int = 0
    succeeded: bool = True
    revs: tuple[int, ...] = ()


Mutation: TypeAlias = SetFile | DeleteFile | Nop | GrantLease | RevokeLease | Txn
"""Anything ``Store.apply`` accepts."""

_HEADER = struct.Struct(">cqH")
_LEASE = struct.Struct(">Q")


def encode(mutation: Mutation) -> bytes:
    """Serialize a mutation to bytes.

    SET ``S`` and DEL ``D``: tag, i64 rev, u16 path length, path, value.
    SET with a lease ``L``: as ``S`` with a u64 lease id before the path.
    ``N``: Nop. ``G``: u64 lease, u64 ttl. ``R``: u64 lease, bool expired.
    ``T``: u32 compare count, compares, then the two op lists (u32 count,
    each op u32 length + its own encoding); a compare is the path (text),
    a bool "by value", then the value (blob) or the revision (u64).
    """
    if isinstance(mutation, SetFile):
        path = mutation.path.encode("ascii")
        if mutation.lease:
            return (_HEADER.pack(b"L", mutation.rev, len(path)) + _LEASE.pack(mutation.lease)
                    + path + mutation.value)
        return _HEADER.pack(b"S", mutation.rev, len(path)) + path + mutation.value
    if isinstance(mutation, DeleteFile):
        path = mutation.path.encode("ascii")
        return _HEADER.pack(b"D", mutation.rev, len(path)) + path
    if isinstance(mutation, Nop):
        return b"N"
    if isinstance(mutation, GrantLease):
        return b"G" + struct.pack(">QQ", mutation.lease, mutation.ttl)
    if isinstance(mutation, RevokeLease):
        return b"R" + struct.pack(">Q?", mutation.lease, mutation.expired)
    if isinstance(mutation, Txn):
        return _encode_txn(mutation)
    raise TypeError(f"not a mutation: {mutation!r}")


def _encode_txn(txn: Txn) -> bytes:
    w = Writer()
    w.raw(b"T")
    w.u32(len(txn.compares))
    for c in txn.compares:
        w.text(c.path)
        w.boolean(c.value is not None)
        if c.value is not None:
            w.blob(c.value)
        else:
            w.u64(c.rev or 0)
    for ops in (txn.success, txn.failure):
        w.u32(len(ops))
        for op in ops:
            w.blob(encode(op))
    return w.getvalue()


def decode(data: bytes) -> Mutation:
    """Inverse of ``encode``; raises DoozerError(OTHER) on malformed bytes."""
    try:
        return _decode(bytes(data))
    except (DecodeError, ValueError, UnicodeDecodeError, struct.error):
        raise DoozerError(ErrCode.OTHER, "bad mutation") from None


def _decode(data: bytes) -> Mutation:
    tag = data[:1]
    if data == b"N":
        return Nop()
    if tag == b"G" and len(data) == 17:
        lease, ttl = struct.unpack_from(">QQ", data, 1)
        return GrantLease(lease, ttl)
    if tag == b"R" and len(data) == 10 and data[9] in (0, 1):
        lease, expired = struct.unpack_from(">Q?", data, 1)
        return RevokeLease(lease, expired)
    if tag == b"T":
        return _decode_txn(data)
    if len(data) < _HEADER.size:
        raise ValueError("short mutation")
    tag, rev, path_len = _HEADER.unpack_from(data)
    start, lease = _HEADER.size, 0
    if tag == b"L":
        (lease,) = _LEASE.unpack_from(data, start)
        start += _LEASE.size
        if lease == 0:
            raise ValueError("lease 0 in a leased set")
    end = start + path_len
    if len(data) < end:
        raise ValueError("short path")
    path = data[start:end].decode("ascii")
    if tag in (b"S", b"L"):
        return SetFile(path, rev, bytes(data[end:]), lease)
    if tag == b"D" and len(data) == end:
        return DeleteFile(path, rev)
    raise ValueError("unknown mutation")


def _decode_txn(data: bytes) -> Txn:
    r = Reader(data, 1)
    compares = []
    for _ in range(_count(r, data)):
        path = r.text()
        if r.boolean():
            compares.append(Compare(path, value=r.blob()))
        else:
            compares.append(Compare(path, rev=r.u64()))
    branches = []
    for _ in range(2):
        ops = []
        for _ in range(_count(r, data)):
            op = _decode(r.blob())
            if not isinstance(op, (SetFile, DeleteFile)):
                raise ValueError("a txn op is a set or a delete")
            ops.append(op)
        branches.append(tuple(ops))
    r.expect_end()
    return Txn(tuple(compares), branches[0], branches[1])


def _count(r: Reader, data: bytes) -> int:
    count = r.u32()
    if count > len(data):
        raise ValueError("count exceeds the bytes")
    return count
