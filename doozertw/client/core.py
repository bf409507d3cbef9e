"""The client side of doozer's wire protocol, with no I/O (pure).

Both clients (Twisted and blocking) build requests, split the byte stream
into responses and turn responses into results here, so they agree on every
detail of the protocol:

- ``Call`` is one request as data: its verb, fields, and whether it may be
  sent again on another connection after the first one was lost
  (``retriable``: every read and WAIT, and the idempotent lease verbs
  LEASE_KEEPALIVE, LEASE_TTL, LEASE_LIST; never SET, DEL, NOP, TXN,
  LEASE_GRANT or LEASE_REVOKE, whose effect may already have happened).
- ``Tags`` hands out tags not in use on one connection.
- ``ResponseReader`` turns received bytes into ``Response`` messages
  (through doozertw.wire's frame reader).
- ``result_of`` turns a Response into the verb's result, or raises
  DoozerError with the server's code and detail.
- ``LeaseInfo`` and ``TxnResult`` are the results of the lease verbs and
  TXN (doozertw's extensions; docs/protocol.md, "Extensions: leases and transactions").
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Callable, cast

import attrs

from doozertw.errors import DoozerError, ErrCode
from doozertw.wire import (
    FLAG_DEL, FLAG_SET, VERBS, FrameError, FrameReader, Request, RequestMessage, ResponseMessage,
    frame_tagged, read_responses)
from doozertw.store import DEL, SET, Event
from doozertw.store.mutation import Compare, DeleteFile, SetFile

MAX_RESPONSE = 64 * 1024 * 1024
"""Largest response frame a client accepts before dropping the connection."""

READ_VERBS = frozenset({"GET", "REV", "WAIT", "WALK", "GETDIR", "STAT", "SELF"})
IDEMPOTENT_VERBS = frozenset({"ACCESS", "LEASE_KEEPALIVE", "LEASE_TTL", "LEASE_LIST"})
"""Verbs besides the reads that may be sent again after a lost connection:
doing them twice does what doing them once does."""

Op = SetFile | DeleteFile
"""A transaction's operation."""


@attrs.frozen
class LeaseInfo:
    """A lease as the server reported it: ``id``; ``ttl``, the seconds it
    was granted for; ``remaining``, the seconds left before it expires
    unless kept alive; ``paths``, the files attached to it, sorted (only
    ``lease_ttl`` reports them; empty otherwise)."""

    id: int
    ttl: int
    remaining: float
    paths: tuple[str, ...] = ()


@attrs.frozen
class TxnResult:
    """What a TXN did: ``succeeded`` (its compares held, so the success ops
    ran, else the failure ops did), ``revs`` (the revision of each op that
    ran, in order; 0 for deleting a missing file) and ``rev`` (the store's
    revision right after it)."""

    succeeded: bool
    revs: tuple[int, ...]
    rev: int


class ClientError(DoozerError):
    """An error the client itself detected (code OTHER); prints as its detail."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrCode.OTHER, detail)

    def __str__(self) -> str:
        return str(self.detail)


class ConnectionLost(ClientError):
    """The connection carrying a request was lost before its answer came.

    Raised for writes (whose effect is unknown: they may have been applied)
    and for every request once the client gave up reconnecting.
    """

    def __init__(self, detail: str = "connection lost") -> None:
        super().__init__(detail)


class WaitTimeout(ClientError):
    """A wait or watch saw no matching change within its timeout."""

    def __init__(self, detail: str = "wait timeout") -> None:
        super().__init__(detail)


class ProtocolViolation(ClientError):
    """The server sent bytes that are not a doozer response."""


@attrs.frozen
class Call:
    """One request before it has a tag."""

    verb: str
    path: str | None = None
    rev: int | None = None
    value: bytes | None = None
    offset: int | None = None
    lease: int | None = None
    ttl: int | None = None
    compares: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()

    @property
    def retriable(self) -> bool:
        """True if sending it again after a lost connection does nothing more
        than sending it once (reads, WAIT, ACCESS, keep-alives, lease reads)."""
        return self.verb in READ_VERBS or self.verb in IDEMPOTENT_VERBS

    def request(self, tag: int | None = None) -> RequestMessage:
        """The protobuf Request for this call under ``tag`` (None: no tag)."""
        request = cast(RequestMessage, Request(verb=VERBS[self.verb]))
        if tag is not None:
            request.tag = tag
        if self.path is not None:
            request.path = self.path
        if self.rev is not None:
            request.rev = self.rev
        if self.value is not None:
            request.value = self.value
        if self.offset is not None:
            request.offset = self.offset
        if self.lease is not None:
            request.lease = self.lease
        if self.ttl is not None:
            request.ttl = self.ttl
        for compare in self.compares:
            if compare.value is not None:
                request.compares.add(path=compare.path, value=compare.value)
            else:
                request.compares.add(path=compare.path, rev=compare.rev)
        for ops, field in ((self.success, request.success), (self.failure, request.failure)):
            for op in ops:
                _add_op(field, op)
        return request

    @functools.cached_property
    def _untagged(self) -> bytes:
        return self.request().SerializeToString()

    def encode(self, tag: int) -> bytes:
        """The framed bytes of this call under ``tag`` (serialized once per Call)."""
        return frame_tagged(tag, self._untagged)


def _add_op(field: Any, op: Op) -> None:
    if isinstance(op, SetFile):
        added = field.add(verb=VERBS["SET"], path=op.path, rev=op.rev, value=op.value)
        if op.lease:
            added.lease = op.lease
    elif isinstance(op, DeleteFile):
        field.add(verb=VERBS["DEL"], path=op.path, rev=op.rev)
    else:
        raise TypeError(f"a transaction op is a SetFile or a DeleteFile, not {op!r}")


def call(verb: str, path: str | None = None, rev: int | None = None,
         value: bytes | str | None = None, offset: int | None = None,
         lease: int | None = None, ttl: int | None = None,
         compares: Iterable[Compare] = (), success: Iterable[Op] = (),
         failure: Iterable[Op] = ()) -> Call:
    """Build a Call, checking argument types the server would reject."""
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}")
    if isinstance(value, str):
        value = value.encode("utf-8")
    compares, success, failure = tuple(compares), tuple(success), tuple(failure)
    for compare in compares:
        if not isinstance(compare, Compare):
            raise TypeError(f"a transaction compare is a Compare, not {compare!r}")
    for op in success + failure:
        if not isinstance(op, (SetFile, DeleteFile)):
            raise TypeError(f"a transaction op is a SetFile or a DeleteFile, not {op!r}")
    return Call(verb, path, rev, value, offset, lease, ttl, compares, success, failure)


class Tags:
    """Tags for one connection: the next free int32 after the last one taken.

    Rotating through the range (rather than reusing the lowest) keeps a
    just-released tag out of use for as long as possible.
    """

    MAX = 2 ** 31 - 1

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._next = 0

    def __contains__(self, tag: object) -> bool:
        return tag in self._used

    def __len__(self) -> int:
        return len(self._used)

    def take(self) -> int:
        tag = self._next
        while tag in self._used:
            tag = 0 if tag >= self.MAX else tag + 1
        self._used.add(tag)
        self._next = 0 if tag >= self.MAX else tag + 1
        return tag

    def release(self, tag: int) -> None:
        self._used.discard(tag)


class ResponseReader:
    """Accumulates bytes; ``feed`` returns the complete Responses in them.

    The framing is doozertw.wire's FrameReader; this only names its
    errors for clients. Raises ProtocolViolation for an oversized or
    unparsable frame; the caller must then drop the connection.
    """

    def __init__(self, max_frame: int = MAX_RESPONSE) -> None:
        self._frames = FrameReader(max_frame)

    def feed(self, data: bytes) -> list[ResponseMessage]:
        try:
            return read_responses(self._frames, data)
        except FrameError as e:
            raise ProtocolViolation(f"bad response: {e}") from None


def error_of(response: ResponseMessage) -> DoozerError | None:
    """The DoozerError a response carries, or None."""
    if not response.HasField("err_code"):
        return None
    try:
        code = ErrCode(response.err_code)
    except ValueError:
        code = ErrCode.OTHER
    return DoozerError(code, response.err_detail)


def event_of(response: ResponseMessage) -> Event:
    """A store Event from a WAIT or WALK response."""
    kind = DEL if response.flags & FLAG_DEL and not response.flags & FLAG_SET else SET
    return Event(response.rev, response.path, bytes(response.value), kind)


_RESULTS: dict[str, Callable[[ResponseMessage], Any]] = {
    "GET": lambda r: (bytes(r.value), r.rev),
    "SET": lambda r: r.rev,
    "DEL": lambda r: r.rev,
    "REV": lambda r: r.rev,
    "WAIT": event_of,
    "WALK": event_of,
    "GETDIR": lambda r: r.path,
    "STAT": lambda r: (r.len, r.rev),
    "NOP": lambda r: None,
    "SELF": lambda r: bytes(r.value).decode("utf-8", "replace"),
    "ACCESS": lambda r: None,
    "LEASE_GRANT": lambda r: lease_of(r),
    "LEASE_KEEPALIVE": lambda r: lease_of(r),
    "LEASE_REVOKE": lambda r: r.rev,
    "LEASE_TTL": lambda r: (lease_of(r, tuple(r.paths)), r.more),
    "LEASE_LIST": lambda r: ([LeaseInfo(x.id, x.ttl, x.remaining) for x in r.leases], r.more),
    "TXN": lambda r: TxnResult(r.succeeded, tuple(r.revs), r.rev),
}
"""Each verb's result. LEASE_TTL and LEASE_LIST answer one page: (LeaseInfo
with a page of its paths, more) and (list of LeaseInfo, more); the plans
``lease_ttl`` and ``leases`` (doozertw.client.plans) ask for every page."""


def lease_of(response: ResponseMessage, paths: tuple[str, ...] = ()) -> LeaseInfo:
    """The LeaseInfo of a LEASE_GRANT, LEASE_KEEPALIVE or LEASE_TTL response."""
    return LeaseInfo(response.lease, response.ttl, response.remaining, paths)


def result_of(verb: str, response: ResponseMessage) -> Any:
    """The result of ``verb`` from its response; raises its DoozerError."""
    error = error_of(response)
    if error is not None:
        raise error
    return _RESULTS[verb](response)
