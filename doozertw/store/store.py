"""The versioned tree with a bounded history window (pure).

The store applies mutations one at a time; each successful SET or DEL takes
the next revision, so revisions grow by one per change. It keeps the events
of the last ``history`` revisions (and at most ``history_bytes`` of their
paths and values) so that reads at a past revision and watches from a past
revision can be answered; older revisions give TOO_LATE.

Depth is the front ends' policy (``paths.check_path``, ``Limits.max_depth``):
the store checks only the byte limit, on reads and on apply alike, so a log
replays the same whatever the configured depth.

Contract for reads: ``rev=None`` means the current revision; a revision above
the current one is the caller's to wait for (``call_when_applied``); reading
it here raises ValueError.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import TypeAlias

import attrs

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import paths
from doozertw.store import snapshot as _snapshot
from doozertw.store import txn as _txn
from doozertw.store.leases import LeaseTable
from doozertw.store.mutation import (
    CLOBBER, DEL, DIR, SET, Compare, DeleteFile, Event, GrantLease, Mutation, Nop, Outcome,
    RevokeLease, SetFile, Txn)
from doozertw.store.paths import Glob
from doozertw.store.tree import Tree
from doozertw.store.watches import Reporter, Watch, WatchRegistry

DEFAULT_HISTORY = 10_000
DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024
_EVENT_OVERHEAD = 64

_File: TypeAlias = tuple[bytes, int]
"""A file's (value, rev)."""
_Version: TypeAlias = tuple[int, bytes | None]
"""(rev, value) of one change to a path; value None: deleted at rev."""


def _first_key(entry: _Version) -> int:
    return entry[0]


class Store:
    """Files, directories, revisions, history and watches."""

    def __init__(self, history: int = DEFAULT_HISTORY,
                 history_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        if history < 1:
            raise ValueError("history must keep at least one revision")
        self.history = history
        self.history_bytes = history_bytes
        self.rev = 0
        self.floor = 0
        self._files: dict[str, _File] = {}
        self._tree = Tree()
        self._versions: dict[str, list[_Version]] = {}
        self._log: deque[Event] = deque()
        self._log_bytes = 0
        self._sorted_files: list[str] | None = None
        self._watches = WatchRegistry()
        self._rev_waiters: list[tuple[int, int, RevWaiter]] = []
        self._waiter_seq = 0
        self._pending_waiters = 0
        self.leases = LeaseTable()
        """The leases and the files they own (read it; change it by applying)."""

    # -- sizes -------------------------------------------------------------

    @property
    def file_count(self) -> int:
        return len(self._files)

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    def report_failures_to(self, report: Reporter) -> None:
        """``report(what, watch, exc)`` hears of every watch or revision
        waiter that raised (they are ended, never allowed to reach apply)."""
        self._watches.report = report

    @property
    def watch_failures(self) -> int:
        """Watches ended because their callback raised (see watches.py)."""
        return self._watches.failures

    # -- mutations ---------------------------------------------------------

    def apply(self, mutation: Mutation) -> Outcome:
        """Apply one mutation; notify watches; return its Outcome.

        Raises only TypeError for a non-mutation: a watch callback or a
        ``call_when_applied`` callback that raises is logged and isolated
        (the watch ends with on_error), never propagated to the caller.
        """
        if isinstance(mutation, SetFile):
            outcome = self._apply_set(mutation)
        elif isinstance(mutation, DeleteFile):
            outcome = self._apply_del(mutation)
        elif isinstance(mutation, Nop):
            return Outcome(rev=self.rev)
        elif isinstance(mutation, GrantLease):
            return self._apply_grant(mutation)
        elif isinstance(mutation, RevokeLease):
            return self._apply_revoke(mutation)
        elif isinstance(mutation, Txn):
            return self._apply_txn(mutation)
        else:
            raise TypeError(f"not a mutation: {mutation!r}")
        if outcome.event is not None:
            self._record((outcome.event,))
        return outcome

    def _check_write(self, path: str, rev: int) -> ErrCode | None:
        if not paths.is_valid_path(path):
            return ErrCode.BAD_PATH
        if self._tree.is_dir(path):
            return ErrCode.ISDIR
        current = self._files.get(path)
        if rev != CLOBBER and rev < (current[1] if current else 0):
            return ErrCode.REV_MISMATCH
        return None

    def _check_set(self, m: SetFile) -> ErrCode | None:
        error = self._check_write(m.path, m.rev)
        if error is None and self._tree.under_file(m.path):
            error = ErrCode.NOTDIR
        if error is None and m.lease and m.lease not in self.leases:
            error = ErrCode.NOENT
        return error

    def _apply_set(self, m: SetFile) -> Outcome:
        """Check and apply a SET; the caller records its event."""
        error = self._check_set(m)
        if error is not None:
            return Outcome(rev=self.rev, error=error)
        return self._do_set(m, self.rev + 1)

    def _do_set(self, m: SetFile, rev: int) -> Outcome:
        if m.path not in self._files:
            self._link(m.path)
        self._remember(m.path)
        self._files[m.path] = (m.value, rev)
        self._versions[m.path].append((rev, m.value))
        self.leases.attach(m.path, m.lease)
        return Outcome(rev=rev, event=Event(rev, m.path, m.value, SET))

    def _apply_del(self, m: DeleteFile) -> Outcome:
        error = self._check_write(m.path, m.rev)
        if error is not None:
            return Outcome(rev=self.rev, error=error)
        return self._do_del(m.path, self.rev + 1)

    def _do_del(self, path: str, rev: int) -> Outcome:
        self._remember(path)
        if self._files.pop(path, None) is not None:
            self._unlink(path)
            self.leases.detach(path)
        self._versions[path].append((rev, None))
        return Outcome(rev=rev, event=Event(rev, path, b"", DEL))

    # -- leases and transactions -------------------------------------------

    def _apply_grant(self, m: GrantLease) -> Outcome:
        if m.ttl < 1:
            return Outcome(rev=self.rev, error=ErrCode.RANGE)
        if m.lease in self.leases:
            return Outcome(rev=self.rev, error=ErrCode.REV_MISMATCH)
        return Outcome(rev=self.rev, lease=self.leases.grant(m.lease, m.ttl))

    def _apply_revoke(self, m: RevokeLease) -> Outcome:
        """Delete the lease's files in walk order, then notify, so that no
        watcher or waiter runs while only some of them are gone."""
        if m.lease not in self.leases:
            return Outcome(rev=self.rev, error=ErrCode.NOENT)
        events = []
        for i, path in enumerate(self.leases.remove(m.lease)):
            event = self._do_del(path, self.rev + 1 + i).event
            assert event is not None
            events.append(event)
        return self._finish(events, Outcome(rev=self.rev + len(events), lease=m.lease))

    def _apply_txn(self, m: Txn) -> Outcome:
        """Compares, then every op of the chosen branch checked before any
        applies; events recorded and notified only after the last."""
        for compare in m.compares:
            error = _txn.check_compare(compare)
            if error is not None:
                return Outcome(rev=self.rev, error=error)
        succeeded = all(self._holds(c) for c in m.compares)
        ops = m.success if succeeded else m.failure
        error = _txn.check_ops_disjoint(ops)
        for op in ops:
            if error is not None:
                break
            if isinstance(op, SetFile):
                error = self._check_set(op)
            else:
                error = self._check_write(op.path, op.rev)
        if error is not None:
            return Outcome(rev=self.rev, error=error, succeeded=succeeded)
        events: list[Event] = []
        revs = []
        for op in ops:
            rev = self.rev + len(events) + 1
            if isinstance(op, SetFile):
                done = self._do_set(op, rev)
            elif op.path in self._files:
                done = self._do_del(op.path, rev)
            else:
                revs.append(0)
                continue
            assert done.event is not None
            events.append(done.event)
            revs.append(rev)
        outcome = Outcome(rev=self.rev + len(events), succeeded=succeeded, revs=tuple(revs))
        return self._finish(events, outcome)

    def _holds(self, compare: Compare) -> bool:
        found = self._files.get(compare.path)
        if compare.value is not None:
            return found is not None and found[0] == compare.value
        if found is not None:
            return bool(found[1] == compare.rev)
        return compare.rev == 0 and not self._tree.is_dir(compare.path)

    def _finish(self, events: list[Event], outcome: Outcome) -> Outcome:
        if events:
            self._record(tuple(events))
        return attrs.evolve(outcome, events=tuple(events))


    def _remember(self, path: str) -> None:
        """Make sure the path's version list starts from its current state."""
        if path not in self._versions:
            current = self._files.get(path)
            self._versions[path] = [(current[1], current[0])] if current else []

    def _link(self, path: str) -> None:
        self._sorted_files = None
        self._tree.link(path)

    def _unlink(self, path: str) -> None:
        self._sorted_files = None
        self._tree.unlink(path)

    def _record(self, events: tuple[Event, ...]) -> None:
        """Log consecutive events, then notify watches of each in order, then
        wake revision waiters: every callback sees all of them applied."""
        for event in events:
            self._log.append(event)
            self._log_bytes += len(event.value) + len(event.path) + _EVENT_OVERHEAD
        self.rev = events[-1].rev
        self._prune()
        for event in events:
            self._watches.notify(event)
        self._wake_rev_waiters()

    def _prune(self) -> None:
        while len(self._log) > 1 and (
                len(self._log) > self.history or self._log_bytes > self.history_bytes):
            old = self._log.popleft()
            self._log_bytes -= len(old.value) + len(old.path) + _EVENT_OVERHEAD
            self.floor = old.rev
            versions = self._versions[old.path]
            cut = bisect_right(versions, old.rev, key=_first_key) - 1
            del versions[:cut]
            if len(versions) == 1:
                del self._versions[old.path]

    # -- reads -------------------------------------------------------------

    def _at(self, rev: int | None) -> int:
        if rev is None:
            return self.rev
        if rev > self.rev:
            raise ValueError(f"revision {rev} is not applied yet")
        if rev < self.floor:
            raise DoozerError(ErrCode.TOO_LATE, f"revision {rev} is older than {self.floor}")
        return rev

    def _lookup(self, path: str, rev: int) -> _File | None:
        if rev >= self.rev:
            return self._files.get(path)
        versions = self._versions.get(path)
        if versions is None:
            return self._files.get(path)
        i = bisect_right(versions, rev, key=_first_key) - 1
        if i < 0:
            return None
        found_rev, value = versions[i]
        return None if value is None else (value, found_rev)

    def _entries(self, path: str, rev: int) -> list[str]:
        """Sorted names in directory ``path`` at ``rev``; empty if not a directory."""
        if rev >= self.rev:
            return self._tree.entries(path)
        prefix = path if path == paths.ROOT else path + "/"
        names: set[str] = set()
        for p in self._candidates():
            if p.startswith(prefix) and self._lookup(p, rev) is not None:
                names.add(p[len(prefix):].split("/", 1)[0])
        return sorted(names)

    def _candidates(self) -> set[str]:
        return self._files.keys() | self._versions.keys()

    def get(self, path: str, rev: int | None = None) -> tuple[bytes, int]:
        """(value, rev) of a file; (b"", 0) if missing; ISDIR for a directory."""
        paths.check_path(path, max_depth=None)
        rev = self._at(rev)
        found = self._lookup(path, rev)
        if found is not None:
            return found
        if path == paths.ROOT or self._entries(path, rev):
            raise DoozerError(ErrCode.ISDIR, path)
        return b"", 0

    def stat(self, path: str, rev: int | None = None) -> tuple[int, int]:
        """(length, rev): a file's size and revision; a directory's entry count and DIR."""
        paths.check_path(path, max_depth=None)
        rev = self._at(rev)
        found = self._lookup(path, rev)
        if found is not None:
            return len(found[0]), found[1]
        entries = self._entries(path, rev)
        if entries or path == paths.ROOT:
            return len(entries), DIR
        return 0, 0

    def getdir(self, path: str, rev: int | None = None, offset: int = 0) -> str:
        """The ``offset``-th name (sorted) in directory ``path``."""
        paths.check_path(path, max_depth=None)
        rev = self._at(rev)
        if self._lookup(path, rev) is not None:
            raise DoozerError(ErrCode.NOTDIR, path)
        entries = self._entries(path, rev)
        if not entries and path != paths.ROOT:
            raise DoozerError(ErrCode.NOENT, path)
        if not 0 <= offset < len(entries):
            raise DoozerError(ErrCode.RANGE, f"offset {offset}")
        return entries[offset]

    def walk(self, glob: Glob, rev: int | None = None, offset: int = 0) -> Event:
        """The ``offset``-th file matching ``glob`` in depth-first order, as a SET Event."""
        rev = self._at(rev)
        if offset < 0:
            raise DoozerError(ErrCode.RANGE, f"offset {offset}")
        for path in self._matching(glob, rev):
            found = self._lookup(path, rev)
            if found is None:
                continue
            if offset == 0:
                return Event(found[1], path, found[0], SET)
            offset -= 1
        raise DoozerError(ErrCode.RANGE, "no more matches")

    def _matching(self, glob: Glob, rev: int) -> list[str]:
        if glob.literal is not None:
            return [glob.literal]
        if rev >= self.rev:
            if self._sorted_files is None:
                self._sorted_files = sorted(self._files, key=paths.sort_key)
            candidates = self._sorted_files
        else:
            candidates = sorted(self._candidates(), key=paths.sort_key)
        return [p for p in candidates if glob.match(p)]

    def files(self, glob: Glob = paths.ANY, rev: int | None = None) -> list[Event]:
        """Every file matching ``glob`` at ``rev`` as SET Events, in walk order."""
        rev = self._at(rev)
        out = []
        for path in self._matching(glob, rev):
            found = self._lookup(path, rev)
            if found is not None:
                out.append(Event(found[1], path, found[0], SET))
        return out

    # -- snapshots ---------------------------------------------------------

    def snapshot(self) -> bytes:
        """The files, revision and history window as bytes (no watches).

        The encoding is ``snapshot.py``'s DZS2: the tree at ``floor`` plus
        the log of events floor+1 .. rev. ``history`` and ``history_bytes``
        are configuration and are not included.
        """
        image = _snapshot.SnapshotImage(
            rev=self.rev, floor=self.floor, files=self._files_at_floor(),
            events=tuple(self._log), leases=tuple(self.leases.items()),
            attached=tuple(self.leases.attachments()), next_lease=self.leases.next_id)
        return _snapshot.encode(image)

    def _files_at_floor(self) -> tuple[tuple[str, bytes, int], ...]:
        """(path, value, rev) of every file as it was at ``floor``, sorted by path."""
        tree = {p: f for p, f in self._files.items() if p not in self._versions}
        for path in self._versions:
            found = self._lookup(path, self.floor)
            if found is not None:
                tree[path] = found
        return tuple((p, tree[p][0], tree[p][1]) for p in sorted(tree))

    def restore(self, data: bytes) -> None:
        """Replace the contents with a snapshot, history window included.

        Afterwards reads at any revision in [floor, rev] and watches from
        any revision above floor answer as the snapshotted store did, and
        the next change takes rev + 1. This store's own ``history`` and
        ``history_bytes`` apply: a longer log is trimmed (floor rises). A
        DZS1 snapshot carries no history: floor = rev.

        Live watches would miss the revisions the snapshot skips, so if the
        snapshot is ahead each ends with ``on_error(DoozerError(TOO_LATE))``
        instead of a silent gap; at the same revision they stay. Raises
        DoozerError(OTHER), changing nothing, for bytes that are not a
        consistent snapshot or for a snapshot older than this store.
        """
        image = _snapshot.decode(data)
        if image.rev < self.rev:
            raise DoozerError(ErrCode.OTHER, f"snapshot at {image.rev} is older than {self.rev}")
        loaded = Store(self.history, self.history_bytes)
        loaded._load(image)
        if image.rev > self.rev:
            skipped = DoozerError(ErrCode.TOO_LATE, f"revisions up to {image.rev} were skipped")
            for watch in self._watches.all():
                watch.fail(skipped)
        self._files, self._tree = loaded._files, loaded._tree
        self._versions, self._sorted_files = loaded._versions, None
        self._log, self._log_bytes = loaded._log, loaded._log_bytes
        self.rev, self.floor = loaded.rev, loaded.floor
        self.leases = loaded.leases
        self._wake_rev_waiters()

    def _load(self, image: _snapshot.SnapshotImage) -> None:
        """Fill this new, empty store from a decoded snapshot by replaying its log.

        The replay runs the ordinary apply path, so versions, byte counts
        and the history trim come out as if the events had just happened.
        Raises DoozerError(OTHER) if the tree or an event is inconsistent.
        """
        for path, value, rev in image.files:
            if (path in self._files or self._tree.is_dir(path)
                    or self._tree.under_file(path)):
                raise DoozerError(ErrCode.OTHER, f"bad snapshot: {path} clashes with a file")
            self._files[path] = (value, rev)
            self._link(path)
        self.rev = self.floor = image.floor
        for event in image.events:
            if event.is_set:
                outcome = self.apply(SetFile(event.path, CLOBBER, event.value))
            else:
                outcome = self.apply(DeleteFile(event.path, CLOBBER))
            if outcome.event != event:
                raise DoozerError(ErrCode.OTHER, f"bad snapshot: event {event.rev} does not apply")
        self._load_leases(image)

    def _load_leases(self, image: _snapshot.SnapshotImage) -> None:
        for lease, ttl in image.leases:
            if lease in self.leases or lease >= image.next_lease or ttl < 1:
                raise DoozerError(ErrCode.OTHER, f"bad snapshot: lease {lease}")
            self.leases.grant(lease, ttl)
        self.leases.next_id = image.next_lease
        for path, lease in image.attached:
            if path not in self._files or lease not in self.leases:
                raise DoozerError(ErrCode.OTHER, f"bad snapshot: {path} in lease {lease}")
            self.leases.attach(path, lease)

    # -- waiting -----------------------------------------------------------

    def add_watch(self, glob: Glob, from_rev: int, callback: Callable[[Event], object],
                  on_error: Callable[[DoozerError], object] | None = None) -> Watch:
        """Deliver every event matching ``glob`` with rev >= ``from_rev`` to ``callback``.

        Events already in the history are replayed synchronously before this
        returns, then live events follow, in revision order with no gaps.
        Raises TOO_LATE if ``from_rev`` is older than the history window. If
        the watch can no longer be served without a gap (the store was
        replaced by a snapshot), it ends with ``on_error(DoozerError)``.
        A callback that raises (during the replay too) ends its watch the
        same way, with DoozerError(OTHER); the returned watch is then inactive.
        """
        from_rev = self._check_watch_start(from_rev)
        watch = Watch(glob, callback, from_rev, on_error)
        watch._registry = self._watches  # counts a replay failure; removal is a no-op
        if from_rev <= self.rev:
            start = len(self._log) - (self.rev - from_rev + 1)
            for i in range(start, len(self._log)):
                event = self._log[i]
                if watch.active and glob.match(event.path):
                    watch.deliver(event)
        if watch.active:
            self._watches.add(watch)
        return watch

    def first_event(self, glob: Glob, from_rev: int) -> Event | None:
        """The first event in history matching ``glob`` with rev >= ``from_rev``.

        None if there is none yet (a live watch would be next); TOO_LATE if
        ``from_rev`` is older than the history window.
        """
        from_rev = self._check_watch_start(from_rev)
        for i in range(len(self._log) - max(0, self.rev - from_rev + 1), len(self._log)):
            event = self._log[i]
            if glob.match(event.path):
                return event
        return None

    def _check_watch_start(self, from_rev: int) -> int:
        from_rev = max(from_rev, 1)
        if from_rev <= self.floor:
            raise DoozerError(
                ErrCode.TOO_LATE, f"revision {from_rev} is older than {self.floor + 1}")
        return from_rev

    def call_when_applied(self, rev: int, callback: Callable[[], object]) -> RevWaiter:
        """Call ``callback()`` once the store reaches ``rev`` (now, if it has).

        Returns a RevWaiter whose ``cancel()`` drops the callback; cancelled
        waiters are removed without waiting for their revision.
        """
        waiter = RevWaiter(rev, callback)
        if rev <= self.rev:
            callback()
            return waiter
        self._waiter_seq += 1
        heapq.heappush(self._rev_waiters, (rev, self._waiter_seq, waiter))
        self._pending_waiters += 1
        waiter._store = self
        return waiter

    @property
    def rev_waiter_count(self) -> int:
        return self._pending_waiters

    def _waiter_cancelled(self) -> None:
        self._pending_waiters -= 1
        if len(self._rev_waiters) > 64 and len(self._rev_waiters) > 2 * self._pending_waiters:
            self._rev_waiters = [w for w in self._rev_waiters if w[2].callback is not None]
            heapq.heapify(self._rev_waiters)

    def _wake_rev_waiters(self) -> None:
        waiters = self._rev_waiters
        while waiters and waiters[0][0] <= self.rev:
            waiter = heapq.heappop(waiters)[2]
            callback, waiter.callback = waiter.callback, None
            if callback is not None:
                self._pending_waiters -= 1
                try:
                    callback()
                except Exception as exc:
                    self._watches.report(f"revision waiter at {waiter.rev} raised", None, exc)


class RevWaiter:
    """A callback waiting for the store to reach a revision."""

    __slots__ = ("rev", "callback", "_store")

    def __init__(self, rev: int, callback: Callable[[], object]) -> None:
        self.rev = rev
        self.callback: Callable[[], object] | None = callback
        self._store: Store | None = None

    def cancel(self) -> None:
        """Drop the callback (idempotent); it will not be called."""
        if self.callback is not None:
            self.callback = None
            if self._store is not None:
                self._store._waiter_cancelled()
