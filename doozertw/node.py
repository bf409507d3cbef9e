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

import collections
import functools
import socket
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw import __version__
from doozertw.errors import DoozerError, ErrCode
from doozertw.limits import Limits
from doozertw.store import (
    ANY, CLOBBER, DeleteFile, Glob, Nop, SetFile, Store, check_path)


class LocalProposer:
    """Commits a mutation by applying it to the local store immediately."""

    def __init__(self, store):
        self._store = store
        self._queue = None

    def propose(self, mutation):
        """Apply now, or, when called from inside an apply (a watch callback),
        right after it, so watches see events strictly in revision order."""
        result = defer.Deferred()
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


class Stats:
    """Counters a node keeps for its web view and metrics."""

    def __init__(self):
        self.reads = 0
        self.writes = 0
        self.write_errors = 0
        self.connections = 0


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern):
    """Compile and cache a glob; raises DoozerError(BAD_PATH) when invalid."""
    return Glob(pattern)


def _call(fn, *args):
    try:
        return defer.succeed(fn(*args))
    except DoozerError as e:
        return defer.fail(e)


class Node:
    """One member of a cluster (or a cluster of one), seen by clients."""

    log = Logger()
    raft_position = None
    """Zero-argument callable giving the (index, term) of the last Raft
    entry applied to the store, set by whoever runs Raft; None: unknown."""

    def __init__(self, name="n1", store=None, proposer=None, cluster_name="local",
                 limits=None, read_barrier=None, reactor=None):
        self.name = name
        self.cluster_name = cluster_name
        self.store = store if store is not None else Store()
        self.store.report_failures_to(self._watch_failed)
        self.proposer = proposer if proposer is not None else LocalProposer(self.store)
        self.limits = limits if limits is not None else Limits()
        self.read_barrier = read_barrier
        self.stats = Stats()
        self.proposal_observers = []
        self._reactor = reactor

    # -- reads -------------------------------------------------------------

    def rev(self):
        """Deferred latest committed revision (linearizable in a cluster)."""
        if self.read_barrier is None:
            return defer.succeed(self.store.rev)
        return self.read_barrier.barrier().addCallback(lambda _: self.store.rev)

    def self_id(self):
        return defer.succeed(self.name)

    def get(self, path, rev=None):
        """Deferred (value, rev); (b"", 0) for a missing file."""
        return self._read(self.store.get, path, rev)

    def stat(self, path, rev=None):
        """Deferred (length, rev); a directory's rev is DIR (-2)."""
        return self._read(self.store.stat, path, rev)

    def getdir(self, path, rev=None, offset=0):
        """Deferred name of the ``offset``-th entry of a directory."""
        return self._read(self.store.getdir, path, rev, offset)

    def walk(self, pattern, rev=None, offset=0):
        """Deferred SET Event of the ``offset``-th file matching a glob."""
        try:
            glob = self._glob(pattern)
        except DoozerError as e:
            return defer.fail(e)
        return self._read(self.store.walk, glob, rev, offset)

    def _read(self, fn, arg, rev, *rest):
        self.stats.reads += 1
        if rev is None and self.read_barrier is not None:
            return self.read_barrier.barrier().addCallback(lambda _: fn(arg, rev, *rest))
        if rev is None or rev <= self.store.rev:
            return _call(fn, arg, rev, *rest)
        waiter = None
        waiting = defer.Deferred(lambda _: waiter.cancel())

        def applied():
            _call(fn, arg, rev, *rest).chainDeferred(waiting)

        waiter = self.store.call_when_applied(rev, applied)
        return waiting

    # -- waiting -----------------------------------------------------------

    def wait(self, pattern, rev):
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
        watch = None
        result = defer.Deferred(lambda _: watch.cancel())

        def deliver(event):
            watch.cancel()
            result.callback(event)

        watch = self.store.add_watch(glob, rev, deliver, result.errback)
        return result

    def watch(self, pattern, rev, callback, on_error=None):
        """Call ``callback(event)`` for every change matching ``pattern`` from ``rev``.

        Returns a Watch (``cancel()`` it); raises DoozerError for a bad glob
        or a revision older than the history window. A watch that cannot go
        on without a gap ends with ``on_error(DoozerError)``.
        """
        return self.store.add_watch(self._glob(pattern), rev, callback, on_error)

    def _glob(self, pattern):
        if len(pattern) > self.limits.max_path:
            raise DoozerError(ErrCode.BAD_PATH, "glob too long")
        return compile_glob(pattern)

    # -- writes ------------------------------------------------------------

    def set(self, path, rev, value):
        """Deferred new revision of the file."""
        try:
            check_path(path, self.limits.max_path, self.limits.max_depth)
            if len(value) > self.limits.max_value:
                raise DoozerError(ErrCode.OTHER, "value too large")
        except DoozerError as e:
            return defer.fail(e)
        return self._write(SetFile(path, rev, bytes(value)))

    def delete(self, path, rev):
        """Deferred revision of the deletion."""
        try:
            check_path(path, self.limits.max_path, self.limits.max_depth)
        except DoozerError as e:
            return defer.fail(e)
        return self._write(DeleteFile(path, rev))

    def nop(self):
        """Deferred None once a round trip through the commit path completes."""
        return self.proposer.propose(Nop()).addCallback(lambda _: None)

    def _write(self, mutation):
        self.stats.writes += 1
        if not self.proposal_observers:
            return self.proposer.propose(mutation).addCallback(self._outcome)
        started = self._seconds()
        d = self.proposer.propose(mutation)
        return d.addBoth(self._observe_latency, started).addCallback(self._outcome)

    def _seconds(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor.seconds()

    def _observe_latency(self, result, started):
        seconds = self._seconds() - started
        for observer in list(self.proposal_observers):
            try:
                observer(seconds)
            except Exception:
                self.log.failure("proposal observer failed")
        return result

    def _outcome(self, outcome):
        if outcome.error is not None:
            self.stats.write_errors += 1
            raise DoozerError(outcome.error)
        return outcome.rev

    # -- backup ------------------------------------------------------------

    def backup(self):
        """The store as a backup file's bytes (doozertw.persist.backup), at
        the revision it has now: built synchronously, so consistent."""
        from doozertw.persist.backup import Backup, encode_backup
        index, term = self.raft_position() if self.raft_position is not None else (0, 0)
        return encode_backup(Backup(
            cluster=self.cluster_name, node=self.name, revision=self.store.rev,
            store_snapshot=self.store.snapshot(), raft_index=index, raft_term=term,
            taken_at_ms=int(time.time() * 1000)))

    def _watch_failed(self, what, watch, exc):
        self.log.failure("store.watch.failed: {watch!r} {what}", Failure(exc),
                         watch=watch, what=what)

    # -- cluster self-description -------------------------------------------

    def describe_self(self, client_addr, hostname=None, voter_slot=None):
        """Write this node's entries under /ctl as doozerd does.

        ``voter_slot`` n (a node that is a cluster by itself: its only
        voter and so its leader) also writes this node's id into /ctl/cal/n
        and /ctl/leader. Returns a Deferred that fires when all are written.
        """
        prefix = f"/ctl/node/{self.name}"
        entries = [
            ("/ctl/name", self.cluster_name),
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


__all__ = ["ANY", "LocalProposer", "Node", "compile_glob"]
