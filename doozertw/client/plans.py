"""Multi-request helpers as pure plans, shared by both clients.

A plan is a generator that yields a list of Calls to send at once
(pipelined) and is sent back the list of their outcomes, each a result or
the DoozerError that request failed with. It returns its answer with
``return``. ``drive_blocking`` runs a plan on the blocking client; the
Twisted client runs it in ``DoozerClient.run_plan``.

Every listing plan pins one revision first (the current one, unless
given), so its answer is a consistent snapshot even while others write.
The lease plans (``lease_ttl``, ``leases``) cannot pin a revision (leases
are not versioned): they page by key (the last path or lease id seen), so
an entry that exists throughout is listed exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from doozertw.errors import DoozerError, ErrCode
from doozertw.client.core import Call, LeaseInfo, call
from doozertw.store import DIR, Event

BATCH = 32

T = TypeVar("T")

Outcomes = list[Any]
"""What a plan is sent back: per Call its result, or the exception it failed with."""

Plan = Generator[list[Call], Outcomes, T]
"""A plan answering ``T``: yields batches of Calls, is sent their Outcomes."""

TreeEntry = tuple[str, bool, int, int]
"""One entry of ``tree``: (path, is_dir, length, rev)."""


def _raise_errors(outcomes: Outcomes) -> Outcomes:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def pin(rev: int | None) -> Plan[int]:
    """Plan: ``rev`` if given, else the current revision."""
    if rev is not None:
        return rev
    current: int
    (current,) = _raise_errors((yield [call("REV")]))
    return current


def _until_range(verb: str, path: str, rev: int, batch: int) -> Plan[list[Any]]:
    """Plan: results of ``verb`` at offsets 0, 1, ... until RANGE."""
    found: list[Any] = []
    offset = 0
    while True:
        outcomes = yield [call(verb, path=path, rev=rev, offset=o)
                          for o in range(offset, offset + batch)]
        for outcome in outcomes:
            if isinstance(outcome, DoozerError) and outcome.code == ErrCode.RANGE:
                return found
            if isinstance(outcome, BaseException):
                raise outcome
            found.append(outcome)
        offset += batch


def getdir_all(path: str, rev: int | None = None, batch: int = BATCH) -> Plan[list[str]]:
    """Plan: every entry name of directory ``path``, sorted."""
    rev = yield from pin(rev)
    return (yield from _until_range("GETDIR", path, rev, batch))


def walk_all(glob: str, rev: int | None = None, batch: int = BATCH) -> Plan[list[Event]]:
    """Plan: every file matching ``glob`` as SET Events, in walk order."""
    rev = yield from pin(rev)
    return (yield from _until_range("WALK", glob, rev, batch))


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else directory + "/" + name


def find(root: str = "/", rev: int | None = None, batch: int = BATCH) -> Plan[list[str]]:
    """Plan: ``root`` and every directory and file under it, depth first.

    The order and content are those of the Go ``doozer find``: a directory
    is listed before its entries, entries in name order. NOENT if ``root``
    does not exist.
    """
    rev = yield from pin(rev)
    ((_, root_rev),) = _raise_errors((yield [call("STAT", path=root, rev=rev)]))
    if root_rev == 0:
        raise DoozerError(ErrCode.NOENT, root)
    found: list[str] = []
    yield from _visit(root, root_rev == DIR, rev, batch, found)
    return found


def _visit(path: str, is_dir: bool, rev: int, batch: int, found: list[str]) -> Plan[None]:
    found.append(path)
    if not is_dir:
        return
    names = yield from _until_range("GETDIR", path, rev, batch)
    children = [_join(path, name) for name in names]
    stats = _raise_errors((yield [call("STAT", path=c, rev=rev) for c in children]))
    for child, (_, child_rev) in zip(children, stats):
        yield from _visit(child, child_rev == DIR, rev, batch, found)


def tree(root: str = "/", rev: int | None = None,
         batch: int = BATCH) -> Plan[list[TreeEntry]]:
    """Plan: (path, is_dir, length, rev) for ``root`` and everything under it."""
    rev = yield from pin(rev)
    paths = yield from find(root, rev, batch)
    stats = _raise_errors((yield [call("STAT", path=p, rev=rev) for p in paths]))
    return [(p, r == DIR, length, r) for p, (length, r) in zip(paths, stats)]


MAX_PAGES = 1_000_000
"""Pages a lease plan asks for before giving up (a server that never ends)."""


def lease_ttl(lease: int) -> Plan[LeaseInfo]:
    """Plan: the lease with every path attached to it (LEASE_TTL page by page).

    Its ttl and time left are those of the first page.
    """
    first: LeaseInfo | None = None
    paths: list[str] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        ((info, more),) = _raise_errors((yield [call("LEASE_TTL", lease=lease, path=after)]))
        first = first or info
        paths.extend(info.paths)
        if not more or not info.paths:
            return LeaseInfo(first.id, first.ttl, first.remaining, tuple(paths))
        after = info.paths[-1]
    raise DoozerError(ErrCode.OTHER, "LEASE_TTL never ended")


def leases() -> Plan[list[LeaseInfo]]:
    """Plan: every lease, by id, without paths (LEASE_LIST page by page)."""
    found: list[LeaseInfo] = []
    after = 0
    for _ in range(MAX_PAGES):
        ((page, more),) = _raise_errors((yield [call("LEASE_LIST", lease=after)]))
        found.extend(page)
        if not more or not page:
            return found
        after = page[-1].id
    raise DoozerError(ErrCode.OTHER, "LEASE_LIST never ended")


def drive_blocking(plan: Plan[T], many: Callable[[Sequence[Call]], Outcomes]) -> T:
    """Run ``plan`` to its answer; ``many(calls)`` returns their outcomes."""
    try:
        calls = next(plan)
        while True:
            calls = plan.send(many(calls))
    except StopIteration as stop:
        answer: T = stop.value
        return answer
