"""Shared low-level steps: counted writes and fsyncs, atomic file replace.

An fsync that fails raises ``StorageFailed`` at once: after a failed fsync
the kernel may have dropped the dirty pages, so retrying could report
success for data that is gone (the "fsyncgate" lesson). Write errors stay
``OSError`` so the caller can tell ENOSPC (roll back, retry later) from
the rest.
"""

from __future__ import annotations

from doozertw.persist.errors import StorageFailed


class StorageStats:
    """Counters for benchmarks and status pages (monotonic)."""

    __slots__ = ("fsyncs", "bytes_written", "records_written")

    def __init__(self):
        self.fsyncs = 0
        self.bytes_written = 0
        self.records_written = 0

    def __repr__(self):
        return (f"StorageStats(fsyncs={self.fsyncs}, bytes_written="
                f"{self.bytes_written}, records_written={self.records_written})")


def write(handle, data: bytes, stats: StorageStats) -> None:
    handle.write(data)
    stats.bytes_written += len(data)


def sync_file(handle, path: str, stats: StorageStats) -> None:
    """fsync ``handle``; any failure is StorageFailed."""
    try:
        handle.fsync()
    except OSError as exc:
        raise StorageFailed(f"{path}: fsync failed: {exc}") from exc
    stats.fsyncs += 1


def sync_dir(fs, directory: str, stats: StorageStats) -> None:
    """fsync a directory; any failure is StorageFailed."""
    try:
        fs.fsync_dir(directory)
    except OSError as exc:
        raise StorageFailed(f"{directory}: directory fsync failed: {exc}") \
            from exc
    stats.fsyncs += 1


def remove_quietly(fs, path: str) -> None:
    try:
        fs.remove(path)
    except OSError:
        pass


def write_durably(fs, directory: str, name: str, data: bytes,
                  stats: StorageStats) -> None:
    """Create or replace ``directory/name`` atomically and durably: write
    ``name.tmp``, fsync, rename, fsync the directory. On a write error the
    tmp file is removed and the OSError propagates."""
    final = f"{directory}/{name}"
    tmp = final + ".tmp"
    if fs.exists(tmp):
        fs.remove(tmp)
    handle = fs.open_append(tmp)
    try:
        write(handle, data, stats)
        sync_file(handle, tmp, stats)
    except OSError:
        handle.close()
        remove_quietly(fs, tmp)
        raise
    finally:
        handle.close()
    fs.rename(tmp, final)
    sync_dir(fs, directory, stats)
