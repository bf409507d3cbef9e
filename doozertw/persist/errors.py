"""Errors raised by the on-disk storage.

``StorageFull`` is recoverable (nothing was changed, retry later); the other
three are fatal for the node: it must stop and an operator must look.
"""


class StorageError(Exception):
    """Base class of every persist error."""


class StorageFull(StorageError):
    """ENOSPC: the partial write was rolled back, nothing on disk or in
    memory changed; the same operation may be retried once space is free."""


class StorageFailed(StorageError):
    """EIO or a failed fsync: what reached the disk is unknown. The storage
    object refuses every later call; the node must stop (never retry an
    fsync: the kernel may have dropped the dirty pages)."""


class CorruptLog(StorageError):
    """Recovery found damage that is not a torn tail: a bad record before the
    end, a missing segment or snapshot. The message names file and offset."""


class DataDirError(StorageError):
    """The data directory is missing, incomplete, locked by another process,
    or belongs to another cluster, node or format version."""
