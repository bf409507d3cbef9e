"""Storage providers: where a cluster node keeps its Raft state.

The driver asks its provider for the storage of a member id when Raft
starts (``for_member``); the provider decides whether that is memory or a
data directory, and how calls reach it (inline, or a writer thread).

- ``MemoryProvider`` (``--in-memory``): nothing survives a restart; a node
  that restarts comes back under a new incarnation (doozer's behaviour;
  unsafe if a majority restarts at once).
- ``DiskProvider`` (``--data-dir``): a DiskStorage (doozertw.persist) in the
  node's data directory, written by a ThreadPersister. ``existing()``
  returns the member id recorded in a directory that holds Raft state: such
  a node resumes under that id and never founds a cluster.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from typing import TYPE_CHECKING

from twisted.logger import Logger

from doozertw.cluster.persister import InlinePersister, ThreadPersister
from doozertw.consensus import HardState, MemoryStorage
from doozertw.status import Durations

if TYPE_CHECKING:
    from doozertw.persist.storage import DiskStorage


def is_disk_full(exc: BaseException) -> bool:
    """Is ``exc`` a full disk (retry later) rather than a failed one?"""
    from doozertw.persist.errors import StorageFull
    return isinstance(exc, StorageFull) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def is_fresh(storage) -> bool:
    """True if ``storage`` holds no Raft state at all (never voted, never
    stored an entry or a snapshot)."""
    return (storage.last_index() == 0 and storage.snapshot.index == 0
            and storage.hard_state == HardState())


DEFAULT_RESERVE = 16 * 1024 * 1024


def _remove_tree(fs, path):
    """Remove a data directory that holds no state (so it can be created
    afresh under another member id)."""
    rmtree = getattr(fs, "rmtree", None)
    if rmtree is not None:
        rmtree(path)
    else:
        shutil.rmtree(path)


class MemoryProvider:
    """In-memory storage, persisted inline."""

    durable = False
    fsync_seconds = None

    def existing(self) -> str | None:
        return None

    def space_low(self) -> bool:
        return False

    def for_member(self, member_id: str):
        storage = MemoryStorage()
        return storage, InlinePersister(storage)


class DiskProvider:
    """A data directory for node ``node`` of cluster ``cluster``.

    ``threaded=False`` persists inline (tests on a deterministic clock).
    ``fsync_seconds`` (a doozertw.status.Durations) times every fsync of the
    directory, read on ``clock`` (default ``time.monotonic``) around the
    call by a TimedFileSystem: the storage itself reads no clock.
    """

    durable = True
    log = Logger()

    def __init__(self, path, cluster: str, node: str, reactor, fs=None, threaded=True,
                 reserve_bytes=DEFAULT_RESERVE, free_bytes=None, clock=time.monotonic):
        from doozertw.persist.fs import OsFileSystem
        from doozertw.persist.timedfs import TimedFileSystem
        self.path = os.fspath(path)
        self.cluster = cluster
        self.node = node
        self.reactor = reactor
        self.fsync_seconds = Durations()
        self.fs = TimedFileSystem(fs if fs is not None else OsFileSystem(), clock,
                                  self.fsync_seconds.observe)
        self.threaded = threaded
        self.reserve_bytes = reserve_bytes
        self._free_bytes = free_bytes or self._statvfs_free
        self._opened: DiskStorage | None = None
        self._checked = False
        self._member_id: str | None = None

    def _statvfs_free(self) -> int:
        target = self.path if os.path.exists(self.path) else os.path.dirname(self.path) or "."
        st = os.statvfs(target)
        return st.f_bavail * st.f_frsize

    def space_low(self) -> bool:
        """Fewer than ``reserve_bytes`` free: new writes are refused so that
        the log's own records (votes, terms, no-ops) still fit."""
        try:
            return self._free_bytes() < self.reserve_bytes
        except OSError:
            return False

    def existing(self) -> str | None:
        """The member id of the Raft state in the data directory, or None
        if it holds none (raises DataDirError for a directory of another
        cluster, node or format). Opens it once; later calls answer the same."""
        if not self._checked:
            self._member_id = self._open_existing()
            self._checked = True
        return self._member_id

    def _open_existing(self) -> str | None:
        from doozertw.persist.storage import DiskStorage, has_state
        if not has_state(self.fs, self.path):
            return None
        storage = DiskStorage.open(self.fs, self.path, self.cluster, self.node)
        if is_fresh(storage):
            # created, but nothing was ever made durable in it: start afresh
            storage.close()
            _remove_tree(self.fs, self.path)
            self.log.info("{path}: empty data directory removed", path=self.path)
            return None
        self._opened = storage
        self.log.info("{path}: resuming as {member} (log to {last}, term {term})",
                      path=self.path, member=storage.meta.member_id,
                      last=storage.last_index(), term=storage.hard_state.term)
        return storage.meta.member_id

    def for_member(self, member_id: str):
        from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
        from doozertw.persist.storage import DiskStorage
        storage = self._opened
        if storage is None:
            storage = DiskStorage.create(self.fs, self.path, DataDirMeta(
                format_version=FORMAT_VERSION, cluster=self.cluster, node=self.node,
                member_id=member_id))
        elif storage.meta.member_id != member_id:
            raise ValueError(f"{self.path} holds member {storage.meta.member_id}, "
                             f"not {member_id}")
        self._opened = None
        if self.threaded:
            return storage, ThreadPersister(storage, self.reactor)
        return storage, InlinePersister(storage)


__all__ = ["DiskProvider", "MemoryProvider", "is_disk_full", "is_fresh"]
