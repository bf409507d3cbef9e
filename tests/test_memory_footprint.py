"""Memory footprint of a node's data (issue 12): bytes per file, measured
with tracemalloc (deterministic object sizes, generous bounds), and the
allocator hooks that give freed snapshot buffers back to the OS."""

from __future__ import annotations

import gc
import platform
import tracemalloc

from doozertw.cluster import envelope as env
from doozertw.cluster.dedup import EntryApplier
from doozertw.cluster.persister import ThreadPersister
from doozertw.consensus.messages import Entry, Snapshot, SnapshotMeta
from doozertw.persist import allocator
from doozertw.store import CLOBBER, SetFile, Store
from doozertw.store import encode as encode_mutation

FILES = 5_000
VALUE = 100
HISTORY = 100
"""A short history window: the per-file cost of a big store, not of its
last 10,000 revisions (each kept revision also holds an event)."""


def _traced(build):
    """(bytes still allocated by ``build()`` once it returned, its result)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


def _entry(i: int) -> Entry:
    mutation = encode_mutation(SetFile(f"/mem/f{i}", CLOBBER, b"v" * VALUE))
    data = env.Proposal(f"n{i % 3}~0123456789abcdef", i // 3 + 1, mutation).encode()
    return Entry(1, i + 1, data=data)


def test_store_costs_under_600_bytes_per_100_byte_file():
    def build():
        store = Store(history=HISTORY)
        for i in range(FILES):
            store.apply(SetFile(f"/mem/f{i}", CLOBBER, bytes(bytearray(b"v" * VALUE))))
        return store

    size, store = _traced(build)
    assert store.file_count == FILES
    # measured ~380: value 144, path 64, (value, rev) 64, rev 32, dict
    # slots, the tree's leaf name and slot (issue 12)
    assert size / FILES < 600


def test_applied_entries_keep_no_copy_of_the_log():
    """Applying proposals through EntryApplier keeps the store's value and
    the dedup table's pid, not the entry, its envelope or its mutation."""
    def build():
        applier = EntryApplier(Store(history=HISTORY))
        for i in range(FILES):
            applier.apply(_entry(i))
        return applier

    size, applier = _traced(build)
    assert applier.store.file_count == FILES
    # measured ~500 (the store's ~380 and the dedup table's pid); a kept
    # entry (~240 bytes here) would break this
    assert size / FILES < 650


def test_release_and_tune_ask_glibc_only_there():
    glibc = platform.libc_ver()[0] == "glibc"
    assert allocator.release() is glibc
    assert allocator.tune() is glibc


def test_big_freed_buffers_leave_no_traced_memory_behind():
    """What release() hands back must be free: a snapshot-sized buffer
    built and dropped leaves nothing allocated."""
    def build():
        store = Store()
        for i in range(2000):
            store.apply(SetFile(f"/mem/f{i}", CLOBBER, b"v" * VALUE))
        store.snapshot()
        allocator.release()
        return store

    size, _ = _traced(build)
    assert size / 2000 < 800


class _Reactor:
    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))


class _Storage:
    def __init__(self):
        self.compacted = []
        self.closed = False

    def compact(self, snapshot):
        self.compacted.append(snapshot)
        return "done"

    def close(self):
        self.closed = True


def test_thread_persister_releases_memory_after_compacting(monkeypatch):
    released = []
    monkeypatch.setattr(allocator, "release", lambda: released.append(True) or True)
    reactor, storage = _Reactor(), _Storage()
    persister = ThreadPersister(storage, reactor)
    snap = Snapshot(SnapshotMeta(index=5, term=1), b"data")
    d = persister.compact(snap)
    persister.close()
    assert storage.compacted == [snap] and storage.closed
    assert released == [True]
    (f, args), = reactor.calls
    f(*args)
    assert d.result == "done"


def test_thread_persister_does_not_release_when_compaction_fails(monkeypatch):
    released = []
    monkeypatch.setattr(allocator, "release", lambda: released.append(True) or True)

    class Failing(_Storage):
        def compact(self, snapshot):
            raise OSError("EIO")

    reactor = _Reactor()
    persister = ThreadPersister(Failing(), reactor)
    d = persister.compact(Snapshot())
    persister.close()
    (f, args), = reactor.calls
    f(*args)
    assert released == []
    failures = []
    d.addErrback(failures.append)
    (failure,) = failures
    assert failure.check(OSError)


def test_thread_persister_releases_memory_after_a_received_snapshot(monkeypatch):
    released = []
    monkeypatch.setattr(allocator, "release", lambda: released.append(True) or True)

    class Saving(_Storage):
        def __init__(self):
            super().__init__()
            self.saved = []

        def save(self, ready):
            self.saved.append(ready)

    class Ready:
        def __init__(self, snapshot):
            self.snapshot = snapshot

    storage, reactor = Saving(), _Reactor()
    persister = ThreadPersister(storage, reactor)
    plain, received = Ready(None), Ready(Snapshot(SnapshotMeta(index=9, term=2), b"x"))
    persister.save(plain)
    persister.close()
    assert released == []
    persister = ThreadPersister(storage, reactor)
    persister.save(received)
    persister.close()
    assert storage.saved == [plain, received]
    assert released == [True]
