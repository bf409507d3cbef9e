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


@attrs.frozen
class NodeMetrics:
    """A node's figures at one moment, for /metrics, /health and the web view.

    ``rev``: the revision applied locally; ``files``: files in the store;
    ``watchers``: watches registered; ``connections``: open client-port
    connections; ``reads``, ``writes``, ``write_errors``: requests served
    since start (counters).
    """

    rev: int
    files: int
    watchers: int
    connections: int
    reads: int
    writes: int
    write_errors: int


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

    def set(self, path: str, rev: int, value: bytes) -> Deferred[int]:
        """The new revision of the file (``rev``: CLOBBER, 0 to create, or the
        file's revision)."""

    def delete(self, path: str, rev: int) -> Deferred[int]:
        """The revision of the deletion."""

    def nop(self) -> Deferred[None]:
        """Fires after a round trip through the commit path."""

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
    "ANY", "CLOBBER", "DEL", "DIR", "SET", "Cancellable", "DoozerError", "ErrCode",
    "Event", "Glob", "NodeAPI", "NodeMetrics", "check_path",
]
