"""Doozer histories on disk (one JSON object per line), and shrinking them.

A fault run writes the history it checked as ``history.jsonl`` into its
report; planted-bug runs kept as regression material under
``tests/histories/`` use the same format. One line per ``Operation`` of
the doozer model (``Read``, ``Write``, ``Cas``)::

    {"client": "3.0", "call": 12.5, "ret": 12.51, "f": "read",
     "key": "/lin/k3", "out": "w4-17"}

``ret`` is null for an operation whose outcome is unknown (its ``out`` is
then absent). Values are text (the workload writes ASCII); a missing file
reads as null. ``f`` is ``read`` (``out``: the value), ``write``
(``value``) or ``cas`` (``expected``, ``value``; ``out``: true/false).

``restrict(history, key, start, end)`` cuts a failing history down to a
window that still fails: the operations on ``key`` overlapping
[start, end] (failed CAS dropped), plus, from anywhere in the history, the
writes and successful CAS whose values those operations read or expect.
Such a subset is linearizable whenever the whole history is (restrict a
linearization of the whole: every read still follows the write of the
value it returned with no write between; a dropped failed CAS changed
nothing), so a restricted history that is not linearizable proves the
whole one is not. ``shrink`` widens the window around the checker's
violation until the restricted history fails; ``python -m
doozertw.testing.history_file REPORT/history.jsonl OUT.jsonl`` does that
for a fault run's report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from doozertw.testing.history import Operation, unknown_outcome
from doozertw.testing.linearizability import Verdict, Violation, check
from doozertw.testing.models import Cas, DoozerModel, Read, Write


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8")


def encode_op(op: Operation) -> dict:
    """The JSON object of one doozer-model operation."""
    inp = op.input
    if not isinstance(inp, (Read, Write, Cas)):
        raise ValueError(f"not a doozer-model operation: {inp!r}")
    line: dict[str, Any] = {"client": str(op.client), "call": op.call,
                            "ret": None if op.unknown else op.ret,
                            "key": inp.key}
    if isinstance(inp, Read):
        line["f"] = "read"
    elif isinstance(inp, Write):
        line.update(f="write", value=_text(inp.value))
    else:
        line.update(f="cas", expected=_text(inp.expected), value=_text(inp.new))
    if not op.unknown:
        line["out"] = op.output if isinstance(op.output, bool) else _text(op.output)
    return line


def decode_op(line: dict) -> Operation:
    """The ``Operation`` of one JSON object (see the module docstring)."""
    f = line["f"]
    if f == "read":
        inp: Any = Read(line["key"])
    elif f == "write":
        inp = Write(line["key"], _bytes(line["value"]))
    elif f == "cas":
        inp = Cas(line["key"], _bytes(line["expected"]), _bytes(line["value"]))
    else:
        raise ValueError(f"unknown operation {f!r}")
    if line["ret"] is None:
        return unknown_outcome(line["client"], line["call"], inp)
    out = line["out"]
    if not isinstance(out, bool):
        out = _bytes(out)
    return Operation(line["client"], line["call"], line["ret"], inp, out)


def dump_history(history: Iterable[Operation], path: str | Path) -> None:
    """Write ``history`` to ``path``, one JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for op in history:
            f.write(json.dumps(encode_op(op), sort_keys=True) + "\n")


def load_history(path: str | Path) -> list[Operation]:
    """Read a history written by ``dump_history``, ordered by call time."""
    with open(path, encoding="utf-8") as f:
        ops = [decode_op(json.loads(line)) for line in f if line.strip()]
    return sorted(ops, key=lambda op: op.call)


def _written(op: Operation) -> bytes | None:
    """The value ``op`` may have stored (None if it stores nothing)."""
    if isinstance(op.input, Write):
        return op.input.value
    if isinstance(op.input, Cas) and op.output is not False:
        return op.input.new
    return None


def _needed(op: Operation) -> bytes | None:
    """The value ``op`` saw: read, or expected by a CAS that succeeded."""
    if isinstance(op.input, Read) and not op.unknown:
        return op.output
    if isinstance(op.input, Cas) and op.output is True:
        return op.input.expected
    return None


def restrict(history: Sequence[Operation], key: str, start: float,
             end: float) -> list[Operation]:
    """The failing-window subset of ``history`` (module docstring)."""
    ops = [op for op in history if op.input.key == key]
    writers = {_written(op): op for op in ops if _written(op) is not None}
    chosen = {id(op): op for op in ops
              if op.call <= end and op.ret >= start
              and not (isinstance(op.input, Cas) and op.output is False)}
    todo = list(chosen.values())
    while todo:
        writer = writers.get(_needed(todo.pop()))
        if writer is not None and id(writer) not in chosen:
            chosen[id(writer)] = writer
            todo.append(writer)
    return sorted(chosen.values(), key=lambda op: op.call)


def shrink(history: Sequence[Operation],
           timeout: float = 60.0) -> tuple[list[Operation], Violation | None]:
    """The smallest ``restrict`` window (doubling from 0.25s before the
    checker's violation) that is still not linearizable, with its
    violation; the history itself (and None) when it is linearizable."""
    result = check(list(history), DoozerModel(), timeout=timeout)
    if result.violation is None:
        return list(history), None
    op = result.violation.op
    end = op.call if op.unknown else op.ret
    width = 0.25
    while True:
        window = restrict(history, op.input.key, op.call - width, end)
        found = check(window, DoozerModel(), timeout=timeout)
        if found.verdict is Verdict.NOT_LINEARIZABLE or width > end - history[0].call:
            return window, found.violation
        width *= 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m doozertw.testing.history_file IN.jsonl OUT.jsonl``:
    write ``shrink`` of IN to OUT; exit status 1 if IN is linearizable."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit("usage: python -m doozertw.testing.history_file "
                         "IN.jsonl OUT.jsonl")
    history = load_history(args[0])
    window, violation = shrink(history)
    if violation is None:
        print(f"{args[0]}: linearizable, nothing to shrink")
        return 1
    dump_history(window, args[1])
    print(f"{len(history)} -> {len(window)} operations\n{violation.describe()}")
    return 0


__all__ = ["decode_op", "dump_history", "encode_op", "load_history",
           "restrict", "shrink"]


if __name__ == "__main__":
    sys.exit(main())
