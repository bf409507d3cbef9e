"""The node: the one object every front end talks to.

It owns the store and the path by which writes become committed (a
``Proposer``). Every verb returns a Deferred that fires with the answer or
fails with a DoozerError. Reads without a revision are served at the
node's current revision; reads pinned to a revision not yet applied wait
for it.

The single-node proposer applies writes at once; the replicated proposer
(consensus) commits them through the cluster first. Both hand the node
Outcomes from the same pure store. Every write (SET, DEL) reports the
seconds from proposal to outcome (success or error) to each callable in
``proposal_observers``; ``reactor`` (default: the global reactor, looked
up when first needed) is the clock for that and nothing else.

In a cluster, ``read_barrier`` (an object whose ``barrier()`` returns a
Deferred that fires once a local read is linearizable, e.g.
doozertw.cluster.reads.ReadBarrier) guards every read without a revision,
and REV.
"""

from __future__ import annotations

import collections
import functools
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw import __version__
from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.interface import (
    Cancellable, LeaseInfo, NodeAPI, NodeMetrics, TxnResult)
from doozertw.limits import Limits
from doozertw.store import (
    ANY, CLOBBER, DeleteFile, Event, Glob, Mutation, Nop, Outcome, SetFile, Store,
    Watch, check_path)
from doozertw.store.mutation import Compare, GrantLease, RevokeLease, Txn
from doozertw.store.store import RevWaiter
from doozertw.status import ClusterView

_T = TypeVar("_T")


class Clock(Protocol):
    """What the node needs of a reactor: ``seconds()`` (IReactorTime)."""

    def seconds(self) -> float: ...


class Proposer(Protocol):
    """The path by which a mutation becomes committed: ``propose`` fires with
    the mutation's Outcome once it is applied to the local store."""

    def propose(self, mutation: Mutation) -> defer.Deferred[Outcome]: ...


class ReadBarrier(Protocol):
    """``barrier()`` fires once a local read is linearizable (e.g.
    doozertw.cluster.reads.ReadBarrier); fails with DoozerError otherwise."""

    def barrier(self) -> defer.Deferred[Any]: ...


class LocalProposer:
    """Commits a mutation by applying it to the local store immediately."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: collections.deque[
            tuple[Mutation, defer.Deferred[Outcome]]] | None = None

    def propose(self, mutation: Mutation) -> defer.Deferred[Outcome]:
        """Apply now, or, when called from inside an apply (a watch callback),
        right after it, so watches see events strictly in revision order."""
        result: defer.Deferred[Outcome] = defer.Deferred()
        if self._queue is not None:
            self._queue.append((mutation, result))
            return result
        self._queue = collections.deque([(mutation, result)])
        try:
            while self._queue:
                queued, waiting = self._queue.popleft()
                waiting.callback(self._store.apply(queued))
        finally:
            self._queue = None
        return result


class LeaseKeeper(Protocol):
    """The clock side of leases (doozertw.cluster.lessor.Lessor): keep-alives
    and time left are the leader's, never written to the log."""

    min_ttl: int

    def keepalive(self, lease: int) -> defer.Deferred[float]: ...

    def remaining(self, leases: tuple[int, ...]) -> defer.Deferred[dict[int, float]]: ...

    def granted(self, lease: int) -> None: ...


class Stats:
    """Counters a node keeps for its web view and metrics (read them through
    ``Node.metrics()``; front ends change them only through Node methods)."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.write_errors = 0
        self.write_failures = 0
        self.connections = 0


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Glob:
    """Compile and cache a glob; raises DoozerError(BAD_PATH) when invalid."""
    return Glob(pattern)


def _call(fn: Callable[..., _T], *args: Any) -> defer.Deferred[_T]:
    try:
        return defer.succeed(fn(*args))
    except DoozerError as e:
        return defer.fail(e)


class Node:
    """One member of a cluster (or a cluster of one), seen by clients: the
    implementation of doozertw.frontends.interface.NodeAPI."""

    log = Logger()
    def __init__(self, name: str = "n1", store: Store | None = None,
                 proposer: Proposer | None = None, cluster_name: str = "local",
                 limits: Limits | None = None, read_barrier: ReadBarrier | None = None,
                 reactor: Clock | None = None, *,
                 cluster_status: Callable[[], ClusterView] | None = None,
                 raft_position: Callable[[], tuple[int, int]] | None = None,
                 lessor: LeaseKeeper | None = None) -> None:
        """``cluster_status``: a zero-argument callable returning a
        ClusterView (a clustered node; None: a single node);
        ``raft_position``: a zero-argument callable giving the (index, term)
        of the last Raft entry applied to the store (None: unknown);
        ``lessor``: the lease clock (None: this node is its own leader and
        keeps one on ``reactor``, made at the first lease verb, or at once
        if ``reactor`` is given)."""
        self.cluster_status = cluster_status
        self.raft_position = raft_position
        self.name = name
        self.cluster_name = cluster_name
        self.store = store if store is not None else Store()
        self.store.report_failures_to(self._watch_failed)
        self.proposer = proposer if proposer is not None else LocalProposer(self.store)
        self.limits = limits if limits is not None else Limits()
        self.read_barrier = read_barrier
        self.stats = Stats()
        self.proposal_observers: list[Callable[[float], Any]] = []
        self._reactor = reactor
        self._lessor = lessor
        if lessor is None and reactor is not None:
            self.lessor  # noqa: B018 -- a restored store's leases start counting now

    # -- reads -------------------------------------------------------------

    def rev(self) -> defer.Deferred[int]:
        """Deferred latest committed revision (linearizable in a cluster)."""
        if self.read_barrier is None:
            return defer.succeed(self.store.rev)
        return self.read_barrier.barrier().addCallback(lambda _: self.store.rev)

    def self_id(self) -> defer.Deferred[str]:
        """Deferred id of this node."""
        return defer.succeed(self.name)

    def get(self, path: str, rev: int | None = None) -> defer.Deferred[tuple[bytes, int]]:
        """Deferred (value, rev); (b"", 0) for a missing file."""
        return self._read(self.store.get, path, rev)

    def stat(self, path: str, rev: int | None = None) -> defer.Deferred[tuple[int, int]]:
        """Deferred (length, rev); a directory's rev is DIR (-2)."""
        return self._read(self.store.stat, path, rev)

    def getdir(self, path: str, rev: int | None = None,
               offset: int = 0) -> defer.Deferred[str]:
        """Deferred name of the ``offset``-th entry of a directory."""
        return self._read(self.store.getdir, path, rev, offset)

    def walk(self, pattern: str, rev: int | None = None,
             offset: int = 0) -> defer.Deferred[Event]:
        """Deferred SET Event of the ``offset``-th file matching a glob."""
        try:
            glob = self._glob(pattern)
        except DoozerError as e:
            return defer.fail(e)
        return self._read(self.store.walk, glob, rev, offset)

    @property
    def applied_rev(self) -> int:
        """The revision applied locally now (not a linearizable read)."""
        return self.store.rev

    def glob(self, pattern: str) -> Glob:
        """``pattern`` compiled (cached); DoozerError(BAD_PATH) if invalid or
        longer than ``limits.max_path``."""
        return self._glob(pattern)

    def files(self, glob: Glob, rev: int | None = None) -> list[Event]:
        """Every file matching the Glob ``glob`` at the applied revision
        ``rev`` (None: now) as SET Events, in walk order; DoozerError(TOO_LATE)
        below the history window. Counts no read (see ``record_read``)."""
        return self.store.files(glob, rev)

    def when_applied(self, rev: int) -> defer.Deferred[None]:
        """Deferred None once revision ``rev`` is applied (now, if it is);
        cancelling it drops the wait."""
        waiter: RevWaiter | None = None
        applied: defer.Deferred[None] = defer.Deferred(_canceller(lambda: waiter))
        waiter = self.store.call_when_applied(rev, lambda: applied.callback(None))
        return applied

    def _read(self, fn: Callable[..., _T], arg: Any, rev: int | None,
              *rest: Any) -> defer.Deferred[_T]:
        self.stats.reads += 1
        if rev is None and self.read_barrier is not None:
            return self.read_barrier.barrier().addCallback(lambda _: fn(arg, rev, *rest))
        if rev is None or rev <= self.store.rev:
            return _call(fn, arg, rev, *rest)
        waiter: RevWaiter | None = None
        waiting: defer.Deferred[_T] = defer.Deferred(_canceller(lambda: waiter))

        def applied() -> None:
            _call(fn, arg, rev, *rest).chainDeferred(waiting)

        waiter = self.store.call_when_applied(rev, applied)
        return waiting

    # -- waiting -----------------------------------------------------------

    def wait(self, pattern: str, rev: int) -> defer.Deferred[Event]:
        """Deferred first Event matching ``pattern`` with revision >= ``rev``.

        Cancelling the Deferred removes the watch.
        """
        try:
            glob = self._glob(pattern)
            found = self.store.first_event(glob, rev)
        except DoozerError as e:
            return defer.fail(e)
        if found is not None:
            return defer.succeed(found)
        watch: Watch | None = None
        result: defer.Deferred[Event] = defer.Deferred(_canceller(lambda: watch))

        def deliver(event: Event) -> None:
            if watch is not None:
                watch.cancel()
            result.callback(event)

        watch = self.store.add_watch(glob, rev, deliver, result.errback)
        return result

    def watch(self, pattern: str, rev: int, callback: Callable[[Event], object],
              on_error: Callable[[DoozerError], object] | None = None) -> Watch:
        """Call ``callback(event)`` for every change matching ``pattern`` from ``rev``.

        Returns a Watch (``cancel()`` it); raises DoozerError for a bad glob
        or a revision older than the history window. A watch that cannot go
        on without a gap ends with ``on_error(DoozerError)``.
        """
        return self.store.add_watch(self._glob(pattern), rev, callback, on_error)

    def _glob(self, pattern: str) -> Glob:
        if len(pattern) > self.limits.max_path:
            raise DoozerError(ErrCode.BAD_PATH, "glob too long")
        return compile_glob(pattern)

    # -- writes ------------------------------------------------------------

    def set(self, path: str, rev: int, value: bytes, lease: int = 0) -> defer.Deferred[int]:
        """Deferred new revision of the file; ``lease`` (0: none) attaches it
        to that lease (NOENT if there is none)."""
        try:
            op = self._checked_set(SetFile(path, rev, bytes(value), lease))
        except DoozerError as e:
            return defer.fail(e)
        return self._write(op)

    def _checked_set(self, op: SetFile) -> SetFile:
        check_path(op.path, self.limits.max_path, self.limits.max_depth)
        if len(op.value) > self.limits.max_value:
            raise DoozerError(ErrCode.OTHER, "value too large")
        if op.lease < 0 or op.lease >= 2 ** 63:
            raise DoozerError(ErrCode.RANGE, f"lease {op.lease}")
        return op

    def delete(self, path: str, rev: int) -> defer.Deferred[int]:
        """Deferred revision of the deletion."""
        try:
            check_path(path, self.limits.max_path, self.limits.max_depth)
        except DoozerError as e:
            return defer.fail(e)
        return self._write(DeleteFile(path, rev))

    def nop(self) -> defer.Deferred[None]:
        """Deferred None once a round trip through the commit path completes."""
        return self.proposer.propose(Nop()).addCallback(lambda _: None)

    def _write(self, mutation: Mutation) -> defer.Deferred[int]:
        return self._commit(mutation).addCallback(lambda outcome: outcome.rev)

    def _commit(self, mutation: Mutation) -> defer.Deferred[Outcome]:
        """The mutation's Outcome once applied; fails with its error."""
        self.stats.writes += 1
        d = self.proposer.propose(mutation)
        if self.proposal_observers:
            d.addBoth(self._observe_latency, self._seconds())
        return d.addCallbacks(self._outcome, self._failed)

    def _failed(self, failure: Failure) -> Failure:
        self.stats.write_failures += 1
        return failure

    def _seconds(self) -> float:
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = cast(Clock, reactor)
        return self._reactor.seconds()

    def _observe_latency(self, result: Outcome | Failure,
                         started: float) -> Outcome | Failure:
        seconds = self._seconds() - started
        for observer in list(self.proposal_observers):
            try:
                observer(seconds)
            except Exception:
                self.log.failure("proposal observer failed")
        return result

    def _outcome(self, outcome: Outcome) -> Outcome:
        if outcome.error is not None:
            self.stats.write_errors += 1
            raise DoozerError(outcome.error)
        return outcome

    # -- transactions ------------------------------------------------------

    def txn(self, compares: tuple[Compare, ...], success: tuple[SetFile | DeleteFile, ...],
            failure: tuple[SetFile | DeleteFile, ...] = ()) -> defer.Deferred[TxnResult]:
        """Deferred TxnResult of one atomic compare-then-ops step; see
        NodeAPI.txn for the rules and limits."""
        try:
            txn = self._checked_txn(tuple(compares), tuple(success), tuple(failure))
        except DoozerError as e:
            return defer.fail(e)
        return self._commit(txn).addCallback(
            lambda o: TxnResult(succeeded=o.succeeded, revs=o.revs, rev=o.rev))

    def _checked_txn(self, compares: tuple[Compare, ...],
                     success: tuple[SetFile | DeleteFile, ...],
                     failure: tuple[SetFile | DeleteFile, ...]) -> Txn:
        limits = self.limits
        if len(compares) + len(success) + len(failure) > limits.max_txn_ops:
            raise DoozerError(ErrCode.OTHER, f"more than {limits.max_txn_ops} txn operations")
        size = 0
        for compare in compares:
            if not isinstance(compare, Compare):
                raise DoozerError(ErrCode.OTHER, "a txn compare must be a Compare")
            check_path(compare.path, limits.max_path, limits.max_depth)
            if compare.rev is not None and not 0 <= compare.rev < 2 ** 63:
                raise DoozerError(ErrCode.RANGE, f"compare rev {compare.rev}")
            size += len(compare.path) + len(compare.value or b"")
        for op in success + failure:
            if isinstance(op, SetFile):
                self._checked_set(op)
                size += len(op.value)
            elif isinstance(op, DeleteFile):
                check_path(op.path, limits.max_path, limits.max_depth)
            else:
                raise DoozerError(ErrCode.OTHER, "a txn op must be a SetFile or DeleteFile")
            size += len(op.path)
        if size > limits.max_txn_bytes:
            raise DoozerError(ErrCode.OTHER, f"txn larger than {limits.max_txn_bytes} bytes")
        return Txn(compares, success, failure)

    # -- leases ------------------------------------------------------------

    @property
    def lessor(self) -> LeaseKeeper:
        """The lease clock (made on first use for a node on its own)."""
        if self._lessor is None:
            from doozertw.cluster.lessor import Lessor
            self._seconds()
            lessor = Lessor(self.store, self.proposer.propose, cast(Any, self._reactor),
                            extension=0.0)
            lessor.promote()
            self._lessor = lessor
        return self._lessor

    def grant_lease(self, ttl: int, lease: int = 0) -> defer.Deferred[LeaseInfo]:
        """Deferred LeaseInfo of a new lease; see NodeAPI.grant_lease."""
        limits = self.limits
        if not 1 <= ttl <= limits.max_lease_ttl:
            return defer.fail(DoozerError(ErrCode.RANGE, f"ttl {ttl}: 1..{limits.max_lease_ttl}"))
        if not 0 <= lease < 2 ** 63:
            return defer.fail(DoozerError(ErrCode.RANGE, f"lease {lease}"))
        if len(self.store.leases) >= limits.max_leases:
            return defer.fail(DoozerError(ErrCode.OTHER,
                                          f"too many leases: {limits.max_leases} exist"))
        lessor = self.lessor
        ttl = max(ttl, lessor.min_ttl)

        def granted(outcome: Outcome) -> LeaseInfo:
            lessor.granted(outcome.lease)
            return LeaseInfo(outcome.lease, ttl, float(ttl))

        return self._commit(GrantLease(lease, ttl)).addCallback(granted)

    def keepalive(self, lease: int) -> defer.Deferred[LeaseInfo]:
        """Deferred LeaseInfo after restarting the lease's countdown."""
        def kept(remaining: float) -> LeaseInfo:
            return self._lease_info(lease, remaining)
        return self.lessor.keepalive(lease).addCallback(kept)

    def revoke_lease(self, lease: int) -> defer.Deferred[int]:
        """Deferred revision after the lease and its files are gone."""
        return self._commit(RevokeLease(lease)).addCallback(lambda o: o.rev)

    def lease_info(self, lease: int) -> defer.Deferred[LeaseInfo]:
        """Deferred LeaseInfo (linearizable; time left from the leader)."""
        def known(answer: dict[int, float]) -> LeaseInfo:
            if lease not in answer or lease not in self.store.leases:
                raise DoozerError(ErrCode.NOENT, f"lease {lease} does not exist")
            return self._lease_info(lease, answer[lease])
        return self._lease_read(lambda: (lease,)).addCallback(known)

    def leases(self) -> defer.Deferred[list[LeaseInfo]]:
        """Deferred LeaseInfo of every lease, by id."""
        def listed(answer: dict[int, float]) -> list[LeaseInfo]:
            return [self._lease_info(lease, answer[lease]) for lease in sorted(answer)
                    if lease in self.store.leases]
        return self._lease_read(lambda: tuple(self.store.leases.ids())).addCallback(listed)

    def _lease_read(self, which: Callable[[], tuple[int, ...]]
                    ) -> defer.Deferred[dict[int, float]]:
        self.stats.reads += 1
        barrier: defer.Deferred[Any] = (defer.succeed(None) if self.read_barrier is None
                                        else self.read_barrier.barrier())
        return barrier.addCallback(lambda _: self.lessor.remaining(which()))

    def _lease_info(self, lease: int, remaining: float) -> LeaseInfo:
        leases = self.store.leases
        if lease not in leases:
            return LeaseInfo(lease, 0, remaining)
        return LeaseInfo(lease, leases.ttl(lease), remaining, leases.files(lease))

    def lease_of(self, path: str) -> int:
        """The lease the file belongs to locally now (0: none)."""
        return self.store.leases.owner(path)

    # -- metrics -----------------------------------------------------------

    def metrics(self) -> NodeMetrics:
        """The node's figures now, as a NodeMetrics."""
        stats, store = self.stats, self.store
        return NodeMetrics(rev=store.rev, files=store.file_count,
                           watchers=store.watch_count, connections=stats.connections,
                           reads=stats.reads, writes=stats.writes,
                           write_errors=stats.write_errors,
                           write_failures=stats.write_failures,
                           leases=len(store.leases))

    def record_read(self) -> None:
        """Count one read served without a read verb (a listing, a snapshot)."""
        self.stats.reads += 1

    def connection_opened(self) -> None:
        """A client-port connection opened."""
        self.stats.connections += 1

    def connection_closed(self) -> None:
        """A client-port connection counted by ``connection_opened`` closed."""
        self.stats.connections -= 1

    # -- backup ------------------------------------------------------------

    def backup(self) -> bytes:
        """The store as a backup file's bytes (doozertw.persist.backup), at
        the revision it has now: built synchronously, so consistent."""
        from doozertw.persist.backup import Backup, encode_backup
        index, term = self.raft_position() if self.raft_position is not None else (0, 0)
        return encode_backup(Backup(
            cluster=self.cluster_name, node=self.name, revision=self.store.rev,
            store_snapshot=self.store.snapshot(), raft_index=index, raft_term=term,
            taken_at_ms=int(time.time() * 1000)))

    def _watch_failed(self, what: str, watch: Watch | None, exc: Exception) -> None:
        self.log.failure("store.watch.failed: {watch!r} {what}", Failure(exc),
                         watch=watch, what=what)

    # -- cluster self-description -------------------------------------------

    def describe_self(self, client_addr: str, hostname: str | None = None,
                      voter_slot: int | None = None) -> defer.Deferred[list[int]]:
        """Write this node's entries under /ctl as doozerd does.

        ``voter_slot`` n (a node that is a cluster by itself: its only
        voter and so its leader) also writes this node's id into /ctl/cal/n
        and /ctl/leader. /ctl/name is written only when it does not hold
        this node's cluster name already (a node joining or restarting never
        rewrites it). Returns a Deferred that fires when all are written.
        """
        prefix = f"/ctl/node/{self.name}"
        named = self.store.get("/ctl/name")[0] == self.cluster_name.encode("utf-8")
        entries = [] if named else [("/ctl/name", self.cluster_name)]
        entries += [
            (f"{prefix}/addr", client_addr),
            (f"{prefix}/hostname", hostname or socket.gethostname()),
            (f"{prefix}/version", __version__),
        ]
        if voter_slot is not None:
            entries.append((f"/ctl/cal/{voter_slot}", self.name))
            entries.append(("/ctl/leader", self.name))
        return defer.gatherResults(
            [self.set(path, CLOBBER, text.encode("utf-8")) for path, text in entries],
            consumeErrors=True)


def _canceller(target: Callable[[], Cancellable | None]
               ) -> Callable[[defer.Deferred[Any]], None]:
    """A Deferred canceller that cancels whatever ``target()`` returns then
    (a watch or a revision waiter registered after the Deferred was made)."""
    def cancel(_: defer.Deferred[Any]) -> None:
        registration = target()
        if registration is not None:
            registration.cancel()
    return cancel


if TYPE_CHECKING:  # the lint gate's mypy checks that Node implements NodeAPI
    _implements: type[NodeAPI] = Node


__all__ = ["ANY", "LocalProposer", "Node", "Proposer", "ReadBarrier", "compile_glob"]
