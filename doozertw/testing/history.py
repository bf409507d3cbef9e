"""Concurrent histories: operations with call and return times.

An ``Operation`` is one client call: who made it, when it was invoked, when
it returned, its input (an attrs class from ``doozertw.testing.models``) and
its observed output. An operation whose outcome is unknown (timed out,
connection lost, Jepsen ``:info``) has ``ret == math.inf`` and
``output is UNKNOWN``: it may or may not have taken effect, and it stays
concurrent with everything invoked after it. Operations that definitely did
not take effect (Jepsen ``:fail``, a doozer error reply) are not recorded.

Times are any totally ordered numbers (log line numbers, monotonic seconds).
Two operations are ordered in real time only when one's ``ret`` is strictly
less than the other's ``call``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Hashable, Iterable

import attrs

from doozertw.testing.models import (
    UNKNOWN, Append, Cas, Get, Put, Read, Write,
)


@attrs.frozen
class Operation:
    """One client call. ``ret`` is ``math.inf`` when the outcome is unknown."""

    client: Hashable
    call: float
    ret: float
    input: Any
    output: Any

    @property
    def unknown(self) -> bool:
        return self.output is UNKNOWN

    def describe(self) -> str:
        ret = "?" if self.ret == math.inf else f"{self.ret:g}"
        return (f"client {self.client} [{self.call:g}, {ret}] "
                f"{self.input!r} -> {self.output!r}")


def unknown_outcome(client, call, inp) -> Operation:
    """An operation whose outcome was never observed."""
    return Operation(client=client, call=call, ret=math.inf, input=inp,
                     output=UNKNOWN)


class HistoryRecorder:
    """Collects operations as a test driver issues and completes calls.

    Times are passed in by the caller (e.g. ``clock.seconds()``) so this
    stays deterministic. ``invoke`` returns a token; finish it with exactly
    one of ``ok`` (observed output), ``failed`` (definitely not applied: the
    op is dropped) or ``unknown``. Calls never finished count as unknown.
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[Hashable, float, Any]] = {}
        self._done: list[Operation] = []
        self._next = 0

    def invoke(self, client: Hashable, inp: Any, now: float) -> int:
        token = self._next
        self._next += 1
        self._pending[token] = (client, now, inp)
        return token

    def ok(self, token: int, output: Any, now: float) -> None:
        client, call, inp = self._pending.pop(token)
        if now < call:
            raise ValueError("operation returned before it was invoked")
        self._done.append(Operation(client, call, now, inp, output))

    def failed(self, token: int) -> None:
        self._pending.pop(token)

    def unknown(self, token: int) -> None:
        client, call, inp = self._pending.pop(token)
        self._done.append(unknown_outcome(client, call, inp))

    def history(self) -> tuple[Operation, ...]:
        """Completed operations plus still-pending ones as unknown."""
        pending = [unknown_outcome(c, t, i)
                   for c, t, i in self._pending.values()]
        return tuple(sorted(self._done + pending, key=lambda op: op.call))


# --- Jepsen single-register logs ---------------------------------------

_JEPSEN_LINE = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)"
    r"\s+:(read|write|cas)\s*(.*?)\s*$")


def _jepsen_value(text: str):
    if text == "nil":
        return None
    if text.startswith("["):
        a, b = text.strip("[]").split()
        return (int(a), int(b))
    if text.startswith(":"):
        return UNKNOWN
    return int(text)


def _jepsen_input(f: str, value):
    if f == "read":
        return Read(None)
    if f == "write":
        return Write(None, value)
    expected, new = value
    return Cas(None, expected, new)


def parse_jepsen_log(source: str | Path | Iterable[str], *,
                     failed_cas_as_mismatch: bool = False,
                     ) -> tuple[Operation, ...]:
    """Parse a Jepsen cas-register log (``INFO jepsen.util - P :type :f v``).

    ``source`` is a path, the log text (a str containing newlines) or an
    iterable of lines. Time is the line number. ``:ok`` completes the process's pending call;
    ``:info`` (or no completion at all) makes its outcome unknown; ``:fail``
    drops it: it did not happen. With ``failed_cas_as_mismatch`` a failed
    cas is instead kept as a cas that observed a mismatch (output False).
    """
    pending: dict[int, tuple[int, str, Any]] = {}
    ops: list[Operation] = []
    for lineno, line in enumerate(_lines(source)):
        m = _JEPSEN_LINE.match(line)
        if m is None:
            continue
        process, kind, f = int(m.group(1)), m.group(2), m.group(3)
        value = _jepsen_value(m.group(4)) if m.group(4) else None
        if kind == "invoke":
            if process in pending:
                raise ValueError(f"line {lineno}: process {process} "
                                 "invoked twice")
            pending[process] = (lineno, f, _jepsen_input(f, value))
            continue
        call, pf, inp = pending.pop(process)
        if pf != f:
            raise ValueError(f"line {lineno}: {f} completes a {pf}")
        if kind == "ok":
            out = value if f == "read" else (True if f == "cas" else None)
            ops.append(Operation(process, call, lineno, inp, out))
        elif kind == "info":
            ops.append(unknown_outcome(process, call, inp))
        elif f == "cas" and failed_cas_as_mismatch:
            ops.append(Operation(process, call, lineno, inp, False))
    for call, _f, inp in pending.values():
        ops.append(unknown_outcome(-1, call, inp))
    return tuple(sorted(ops, key=lambda op: op.call))


# --- porcupine-style kv histories -------------------------------------

_KV_LINE = re.compile(
    r'^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append),'
    r' :key "([^"]*)", :value (nil|"[^"]*")\}\s*$')

_KV_INPUTS = {"get": Get, "put": Put, "append": Append}


def parse_kv_history(source: str | Path | Iterable[str],
                     ) -> tuple[Operation, ...]:
    """Parse a kv history (``{:process P, :type :T, :f :F, :key "K",
    :value V}`` per line). Time is the line number; same completion rules
    as ``parse_jepsen_log``."""
    pending: dict[int, tuple[int, Any]] = {}
    ops: list[Operation] = []
    for lineno, line in enumerate(_lines(source)):
        if not line.strip():
            continue
        m = _KV_LINE.match(line)
        if m is None:
            raise ValueError(f"line {lineno}: cannot parse {line!r}")
        process, kind, f, key, raw = m.groups()
        process = int(process)
        value = None if raw == "nil" else raw[1:-1]
        if kind == "invoke":
            inp = Get(key) if f == "get" else _KV_INPUTS[f](key, value)
            pending[process] = (lineno, inp)
            continue
        call, inp = pending.pop(process)
        if kind == "ok":
            out = value if f == "get" else None
            ops.append(Operation(process, call, lineno, inp, out))
        elif kind == "info":
            ops.append(unknown_outcome(process, call, inp))
    for call, inp in pending.values():
        ops.append(unknown_outcome(-1, call, inp))
    return tuple(sorted(ops, key=lambda op: op.call))


def _lines(source) -> Iterable[str]:
    if isinstance(source, Path) or (isinstance(source, str)
                                    and "\n" not in source):
        return Path(source).read_text().splitlines()
    if isinstance(source, str):
        return source.splitlines()
    return source
