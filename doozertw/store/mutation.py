"""Mutations and events as data (pure).

A mutation is what a client asked to change; the store applies it and
answers with an Outcome. Mutations round-trip through ``encode``/``decode``
so the consensus log can carry them as opaque bytes and every replica
applies exactly the same change.
"""

import struct
from typing import TypeAlias

import attrs

from doozertw.errors import DoozerError, ErrCode

CLOBBER = -1
MISSING = 0
DIR = -2

SET = "set"
DEL = "del"


@attrs.frozen
class SetFile:
    """Write ``value`` at ``path`` if ``rev`` >= the file's revision (-1: always)."""

    path: str
    rev: int
    value: bytes


@attrs.frozen
class DeleteFile:
    """Delete ``path`` if ``rev`` >= the file's revision (-1: always)."""

    path: str
    rev: int


@attrs.frozen
class Nop:
    """Changes nothing; exists so a round trip through consensus can be proven."""


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
    """What applying a mutation did: the new revision, or the error, or neither (NOP)."""

    rev: int = 0
    error: ErrCode | None = None
    event: Event | None = None


Mutation: TypeAlias = SetFile | DeleteFile | Nop
"""Anything ``Store.apply`` accepts."""

_HEADER = struct.Struct(">cqH")


def encode(mutation: Mutation) -> bytes:
    """Serialize a mutation to bytes (tag, rev, path length, path, value)."""
    if isinstance(mutation, SetFile):
        path = mutation.path.encode("ascii")
        return _HEADER.pack(b"S", mutation.rev, len(path)) + path + mutation.value
    if isinstance(mutation, DeleteFile):
        path = mutation.path.encode("ascii")
        return _HEADER.pack(b"D", mutation.rev, len(path)) + path
    if isinstance(mutation, Nop):
        return b"N"
    raise TypeError(f"not a mutation: {mutation!r}")


def decode(data: bytes) -> Mutation:
    """Inverse of ``encode``; raises DoozerError(OTHER) on malformed bytes."""
    if data == b"N":
        return Nop()
    if len(data) < _HEADER.size:
        raise DoozerError(ErrCode.OTHER, "bad mutation")
    tag, rev, path_len = _HEADER.unpack_from(data)
    end = _HEADER.size + path_len
    if len(data) < end:
        raise DoozerError(ErrCode.OTHER, "bad mutation")
    try:
        path = data[_HEADER.size:end].decode("ascii")
    except UnicodeDecodeError:
        raise DoozerError(ErrCode.OTHER, "bad mutation") from None
    if tag == b"S":
        return SetFile(path, rev, bytes(data[end:]))
    if tag == b"D" and len(data) == end:
        return DeleteFile(path, rev)
    raise DoozerError(ErrCode.OTHER, "bad mutation")
