"""What the front ends may ask of a node: ``NodeAPI``, and the values it speaks in.

Every front end (doozer protobuf, text, HTTP JSON, websocket, web view)
talks to a node only through the methods below and imports store values
(revision constants, Event, Glob, path checking) only from this module;
none reaches into the store, its watches or consensus. doozertw.node.Node
implements NodeAPI, for a node alone and for a cluster member alike
(doozertw.cluster.member builds a Node around its replicated proposer).

A node may also offer ``cluster_status()`` (returning a
doozertw.status.ClusterView); doozertw.frontends.web.status looks for it and
otherwise describes a cluster of one. It is optional, so not declared here.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred

from doozertw.errors import DoozerError, ErrCode
from doozertw.limits import Limits
from doozertw.store import ANY, CLOBBER, DEL, DIR, SET, Event, Glob, check_path
from doozertw.store.mutation import Compare, DeleteFile, SetFile


@attrs.frozen
class LeaseInfo:
    """A lease as a client sees it: ``id``; ``ttl``, the seconds it was
    granted for; ``remaining``, the seconds left before it expires unless
    kept alive (the leader's view; equal to ``ttl`` right after a grant or a
    keep-alive); ``paths``, the files attached to it, sorted."""

    id: int
    ttl: int
    remaining: float
    paths: tuple[str, ...] = ()


@attrs.frozen
class TxnResult:
    """What a transaction did: ``succeeded`` (the compares held, so the
    success ops ran), ``revs`` (the revision of each op that ran, in order;
    0 for deleting a file that did not exist) and ``rev`` (the store's
    revision right after the transaction)."""

    succeeded: bool
    revs: tuple[int, ...]
    rev: int


@attrs.frozen
class NodeMetrics:
    """A node's figures at one moment, for /metrics, /health and the web view.

    ``rev``: the revision applied locally; ``files``: files in the store;
    ``watchers``: watches registered; ``connections``: open client-port
    connections; ``reads``, ``writes``, ``write_errors``: requests served
    since start (counters); ``write_failures``: writes that got no outcome
    (no quorum, the node stopping: the client cannot know whether they
    happened); ``leases``: leases in the store.
    """

    rev: int
    files: int
    watchers: int
    connections: int
    reads: int
    writes: int
    write_errors: int
    write_failures: int = 0
    leases: int = 0


class Cancellable(Protocol):
    """A registration that ``cancel()`` ends (a watch)."""

    def cancel(self) -> None: ...


@runtime_checkable
class NodeAPI(Protocol):
    """One member of a cluster (or a cluster of one), as the front ends see it.

    Verbs answer through Deferreds that fire with the result or fail with a
    DoozerError. A ``rev`` of None means "now" (linearizable in a cluster);
    a revision not yet applied makes a read wait for it.
    """

    name: str
    cluster_name: str
    limits: Limits
    proposal_observers: list[Callable[[float], Any]]
    """Each is called with the seconds every write took from proposal to outcome."""

    # -- reads -------------------------------------------------------------

    def rev(self) -> Deferred[int]:
        """The latest committed revision."""

    @property
    def applied_rev(self) -> int:
        """The revision applied locally now (not a linearizable read)."""

    def self_id(self) -> Deferred[str]:
        """This node's id."""

    def get(self, path: str, rev: int | None = None) -> Deferred[tuple[bytes, int]]:
        """(value, rev); (b"", 0) for a missing file."""

    def stat(self, path: str, rev: int | None = None) -> Deferred[tuple[int, int]]:
        """(length, rev); a directory's rev is DIR."""

    def getdir(self, path: str, rev: int | None = None, offset: int = 0) -> Deferred[str]:
        """The name of the ``offset``-th entry of a directory (RANGE past the end)."""

    def walk(self, pattern: str, rev: int | None = None, offset: int = 0) -> Deferred[Event]:
        """The ``offset``-th file matching a glob, as a SET Event."""

    def glob(self, pattern: str) -> Glob:
        """``pattern`` compiled; DoozerError(BAD_PATH) if invalid or too long."""

    def files(self, glob: Glob, rev: int | None = None) -> list[Event]:
        """Every file matching ``glob`` at ``rev`` (applied; None: now), in walk
        order, as SET Events; DoozerError(TOO_LATE) below the history window.
        Counts no read: callers say so with ``record_read``."""

    def when_applied(self, rev: int) -> Deferred[None]:
        """Fires once revision ``rev`` is applied locally (now, if it is).
        Cancelling it drops the wait."""

    # -- waiting -----------------------------------------------------------

    def wait(self, pattern: str, rev: int) -> Deferred[Event]:
        """The first change matching ``pattern`` at or after ``rev``;
        cancelling removes the watch."""

    def watch(self, pattern: str, rev: int, callback: Callable[[Event], Any],
              on_error: Callable[[DoozerError], Any] | None = None) -> Cancellable:
        """``callback(event)`` for every matching change from ``rev`` on, until
        cancelled; raises DoozerError for a bad glob or a revision too old."""

    # -- writes ------------------------------------------------------------

    def set(self, path: str, rev: int, value: bytes, lease: int = 0) -> Deferred[int]:
        """The new revision of the file (``rev``: CLOBBER, 0 to create, or the
        file's revision). ``lease`` (0: none) attaches the file to a lease:
        it is deleted when the lease expires or is revoked (NOENT if the
        lease does not exist); a set without one detaches the file."""

    def delete(self, path: str, rev: int) -> Deferred[int]:
        """The revision of the deletion."""

    def nop(self) -> Deferred[None]:
        """Fires after a round trip through the commit path."""

    def txn(self, compares: tuple[Compare, ...], success: tuple[SetFile | DeleteFile, ...],
            failure: tuple[SetFile | DeleteFile, ...] = ()) -> Deferred[TxnResult]:
        """One atomic step: if every compare holds apply ``success``, else
        ``failure``. At most ``limits.max_txn_ops`` compares and ops in all and
        ``limits.max_txn_bytes`` of paths and values; one op per path, none
        inside another's path (BAD_PATH otherwise); an op that cannot apply
        (ISDIR, NOTDIR, REV_MISMATCH, NOENT lease) fails the whole
        transaction with that error and changes nothing."""

    # -- leases ------------------------------------------------------------

    def grant_lease(self, ttl: int, lease: int = 0) -> Deferred[LeaseInfo]:
        """A new lease of ``ttl`` seconds (raised to the node's minimum TTL;
        RANGE above ``limits.max_lease_ttl`` or below 1); ``lease`` asks for
        that id (0: the next free one; REV_MISMATCH if taken). OTHER when
        ``limits.max_leases`` leases exist."""

    def keepalive(self, lease: int) -> Deferred[LeaseInfo]:
        """Restart the lease's countdown (asked of the leader; not a
        replicated write); NOENT if it does not exist (it expired)."""

    def revoke_lease(self, lease: int) -> Deferred[int]:
        """Delete the lease and its files in one step; the revision after
        it. NOENT if the lease does not exist."""

    def lease_info(self, lease: int) -> Deferred[LeaseInfo]:
        """The lease now (the time left is the leader's); NOENT if none."""

    def leases(self) -> Deferred[list[LeaseInfo]]:
        """Every lease, by id (linearizable; time left from the leader)."""

    def lease_of(self, path: str) -> int:
        """The lease the file is attached to locally now (0: none)."""

    # -- operations --------------------------------------------------------

    def backup(self) -> bytes:
        """The store as a backup file's bytes, at one revision."""

    def metrics(self) -> NodeMetrics:
        """The node's figures now."""

    def record_read(self) -> None:
        """Count one read served without a read verb (a listing, a snapshot)."""

    def connection_opened(self) -> None:
        """A client-port connection opened (counted in ``metrics().connections``)."""

    def connection_closed(self) -> None:
        """A client-port connection opened earlier has closed."""


__all__ = [
    "ANY", "CLOBBER", "DEL", "DIR", "SET", "Cancellable", "Compare", "DeleteFile",
    "DoozerError", "ErrCode", "Event", "Glob", "LeaseInfo", "NodeAPI", "NodeMetrics",
    "SetFile", "TxnResult", "check_path",
]
