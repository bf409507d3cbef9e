"""doozertw's extensions of the doozer protocol, as pure functions of
messages (docs/protocol.md, "Extensions: leases and transactions"); doozertw.frontends.doozer
dispatches the verbs and calls these.

- ``txn_of(request, limits)``: a TXN Request as (compares, success,
  failure) of doozertw.frontends.interface values, bounded before anything
  reaches the node: at most ``limits.max_txn_ops`` compares and ops in all,
  ``limits.max_txn_bytes`` of paths and values, each path within
  ``max_path`` (BAD_PATH) and value within ``max_value``; a missing path or
  rev gives MISSING_ARG, an op that is not SET or DEL UNKNOWN_VERB.
- ``lease_id(n)``: ``n`` if a lease can have that id (1 to 2**63-1), else
  NOENT (no such lease).
- ``lease_page(info, after)`` / ``list_page(leases, after)``: the Response
  of LEASE_TTL / LEASE_LIST: at most PAGE_ITEMS paths (and about
  PAGE_BYTES of them) after path ``after``, or leases with an id above
  ``after``; ``more`` is set when entries remain past the page.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import cast

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.interface import Compare, DeleteFile, LeaseInfo, SetFile
from doozertw.limits import Limits
from doozertw.wire import VERBS, Response, ResponseMessage
from doozertw.wire.schema import CompareMessage, OpMessage, RequestMessage

PAGE_ITEMS = 1024
"""Most leases (LEASE_LIST) or paths (LEASE_TTL) in one reply."""
PAGE_BYTES = 64 * 1024
"""Bytes of paths after which a LEASE_TTL page ends."""
MAX_ID = 2 ** 63 - 1
"""The largest lease id (ids are positive int64s)."""

Op = SetFile | DeleteFile


def lease_page(info: LeaseInfo, after: str | None) -> ResponseMessage:
    """LEASE_TTL's reply: the lease, and its paths after ``after`` (one page)."""
    paths = info.paths
    start = 0 if after is None else bisect.bisect_right(paths, after)
    response = cast(ResponseMessage,
                    Response(lease=info.id, ttl=info.ttl, remaining=info.remaining))
    size = 0
    for path in paths[start:start + PAGE_ITEMS]:
        if size >= PAGE_BYTES:
            break
        response.paths.append(path)
        size += len(path)
    response.more = start + len(response.paths) < len(paths)
    return response


def list_page(leases: Iterable[LeaseInfo], after: int) -> ResponseMessage:
    """LEASE_LIST's reply: the leases with an id above ``after`` (one page)."""
    ordered = sorted(leases, key=lambda info: info.id)
    start = bisect.bisect_right([info.id for info in ordered], after)
    response = cast(ResponseMessage, Response())
    for info in ordered[start:start + PAGE_ITEMS]:
        response.leases.add(id=info.id, ttl=info.ttl, remaining=info.remaining)
    response.more = start + PAGE_ITEMS < len(ordered)
    return response
def lease_id(lease: int) -> int:
    """``lease`` if it can name a lease; NOENT otherwise (ids are 1 to 2**63-1)."""
    if not 1 <= lease <= MAX_ID:
        raise DoozerError(ErrCode.NOENT, f"no lease {lease}")
    return lease


def txn_of(request: RequestMessage,
           limits: Limits) -> tuple[tuple[Compare, ...], tuple[Op, ...], tuple[Op, ...]]:
    """(compares, success, failure) of a TXN request, checked against ``limits``."""
    count = len(request.compares) + len(request.success) + len(request.failure)
    if count > limits.max_txn_ops:
        raise DoozerError(ErrCode.RANGE, f"more than {limits.max_txn_ops} compares and ops")
    budget = _Budget(limits)
    compares = tuple(_compare_of(c, budget) for c in request.compares)
    success = tuple(_op_of(op, budget) for op in request.success)
    failure = tuple(_op_of(op, budget) for op in request.failure)
    return compares, success, failure


class _Budget:
    """Counts a TXN's bytes of paths and values; raises past the limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.left = limits.max_txn_bytes

    def path(self, message: CompareMessage | OpMessage) -> str:
        if not message.HasField("path"):
            raise DoozerError(ErrCode.MISSING_ARG, "path")
        path = message.path
        if len(path) > self.limits.max_path:
            raise DoozerError(ErrCode.BAD_PATH, "path too long")
        self._spend(len(path))
        return path

    def value(self, value: bytes) -> bytes:
        if len(value) > self.limits.max_value:
            raise DoozerError(ErrCode.OTHER, "value too large")
        self._spend(len(value))
        return value

    def _spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise DoozerError(ErrCode.RANGE, f"more than {self.limits.max_txn_bytes} bytes")


def _compare_of(message: CompareMessage, budget: _Budget) -> Compare:
    path = budget.path(message)
    has_rev, has_value = message.HasField("rev"), message.HasField("value")
    if has_rev == has_value:
        raise DoozerError(ErrCode.MISSING_ARG, "a compare needs one of rev and value")
    if has_value:
        return Compare(path, value=budget.value(message.value))
    if message.rev < 0:
        raise DoozerError(ErrCode.RANGE, "a compare's rev is 0 or more")
    return Compare(path, rev=message.rev)


def _op_of(message: OpMessage, budget: _Budget) -> Op:
    verb = message.verb if message.HasField("verb") else None
    if verb not in (VERBS["SET"], VERBS["DEL"]):
        raise DoozerError(ErrCode.UNKNOWN_VERB, "an op is SET or DEL")
    path = budget.path(message)
    if not message.HasField("rev"):
        raise DoozerError(ErrCode.MISSING_ARG, "rev")
    if verb == VERBS["DEL"]:
        if message.HasField("value") or message.lease:
            raise DoozerError(ErrCode.OTHER, "a DEL op has no value or lease")
        return DeleteFile(path, message.rev)
    lease = lease_id(message.lease) if message.lease else 0
    return SetFile(path, message.rev, budget.value(message.value), lease)
