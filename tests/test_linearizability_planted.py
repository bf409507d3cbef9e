"""The checker on histories of real fault runs (tests/histories/).

``planted-*.jsonl`` come from fault runs of a scratch copy with a bug
planted (docs/testing.md, "Fault runs that can see stale reads"), shrunk
with ``python -m doozertw.testing.history_file``: (b) the leader answering
ReadIndex without a quorum round, under ``linger-leader`` and
``isolate-leader``; (a) a follower releasing a read before applying up to
its read index, under ``isolate-follower``; (d) lease reads whose ticks do
not catch up with real time (a leader paused past its lease wakes up still
holding it), under ``linger-leader``. Each must be not linearizable,
because of a stale read: without that read it is linearizable.
``correct-linger-leader.jsonl`` is a window (two keys) of a run of the
correct code under the stale-read faults: linearizable.
"""

import math
import random
from pathlib import Path

import pytest

from doozertw.testing.history import Operation
from doozertw.testing.history_file import (
    decode_op, dump_history, encode_op, load_history, restrict, shrink)
from doozertw.testing.linearizability import Verdict, check
from doozertw.testing.models import UNKNOWN, Cas, DoozerModel, Read, Write

HISTORIES = Path(__file__).parent / "histories"
PLANTED = sorted(p.name for p in HISTORIES.glob("planted-*.jsonl"))


def stores(op):
    """The value an acknowledged write or successful CAS stored, else None."""
    if isinstance(op.input, Write) and not op.unknown:
        return op.input.value
    if isinstance(op.input, Cas) and op.output is True:
        return op.input.new
    return None


def verdict(history):
    return check(list(history), DoozerModel(), timeout=60).verdict


def test_every_planted_bug_has_a_history():
    assert {name.split("-")[1] for name in PLANTED} == {"a", "b", "d"}


@pytest.mark.parametrize("name", PLANTED)
def test_planted_bug_histories_are_not_linearizable_because_of_a_stale_read(name):
    history = load_history(HISTORIES / name)
    result = check(history, DoozerModel(), timeout=60)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    stale = result.violation.op
    assert isinstance(stale.input, Read) and not stale.unknown
    # another value was stored in that key, after the value read was, and
    # acknowledged before the read was invoked
    stored = {stores(op): op for op in history if stores(op) is not None}
    # the value read may come from a write whose client never heard back
    # (it took effect: it was read)
    source = stored.get(stale.output) or next(
        op for op in history if isinstance(op.input, Write) and op.input.value == stale.output)
    assert any(value != stale.output and op.ret < stale.call and op.call > source.call
               for value, op in stored.items())
    assert verdict(op for op in history if op is not stale) is Verdict.LINEARIZABLE


def test_a_correct_run_under_the_stale_read_faults_is_linearizable():
    history = load_history(HISTORIES / "correct-linger-leader.jsonl")
    assert len(history) > 100
    assert verdict(history) is Verdict.LINEARIZABLE


def test_history_lines_round_trip(tmp_path):
    ops = [Operation("1.0", 1.0, 2.0, Read("/k"), None),
           Operation("1.0", 2.5, 3.0, Read("/k"), b"v1"),
           Operation("2.0", 0.5, 1.5, Write("/k", b"v1"), None),
           Operation("2.1", 1.6, math.inf, Write("/k", b"v2"), UNKNOWN),
           Operation("3.0", 3.5, 4.0, Cas("/k", b"v1", b"v3"), True),
           Operation("3.0", 4.5, 5.0, Cas("/k", None, b"v4"), False)]
    assert [decode_op(encode_op(op)) for op in ops] == ops
    dump_history(reversed(ops), tmp_path / "h.jsonl")
    assert load_history(tmp_path / "h.jsonl") == sorted(ops, key=lambda op: op.call)
    with pytest.raises(ValueError):
        encode_op(Operation("1.0", 1.0, 2.0, "GET /k", None))


def test_restricting_a_linearizable_history_keeps_it_linearizable():
    history = load_history(HISTORIES / "correct-linger-leader.jsonl")
    first, last = history[0].call, history[-1].call
    rng = random.Random(4)
    for _ in range(20):
        start = rng.uniform(first, last)
        window = restrict(history, "/lin/k0", start, start + rng.uniform(0.01, 1.0))
        assert {op.input.key for op in window} <= {"/lin/k0"}
        assert verdict(window) is Verdict.LINEARIZABLE


def test_restrict_brings_in_the_writes_of_what_the_window_read():
    old = Operation("1.0", 0.0, 1.0, Write("/k", b"old"), None)
    other = Operation("1.0", 1.5, 2.0, Write("/k", b"other"), None)
    new = Operation("2.0", 2.5, 3.0, Write("/k", b"new"), None)
    failed = Operation("3.0", 9.0, 9.5, Cas("/k", b"gone", b"x"), False)
    stale = Operation("3.0", 10.0, 11.0, Read("/k"), b"old")
    window = restrict([old, other, new, failed, stale], "/k", 9.0, 12.0)
    assert window == [old, stale]  # its write, not unrelated ones
    assert verdict(window) is Verdict.LINEARIZABLE  # no newer write kept
    window = restrict([old, other, new, failed, stale], "/k", 2.0, 12.0)
    assert window == [old, other, new, stale] and verdict(window) is Verdict.NOT_LINEARIZABLE


def test_shrink_finds_a_small_failing_window_of_a_long_history():
    ops = []
    for i in range(300):
        ops.append(Operation("w", 2 * i, 2 * i + 0.5, Write("/k", f"v{i}".encode()), None))
        ops.append(Operation("r", 2 * i + 1, 2 * i + 1.5, Read("/k"), f"v{i}".encode()))
    ops.append(Operation("r", 600, 601, Read("/k"), b"v250"))  # stale
    window, violation = shrink(ops)
    assert violation is not None and violation.op == ops[-1]
    assert len(window) < 10 and verdict(window) is Verdict.NOT_LINEARIZABLE
    assert shrink(ops[:-1]) == (ops[:-1], None)
