"""The few file-system calls the storage needs, real and simulated.

``OsFileSystem`` makes real calls. ``LazyFileSystem`` keeps everything in
memory and models what survives a power cut, the way LazyFS does:

- a file's bytes are durable only up to its last ``fsync`` (``crash()``
  brings every file back to its synced content, truncations included);
- a name (create, rename, remove) is durable only after ``fsync_dir`` of
  its directory; until then a crash brings back the old name table of that
  directory. Directories themselves (``makedirs``) are durable at once, a
  deliberate simplification.

Fault injection: ENOSPC after N more written bytes (the write that crosses
the limit writes what fits, then raises, like a short ``write(2)``), EIO
on the next fsync or the next write. Errors are ``OSError`` with the errno
the kernel would give.
"""

from __future__ import annotations

import errno
import fcntl
import os
import posixpath
from typing import Protocol


class FileHandle(Protocol):
    """A file opened for appending."""

    def write(self, data: bytes) -> None:
        """Append all of ``data`` (raises OSError, possibly after a part)."""

    def fsync(self) -> None:
        """Make the file's content durable."""

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes (not durable until fsync)."""

    def close(self) -> None:
        """Release the handle (idempotent)."""


class Lock(Protocol):
    def release(self) -> None:
        """Give the lock up (idempotent)."""


class FileSystem(Protocol):
    """What DiskStorage needs from a file system; paths are strings."""

    def open_append(self, path: str) -> FileHandle:
        """Open ``path`` for appending, creating it if missing."""

    def read_file(self, path: str) -> bytes:
        """The whole content of ``path``."""

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename, replacing ``dst``."""

    def remove(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]:
        """Sorted names in directory ``path``."""

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents; no error if it exists."""

    def fsync_dir(self, path: str) -> None:
        """Make creations, renames and removals in ``path`` durable."""

    def exists(self, path: str) -> bool: ...

    def isdir(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def lock(self, path: str) -> Lock:
        """Exclusive advisory lock on ``path`` (created if missing); raises
        OSError(EWOULDBLOCK) at once if someone else holds it."""


# -- the real thing ------------------------------------------------------------


class _OsHandle:
    def __init__(self, path):
        self._fd = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def fsync(self):
        os.fsync(self._fd)

    def truncate(self, size):
        os.ftruncate(self._fd, size)

    def close(self):
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _OsLock:
    def __init__(self, path):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise

    def release(self):
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class OsFileSystem:
    """Real files: O_APPEND writes, os.fsync, directory fsync through an
    O_RDONLY descriptor, fcntl.flock locks."""

    def open_append(self, path):
        return _OsHandle(path)

    def read_file(self, path):
        with open(path, "rb") as f:
            return f.read()

    def rename(self, src, dst):
        os.rename(src, dst)

    def remove(self, path):
        os.remove(path)

    def listdir(self, path):
        return sorted(os.listdir(path))

    def makedirs(self, path):
        os.makedirs(path, exist_ok=True)

    def fsync_dir(self, path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def exists(self, path):
        return os.path.exists(path)

    def isdir(self, path):
        return os.path.isdir(path)

    def size(self, path):
        return os.path.getsize(path)

    def lock(self, path):
        return _OsLock(path)


# -- the simulation -------------------------------------------------------------


class SimulatedCrash(Exception):
    """LazyFileSystem.crash_at_fsync fired: the 'process' is dead."""


def _oserror(code, path):
    return OSError(code, os.strerror(code), path)


class _Inode:
    __slots__ = ("data", "synced")

    def __init__(self):
        self.data = bytearray()
        self.synced = b""


class _LazyHandle:
    def __init__(self, fs, inode, path):
        self._fs = fs
        self._inode = inode
        self._path = path
        self._epoch = fs._epoch
        self._open = True

    def _check(self):
        if not self._open or self._epoch != self._fs._epoch:
            raise _oserror(errno.EBADF, self._path)

    def write(self, data):
        self._check()
        part, error = self._fs._take_space(bytes(data), self._path)
        self._inode.data += part
        if error is not None:
            raise error

    def fsync(self):
        self._check()
        self._fs._fsync_check(self._path)
        self._inode.synced = bytes(self._inode.data)

    def truncate(self, size):
        self._check()
        del self._inode.data[size:]

    def close(self):
        self._open = False


class _LazyLock:
    def __init__(self, fs, path):
        self._fs = fs
        self._path = path

    def release(self):
        self._fs._locks.discard(self._path)


class LazyFileSystem:
    """In-memory file system that can lose unsynced data (see module doc)."""

    def __init__(self):
        self._dirs = {"/"}
        self._names: dict[str, _Inode] = {}     # what the process sees
        self._durable: dict[str, _Inode] = {}   # what survives crash()
        self._locks: set[str] = set()
        self._epoch = 0
        self._space = None
        self._fail_fsync = False
        self._fail_write = False
        self._crash_countdown = 0
        self.crashes = 0

    # -- fault injection ---------------------------------------------------

    def fail_writes_with_enospc_after(self, nbytes: int) -> None:
        """Let ``nbytes`` more bytes be written, then raise ENOSPC."""
        self._space = nbytes

    def clear_enospc(self) -> None:
        self._space = None

    def fail_next_fsync_with_eio(self) -> None:
        """The next fsync (file or directory) raises EIO and syncs nothing."""
        self._fail_fsync = True

    def fail_next_write_with_eio(self) -> None:
        self._fail_write = True

    def crash_at_fsync(self, n: int) -> None:
        """The ``n``-th fsync from now (1 = the next; file or directory)
        crashes instead: ``crash()`` runs, then SimulatedCrash is raised,
        standing for the process dying."""
        self._crash_countdown = n

    def crash(self) -> None:
        """Power cut: keep only synced bytes and dir-fsynced names; every
        open handle and lock dies with the process."""
        self._names = dict(self._durable)
        for inode in set(self._names.values()):
            inode.data = bytearray(inode.synced)
        self._locks.clear()
        self._epoch += 1
        self._fail_fsync = self._fail_write = False
        self._space = None
        self._crash_countdown = 0
        self.crashes += 1

    def durable_content(self, path: str) -> bytes | None:
        """What ``path`` would hold after a crash now (None: absent)."""
        inode = self._durable.get(self._norm(path))
        return None if inode is None else inode.synced

    def corrupt(self, path: str, content: bytes) -> None:
        """Test helper: replace a file's content, synced and durable."""
        inode = self._names[self._norm(path)]
        inode.data = bytearray(content)
        inode.synced = bytes(content)

    def _take_space(self, data, path):
        """(the part of ``data`` that gets written, the error to raise)."""
        if self._fail_write:
            self._fail_write = False
            return b"", _oserror(errno.EIO, path)
        if self._space is None or len(data) <= self._space:
            if self._space is not None:
                self._space -= len(data)
            return data, None
        fits, self._space = self._space, 0
        return data[:fits], _oserror(errno.ENOSPC, path)

    def _fsync_check(self, path):
        if self._crash_countdown:
            self._crash_countdown -= 1
            if not self._crash_countdown:
                self.crash()
                raise SimulatedCrash(f"crashed at fsync of {path}")
        if self._fail_fsync:
            self._fail_fsync = False
            raise _oserror(errno.EIO, path)

    # -- FileSystem --------------------------------------------------------

    @staticmethod
    def _norm(path):
        return posixpath.normpath(posixpath.join("/", str(path)))

    def _parent_must_exist(self, path):
        parent = posixpath.dirname(path)
        if parent not in self._dirs:
            raise _oserror(errno.ENOENT, parent)

    def open_append(self, path):
        path = self._norm(path)
        if path in self._dirs:
            raise _oserror(errno.EISDIR, path)
        self._parent_must_exist(path)
        inode = self._names.get(path)
        if inode is None:
            inode = self._names[path] = _Inode()
        return _LazyHandle(self, inode, path)

    def read_file(self, path):
        path = self._norm(path)
        try:
            return bytes(self._names[path].data)
        except KeyError:
            raise _oserror(errno.ENOENT, path) from None

    def rename(self, src, dst):
        src, dst = self._norm(src), self._norm(dst)
        if src not in self._names:
            raise _oserror(errno.ENOENT, src)
        self._parent_must_exist(dst)
        self._names[dst] = self._names.pop(src)

    def remove(self, path):
        path = self._norm(path)
        if self._names.pop(path, None) is None:
            raise _oserror(errno.ENOENT, path)

    def listdir(self, path):
        path = self._norm(path)
        if path not in self._dirs:
            raise _oserror(errno.ENOENT, path)
        names = {posixpath.basename(p) for p in self._names
                 if posixpath.dirname(p) == path}
        names.update(posixpath.basename(d) for d in self._dirs
                     if d != "/" and posixpath.dirname(d) == path)
        return sorted(names)

    def makedirs(self, path):
        path = self._norm(path)
        while path not in self._dirs:
            if path in self._names:
                raise _oserror(errno.ENOTDIR, path)
            self._dirs.add(path)
            path = posixpath.dirname(path)

    def fsync_dir(self, path):
        path = self._norm(path)
        if path not in self._dirs:
            raise _oserror(errno.ENOENT, path)
        self._fsync_check(path)
        for p in [p for p in self._durable if posixpath.dirname(p) == path]:
            del self._durable[p]
        for p, inode in self._names.items():
            if posixpath.dirname(p) == path:
                self._durable[p] = inode

    def exists(self, path):
        path = self._norm(path)
        return path in self._names or path in self._dirs

    def isdir(self, path):
        return self._norm(path) in self._dirs

    def size(self, path):
        path = self._norm(path)
        try:
            return len(self._names[path].data)
        except KeyError:
            raise _oserror(errno.ENOENT, path) from None

    def lock(self, path):
        path = self._norm(path)
        if path in self._locks:
            raise _oserror(errno.EWOULDBLOCK, path)
        self.open_append(path).close()
        self._locks.add(path)
        return _LazyLock(self, path)

