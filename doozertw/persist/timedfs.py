"""A FileSystem that times its fsyncs for the caller's metrics.

The storage (doozertw.persist.storage, .wal, .durable) reads no clock: it
is handed a FileSystem and calls ``fsync`` on its handles and
``fsync_dir``. ``TimedFileSystem(inner, clock, on_fsync)`` wraps the
FileSystem it is handed; every fsync of a file or a directory calls
``on_fsync(seconds)`` once it has returned, with ``clock()`` read before
and after (the caller owns the clock: ``time.monotonic`` for a real node,
a fake one in tests). A failed fsync reports nothing and raises as before.
Everything else reaches ``inner`` unchanged (its simulation controls too).
"""

from __future__ import annotations

from typing import Any, Callable


class _TimedHandle:
    def __init__(self, inner, fs: TimedFileSystem):
        self._inner = inner
        self._fs = fs

    def fsync(self) -> None:
        self._fs.timed(self._inner.fsync)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedFileSystem:
    """See the module docstring."""

    def __init__(self, inner, clock: Callable[[], float],
                 on_fsync: Callable[[float], Any]):
        self.inner = inner
        self.clock = clock
        self.on_fsync = on_fsync

    def timed(self, fsync: Callable[[], Any]) -> None:
        started = self.clock()
        fsync()
        self.on_fsync(self.clock() - started)

    def open_append(self, path: str) -> _TimedHandle:
        return _TimedHandle(self.inner.open_append(path), self)

    def fsync_dir(self, path: str) -> None:
        self.timed(lambda: self.inner.fsync_dir(path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


__all__ = ["TimedFileSystem"]
