"""A text-protocol watcher for the benchmark's watch rows.

``UnitParser`` is pure: bytes in, units out (``Reply``, ``Event``,
``WatchEnded``), its buffer bounded. It reads what a connection that sends
only single-line-answered commands (``watch``, ``unwatch``, ``rev``)
receives: one-line ``OK``/``ERR`` replies and the ``EVENT`` units of
docs/protocol.md ("Watch events")::

    EVENT <id> set <rev> <path> <len>\\r\\n<value>\\r\\n
    EVENT <id> del <rev> <path> 0\\r\\n\\r\\n
    EVENT <id> ERROR <NAME> <detail>\\r\\n

``TextWatcher`` is the thin edge: one connection, one ``watch GLOB REV``,
each event's latency taken from the perf_counter stamp its value starts
with (``doozertw.bench.paced_stamps``).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet import defer
from twisted.internet.protocol import Protocol

from doozertw.bench import _STAMP

#: Bytes in one reply or event header line, its line end excluded (the
#: server's own ``max_line`` is 8192 and a path at most 4096 bytes).
MAX_LINE = 8192
#: Bytes in one event's value (the server's default ``max_value``, 1 MiB).
MAX_VALUE = 1024 * 1024
#: Digits in a number (an id, a revision, a length).
MAX_DIGITS = 19


class UnitError(ValueError):
    """What the server sent is not a unit of the text protocol (or is
    beyond the parser's bounds); the connection cannot be read further."""


@attrs.frozen
class Reply:
    """A one-line reply, its line end removed: ``OK WATCHING 1``, ``ERR ...``."""

    line: bytes

    @property
    def ok(self) -> bool:
        return self.line == b"OK" or self.line.startswith(b"OK ")


@attrs.frozen
class Event:
    """A change seen by watch ``watch``: ``kind`` is "set" or "del"."""

    watch: int
    kind: str
    rev: int
    path: bytes
    value: bytes


@attrs.frozen
class WatchEnded:
    """``EVENT <id> ERROR <NAME> <detail>``: the server ended watch ``watch``."""

    watch: int
    name: str
    detail: str


Unit = Reply | Event | WatchEnded


def _number(word: bytes, what: str) -> int:
    if not (0 < len(word) <= MAX_DIGITS and word.isdigit()):
        raise UnitError(f"bad {what}: {word[:40]!r}")
    return int(word)


class UnitParser:
    """Splits the bytes a watching connection receives into units.

    ``feed(data)`` returns the units completed by ``data``, in order; a
    partial unit stays buffered. The buffer never holds more than one
    partial unit: a line longer than ``max_line`` bytes or an event value
    longer than ``max_value`` raises UnitError, as does anything that is
    not a unit; after a UnitError the parser refuses further input.
    """

    def __init__(self, max_line: int = MAX_LINE, max_value: int = MAX_VALUE) -> None:
        self.max_line = max_line
        self.max_value = max_value
        self._buf = bytearray()
        self._header: tuple[int, str, int, bytes, int] | None = None
        self._broken: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a partial unit (once an event's header line is
        read, of its value and line end only)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Unit]:
        if self._broken is not None:
            raise UnitError(f"parser stopped: {self._broken}")
        self._buf += data
        try:
            return self._parse(self._buf)
        except UnitError as e:
            self._broken, self._buf = str(e), bytearray()
            raise

    def _parse(self, buf: bytearray) -> list[Unit]:
        units: list[Unit] = []
        pos = 0
        while True:
            if self._header is not None:           # waiting for a value
                length = self._header[4]
                end = pos + length
                if len(buf) < end + 2:
                    break
                if buf[end:end + 2] != b"\r\n":
                    raise UnitError("event value not followed by CRLF")
                watch, kind, rev, path, _ = self._header
                units.append(Event(watch, kind, rev, path, bytes(buf[pos:end])))
                self._header, pos = None, end + 2
                continue
            nl = buf.find(b"\n", pos, pos + self.max_line + 2)
            if nl < 0:
                if len(buf) - pos > self.max_line + 1:
                    raise UnitError(f"line longer than {self.max_line} bytes")
                break
            line = bytes(buf[pos:nl - 1] if nl > pos and buf[nl - 1] == 0x0D else buf[pos:nl])
            if len(line) > self.max_line:
                raise UnitError(f"line longer than {self.max_line} bytes")
            pos = nl + 1
            unit = self._line(line)
            if unit is not None:
                units.append(unit)
        del buf[:pos]
        return units

    def _line(self, line: bytes) -> Unit | None:
        """A complete unit, or None once an event header awaits its value."""
        if line.startswith(b"EVENT "):
            words = line.split(b" ", 3)
            if len(words) < 4:
                raise UnitError(f"short EVENT line: {line[:80]!r}")
            watch = _number(words[1], "watch id")
            if words[2] == b"ERROR":
                name, _, detail = words[3].partition(b" ")
                return WatchEnded(watch, name.decode("ascii", "replace"),
                                  detail.decode("ascii", "replace"))
            self._header = self._event_header(watch, words[2], words[3])
            return None
        if line == b"OK" or line.startswith((b"OK ", b"ERR ")):
            return Reply(line)
        raise UnitError(f"not a reply or an event: {line[:80]!r}")

    def _event_header(self, watch: int, kind: bytes,
                      rest: bytes) -> tuple[int, str, int, bytes, int]:
        if kind not in (b"set", b"del"):
            raise UnitError(f"bad event kind: {kind[:20]!r}")
        rev_word, _, tail = rest.partition(b" ")
        path, _, length_word = tail.rpartition(b" ")
        if not path.startswith(b"/"):
            raise UnitError(f"bad event path: {path[:80]!r}")
        length = _number(length_word, "value length")
        if length > self.max_value:
            raise UnitError(f"event value of {length} bytes (max {self.max_value})")
        return watch, kind.decode("ascii"), _number(rev_word, "revision"), path, length


class TextWatcher(Protocol):
    """One text-protocol connection holding one ``watch glob rev``.

    ``watching`` fires (with True) at ``OK WATCHING``, or with False if
    the watch was refused or the connection ended first. Each event adds
    ``now() - stamp`` to ``stats.latencies`` (``now`` read once per
    arrival); a refused or ended watch, a value too short for a stamp and
    unreadable input count in ``stats.errors`` (unreadable input also
    drops the connection), a connection lost before ``close`` in
    ``stats.lost``. ``stats`` is a ``doozertw.bench.Stats``."""

    def __init__(self, glob: bytes, rev: int, now: Callable[[], float], stats: Any) -> None:
        self.glob, self.rev, self.now, self.stats = glob, rev, now, stats
        self.parser = UnitParser()
        self.watching: defer.Deferred[bool] = defer.Deferred()
        self.closing = False

    def connectionMade(self) -> None:
        transport: Any = self.transport      # zope interfaces are opaque to mypy
        transport.write(b"watch %s %d\r\n" % (self.glob, self.rev))

    def dataReceived(self, data: bytes) -> None:
        arrived = self.now()
        try:
            units = self.parser.feed(data)
        except UnitError:
            self.stats.errors += 1
            self.close()
            return
        for unit in units:
            if isinstance(unit, Event):
                if len(unit.value) < _STAMP.size:
                    self.stats.errors += 1
                else:
                    self.stats.latencies.append(arrived - _STAMP.unpack_from(unit.value)[0])
            elif isinstance(unit, WatchEnded):
                self.stats.errors += 1
            else:
                if not unit.ok:
                    self.stats.errors += 1
                self._answered(unit.line.startswith(b"OK WATCHING "))

    def _answered(self, ok: bool) -> None:
        if not self.watching.called:
            self.watching.callback(ok)

    def connectionLost(self, reason: object = None) -> None:
        if not self.closing:
            self.stats.lost += 1
        self._answered(False)

    def close(self) -> None:
        """Drop the connection (an expected end: not counted as lost)."""
        self.closing = True
        if self.transport is not None:
            self.transport.abortConnection()
