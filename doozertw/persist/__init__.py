"""Durable storage for a node: a segmented write-ahead log plus snapshot
files in a data directory (see ``storage.DiskStorage``)."""

from doozertw.persist.errors import (
    CorruptLog, DataDirError, StorageFailed, StorageFull,
)
from doozertw.persist.fs import FileSystem, LazyFileSystem, OsFileSystem
from doozertw.persist.meta import DataDirMeta
from doozertw.persist.storage import DiskStorage, StorageStats

__all__ = [
    "CorruptLog", "DataDirError", "DataDirMeta", "DiskStorage", "FileSystem",
    "LazyFileSystem", "OsFileSystem", "StorageFailed", "StorageFull",
    "StorageStats",
]
