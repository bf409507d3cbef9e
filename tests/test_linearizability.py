"""Tests for the history parsers, models and linearizability checker."""

import itertools
import random
import time
from pathlib import Path

import attrs
import pytest

from doozertw.testing.history import (
    HistoryRecorder, Operation, parse_jepsen_log, parse_kv_history,
    unknown_outcome,
)
from doozertw.testing.linearizability import Verdict, check
from doozertw.testing.models import (
    UNKNOWN, Append, Cas, Delete, DoozerModel, Get, KVModel, Put, Read,
    RegisterModel, Write,
)

HISTORIES = Path("/work/shared/histories")
JEPSEN = HISTORIES / "jepsen"
KV = HISTORIES / "kv"


def _expected():
    lines = (JEPSEN / "EXPECTED.txt").read_text().split("\n")
    return {int(n): v == "true" for n, v in (ln.split() for ln in lines if ln)}


def op(client, call, ret, inp, out=None):
    return Operation(client, call, ret, inp, out)


def kv_history(name):
    return parse_kv_history(KV / f"{name}.txt")


def jepsen_history(n, **kw):
    return parse_jepsen_log(JEPSEN / f"etcd_{n:03d}.log", **kw)


# --- known verdicts -----------------------------------------------------


@pytest.mark.parametrize("failed_cas_as_mismatch", [False, True])
def test_all_jepsen_histories_match_expected(failed_cas_as_mismatch):
    expected = _expected()
    assert len(expected) == 102
    assert sum(expected.values()) == 23
    wrong = {}
    for n, linearizable in expected.items():
        result = check(jepsen_history(
            n, failed_cas_as_mismatch=failed_cas_as_mismatch),
            RegisterModel(), timeout=30)
        if result.ok != linearizable or result.verdict is Verdict.UNKNOWN:
            wrong[n] = result.verdict
    assert wrong == {}


def test_jepsen_violation_names_an_operation_of_the_history():
    history = jepsen_history(0)
    result = check(history, RegisterModel())
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    v = result.violation
    assert v.op in history
    assert set(v.linearized) <= set(history)
    assert v.op not in v.linearized
    assert "cannot linearize" in result.describe()


@pytest.mark.parametrize("name", ["c01-ok", "c10-ok", "c50-ok"])
def test_kv_ok_histories_are_linearizable(name):
    result = check(kv_history(name), KVModel(), timeout=20)
    assert result.verdict is Verdict.LINEARIZABLE
    assert result.ok
    assert result.partitions == 10


@pytest.mark.parametrize("name", ["c01-bad", "c10-bad"])
def test_kv_bad_histories_are_not_linearizable(name):
    result = check(kv_history(name), KVModel(), timeout=20)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert not result.ok
    assert result.violation is not None


def test_kv_c50_bad_is_never_a_pass():
    result = check(kv_history("c50-bad"), KVModel(), timeout=10)
    assert result.verdict in (Verdict.NOT_LINEARIZABLE, Verdict.UNKNOWN)
    assert result.ok is False


# --- budgets ------------------------------------------------------------


def test_step_budget_gives_unknown_which_is_not_ok():
    result = check(kv_history("c50-ok"), KVModel(), max_steps=3000)
    assert result.verdict is Verdict.UNKNOWN
    assert result.ok is False
    assert result.violation is None


def test_deadline_and_timeout_follow_the_injected_clock():
    ticks = itertools.count(100, 0.5)
    clock = lambda: next(ticks)  # noqa: E731
    for limits in ({"deadline": 50.0}, {"timeout": 3.0}):
        result = check(kv_history("c50-ok"), KVModel(), clock=clock, **limits)
        assert result.verdict is Verdict.UNKNOWN and not result.ok
    assert check(kv_history("c50-ok"), KVModel(), clock=clock,
                 timeout=10**6).ok


# --- parsers ------------------------------------------------------------

JEPSEN_SAMPLE = """\
INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 2\t:invoke\t:write\t3
INFO  jepsen.util - 1\t:fail\t:cas\t[1 2]
INFO  jepsen.util - 2\t:info\t:write\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:ok\t:read\t1
INFO  jepsen.util - 4\t:invoke\t:read\tnil
"""


def test_parse_jepsen_log_completion_rules():
    ops = parse_jepsen_log(JEPSEN_SAMPLE)
    assert ops == (op(0, 0, 2, Write(None, 1)),
                   unknown_outcome(2, 3, Write(None, 3)),
                   op(3, 6, 7, Read(None), 1),
                   unknown_outcome(-1, 8, Read(None)))
    kept = parse_jepsen_log(JEPSEN_SAMPLE, failed_cas_as_mismatch=True)
    assert op(1, 1, 4, Cas(None, 1, 2), False) in kept


def test_parse_jepsen_tolerates_spaces_and_reads_files():
    ops = jepsen_history(100)  # this log separates fields with spaces
    assert len(ops) > 50 and any(type(o.input) is Cas for o in ops)


def test_parse_jepsen_rejects_mismatched_completion():
    with pytest.raises(ValueError):
        parse_jepsen_log("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
                         "INFO  jepsen.util - 0\t:ok\t:write\t1\n")


def test_parse_kv_history():
    text = (
        '{:process 0, :type :invoke, :f :put, :key "1", :value "a"}\n'
        '{:process 1, :type :invoke, :f :get, :key "1", :value nil}\n'
        '{:process 0, :type :ok, :f :put, :key "1", :value "a"}\n'
        '{:process 1, :type :ok, :f :get, :key "1", :value ""}\n'
        '{:process 2, :type :invoke, :f :append, :key "2", :value "b"}\n')
    assert parse_kv_history(text) == (
        op(0, 0, 2, Put("1", "a")), op(1, 1, 3, Get("1"), ""),
        unknown_outcome(-1, 4, Append("2", "b")))
    pytest.raises(ValueError, parse_kv_history, "{:process 0, :type :x}\n")


def test_recorder():
    rec = HistoryRecorder()
    a = rec.invoke("c1", Write("/x", b"1"), now=1.0)
    b = rec.invoke("c2", Read("/x"), now=1.5)
    c = rec.invoke("c3", Write("/x", b"2"), now=2.0)
    rec.invoke("c4", Delete("/x"), now=2.5)
    rec.ok(a, None, now=3.0)
    rec.ok(b, b"1", now=3.5)
    rec.failed(c)
    assert rec.history() == (op("c1", 1.0, 3.0, Write("/x", b"1")),
                             op("c2", 1.5, 3.5, Read("/x"), b"1"),
                             unknown_outcome("c4", 2.5, Delete("/x")))
    with pytest.raises(ValueError):
        rec.ok(rec.invoke("c5", Read("/x"), now=5.0), None, now=4.0)


def test_doozer_model_steps():
    m = DoozerModel()
    assert m.step(None, Read("/a"), None) == (True, None)
    assert m.step(None, Read("/a"), b"x") == (False, None)
    assert m.step(None, Write("/a", b"x"), None) == (True, b"x")
    assert m.step(None, Cas("/a", None, b"y"), True) == (True, b"y")
    assert m.step(b"x", Cas("/a", None, b"y"), True) == (False, b"x")
    assert m.step(b"x", Cas("/a", None, b"y"), False) == (True, b"x")
    assert m.step(b"x", Cas("/a", b"x", b"y"), UNKNOWN) == (True, b"y")
    assert m.step(b"x", Delete("/a"), None) == (True, None)
    assert m.partition_key(Write("/a", b"")) == "/a"
    with pytest.raises(TypeError):
        m.step(None, Get("/a"), None)


# --- hand-written histories ----------------------------------------------


def doozer(*ops):
    return check(ops, DoozerModel())


def test_sequential_history_is_linearizable():
    assert check([], DoozerModel()).ok
    assert doozer(op(1, 0, 1, Write("/a", b"1")),
                  op(2, 2, 3, Read("/a"), b"1"),
                  op(1, 4, 5, Cas("/a", b"1", b"2"), True),
                  op(2, 6, 7, Delete("/a")),
                  op(1, 8, 9, Read("/a"), None)).ok


def test_concurrent_read_may_see_either_value():
    base = [op(1, 0, 1, Write("/a", b"1")), op(1, 2, 5, Write("/a", b"2"))]
    for seen in (b"1", b"2"):
        assert doozer(*base, op(2, 3, 4, Read("/a"), seen)).ok
    assert not doozer(*base, op(2, 3, 4, Read("/a"), None)).ok


def test_touching_intervals_count_as_concurrent():
    assert doozer(op(1, 0, 2, Write("/a", b"1")),
                  op(2, 2, 3, Read("/a"), None)).ok


def test_unknown_write_must_be_assumed_to_have_happened():
    history = [op(1, 0, 1, Write("/a", b"1")),
               unknown_outcome(2, 2, Write("/a", b"2")),
               op(3, 5, 6, Read("/a"), b"2")]
    assert doozer(*history).ok
    known_failure = attrs.evolve(history[1], ret=3, output=None)
    assert doozer(history[0], known_failure, history[2]).ok
    assert not doozer(history[0], history[2]).ok


def test_unknown_write_may_take_effect_long_after_its_call():
    assert doozer(unknown_outcome(1, 0, Write("/a", b"late")),
                  op(2, 1, 2, Write("/a", b"1")),
                  op(3, 3, 4, Read("/a"), b"1"),
                  op(3, 10, 11, Read("/a"), b"late")).ok
    # The same write with a known (early) return cannot.
    assert not doozer(op(1, 0, 0.5, Write("/a", b"late")),
                      op(2, 1, 2, Write("/a", b"1")),
                      op(3, 3, 4, Read("/a"), b"1"),
                      op(3, 10, 11, Read("/a"), b"late")).ok


def test_unknown_write_must_be_assumed_not_to_have_happened():
    history = [op(1, 0, 1, Write("/a", b"1")),
               unknown_outcome(2, 2, Write("/a", b"2")),
               op(3, 3, 4, Read("/a"), b"1"),
               op(3, 5, 6, Read("/a"), b"1")]
    assert doozer(*history).ok
    acked = attrs.evolve(history[1], ret=2.5, output=None)
    assert not doozer(history[0], acked, *history[2:]).ok


def test_unknown_cas_either_way():
    cas = unknown_outcome(2, 2, Cas("/a", b"1", b"2"))
    start = op(1, 0, 1, Write("/a", b"1"))
    assert doozer(start, cas, op(3, 3, 4, Read("/a"), b"2")).ok
    assert doozer(start, cas, op(3, 3, 4, Read("/a"), b"1")).ok
    stale = unknown_outcome(2, 2, Cas("/a", b"0", b"2"))
    assert not doozer(start, stale, op(3, 3, 4, Read("/a"), b"2")).ok


def test_two_unknown_ops_both_needed_in_the_opposite_order():
    # Only: write 2, delete, read None, write 1, read 1.
    assert doozer(unknown_outcome(1, 0, Write("/a", b"1")),
                  op(2, 0, 0, Write("/a", b"2")),
                  unknown_outcome(3, 4, Delete("/a")),
                  op(4, 6, 6, Read("/a"), None),
                  op(5, 7, 9, Read("/a"), b"1")).ok


def test_jepsen_info_and_fail_semantics():
    happened = ("INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
                "INFO  jepsen.util - 0\t:info\t:write\t:timed-out\n"
                "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
                "INFO  jepsen.util - 1\t:ok\t:read\t1\n")
    assert check(parse_jepsen_log(happened), RegisterModel()).ok
    failed = happened.replace(":info", ":fail")
    result = check(parse_jepsen_log(failed), RegisterModel())
    assert result.verdict is Verdict.NOT_LINEARIZABLE


def test_violation_reports_first_stuck_operation():
    stale = op(3, 6, 7, Read("/a"), b"1")
    result = doozer(op(1, 0, 1, Write("/a", b"1")),
                    op(2, 2, 3, Write("/a", b"2")),
                    op(3, 4, 5, Read("/a"), b"2"),
                    stale,
                    op(3, 8, 9, Read("/a"), b"2"))
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    v = result.violation
    assert v.op == stale and v.partition == "/a" and v.state == b"2"
    assert [o.input for o in v.linearized] == [
        Write("/a", b"1"), Write("/a", b"2"), Read("/a")]
    assert "Read(key='/a')" in result.describe()


def test_partitions_are_checked_independently():
    ok_part = [op(1, 0, 1, Write("/a", b"1")), op(1, 2, 3, Read("/a"), b"1")]
    bad_part = [op(2, 0, 1, Write("/b", b"1")), op(2, 2, 3, Read("/b"), None)]
    assert doozer(*ok_part).partitions == 1
    result = doozer(*ok_part, *bad_part)
    assert result.partitions == 2 and result.violation.partition == "/b"


# --- planted anomalies in real histories ---------------------------------


def _before(a, b):
    return a.ret < b.call


def _plant(history, old, new):
    return tuple(new if o is old else o for o in history)


def _kv_stale_read(history):
    """Make a get return a strict prefix of what an earlier get saw, on a
    key whose puts all returned before that earlier get began."""
    gets = [o for o in history if type(o.input) is Get]
    for g1, g2 in itertools.product(gets, gets):
        key = g1.input.key
        puts = [o for o in history
                if type(o.input) is Put and o.input.key == key]
        if (g2.input.key == key and g1.output and _before(g1, g2)
                and all(_before(p, g1) for p in puts)):
            older = g1.output[:g1.output.rfind("x ")]
            return _plant(history, g2, attrs.evolve(g2, output=older))
    raise AssertionError("no place to plant a stale read")


def _kv_reorder(history):
    """Swap the intervals of an append and a later get that saw it."""
    for a in history:
        if type(a.input) is not Append:
            continue
        for g in history:
            if (type(g.input) is Get and g.input.key == a.input.key
                    and _before(a, g) and a.input.value in g.output):
                swapped = {a: attrs.evolve(a, call=g.call, ret=g.ret),
                           g: attrs.evolve(g, call=a.call, ret=a.ret)}
                return tuple(swapped.get(o, o) for o in history)
    raise AssertionError("no place to plant a reordering")


def _kv_lost_write(history):
    """Drop an acknowledged append's token from every later read."""
    for a in history:
        if type(a.input) is not Append:
            continue
        token = a.input.value
        later = [g for g in history if type(g.input) is Get
                 and g.input.key == a.input.key and _before(a, g)
                 and token in g.output]
        if later:
            return tuple(attrs.evolve(o, output=o.output.replace(token, ""))
                         if o in later else o for o in history)
    raise AssertionError("no place to plant a lost write")


def _kv_phantom(history):
    g = next(o for o in history if type(o.input) is Get and o.output)
    return _plant(history, g, attrs.evolve(g, output=g.output + "x ghost y"))


@pytest.mark.parametrize("name", ["c01-ok", "c10-ok"])
@pytest.mark.parametrize("plant", [_kv_stale_read, _kv_reorder,
                                   _kv_lost_write, _kv_phantom])
def test_planted_kv_anomalies_are_detected(name, plant):
    history = kv_history(name)
    assert check(history, KVModel()).ok
    planted = plant(history)
    assert planted != history
    result = check(planted, KVModel(), timeout=20)
    assert result.verdict is Verdict.NOT_LINEARIZABLE


@pytest.mark.parametrize("n", [2, 5, 7, 18, 25])
def test_planted_phantom_read_in_linearizable_jepsen_log(n):
    history = jepsen_history(n)
    assert check(history, RegisterModel()).ok
    read = [o for o in history if type(o.input) is Read and not o.unknown]
    planted = _plant(history, read[len(read) // 2],
                     attrs.evolve(read[len(read) // 2], output=99))
    assert check(planted, RegisterModel()).verdict is \
        Verdict.NOT_LINEARIZABLE


# --- simulated doozer histories -------------------------------------------


def simulate(seed, n_ops, clients, paths, unknown_rate=0.0, spread=1.0):
    """A linearizable doozer history: each client issues sequential calls;
    each call takes effect at a random instant inside its interval, on an
    atomic store. Written values are unique. An unknown-outcome call takes
    effect or not at random."""
    rng = random.Random(seed)
    planned = []
    for client in range(clients):
        t = rng.uniform(0, spread)
        for _ in range(n_ops // clients):
            call, at = t, t + rng.uniform(0, spread)
            ret = at + rng.uniform(0, spread)
            t = ret + rng.uniform(0, spread / 4)
            planned.append((at, client, call, ret, rng.choice(paths)))
    planned.sort()
    store, written, ops = {}, {p: [None] for p in paths}, []
    for n, (_at, client, call, ret, path) in enumerate(planned):
        current = store.get(path)
        kind = rng.random()
        value = f"v{n}".encode()
        if kind < 0.5:
            inp, out, new = Read(path), current, current
        elif kind < 0.75:
            inp, out, new = Write(path, value), None, value
        elif kind < 0.92:
            guess = current if rng.random() < 0.6 else rng.choice(
                written[path])
            inp, out = Cas(path, guess, value), guess == current
            new = value if out else current
        else:
            inp, out, new = Delete(path), None, None
        if rng.random() < unknown_rate:
            store[path] = new if rng.random() < 0.5 else current
            ops.append(unknown_outcome(client, call, inp))
            continue
        store[path] = new
        if new is not None and new != current:
            written[path].append(new)
        ops.append(op(client, call, ret, inp, out))
    return tuple(sorted(ops, key=lambda o: o.call))


def _changes(o):
    """The value an operation wrote, or None if it wrote nothing unique."""
    if o.unknown:
        return None
    if type(o.input) is Write:
        return o.input.value
    if type(o.input) is Cas and o.output:
        return o.input.new
    return None


def _forced_predecessor_triples(history):
    """(w0, w1, later): w0 wrote a unique value, w1 changed the same path
    after w0 returned, and ``later`` began after w1 returned."""
    by_path = {}
    for o in history:
        by_path.setdefault(o.input.key, []).append(o)
    for ops in by_path.values():
        writers = [o for o in ops if _changes(o) is not None]
        changers = writers + [o for o in ops if type(o.input) is Delete
                              and not o.unknown]
        for w0, w1 in itertools.product(writers, changers):
            if _before(w0, w1) and _changes(w1) != _changes(w0):
                for later in ops:
                    if _before(w1, later) and not later.unknown:
                        yield w0, w1, later


def _sim_stale_read(history):
    for w0, _w1, r in _forced_predecessor_triples(history):
        if type(r.input) is Read:
            return _plant(history, r, attrs.evolve(r, output=_changes(w0)))
    raise AssertionError("no place to plant a stale read")


def _sim_stale_cas(history):
    for w0, _w1, c in _forced_predecessor_triples(history):
        if type(c.input) is Cas and c.output:
            stale = attrs.evolve(c.input, expected=_changes(w0))
            return _plant(history, c, attrs.evolve(c, input=stale))
    raise AssertionError("no place to plant a stale cas")


def _sim_lost_write(history):
    """An acknowledged write whose value later readers never see: they see
    the value it overwrote instead."""
    for w0, w1, r in _forced_predecessor_triples(history):
        if type(r.input) is Read and r.output == _changes(w1):
            lost = _changes(w1)
            return tuple(attrs.evolve(o, output=_changes(w0))
                         if type(o.input) is Read and o.output == lost
                         else o for o in history)
    raise AssertionError("no place to plant a lost write")


def _sim_reorder(history):
    for w in history:
        value = _changes(w)
        for r in history:
            if (value is not None and type(r.input) is Read
                    and r.output == value and _before(w, r)):
                swapped = {w: attrs.evolve(w, call=r.call, ret=r.ret),
                           r: attrs.evolve(r, call=w.call, ret=w.ret)}
                return tuple(swapped.get(o, o) for o in history)
    raise AssertionError("no place to plant a reordering")


def _sim_phantom(history):
    r = [o for o in history if type(o.input) is Read and not o.unknown][-1]
    return _plant(history, r, attrs.evolve(r, output=b"never written"))


@pytest.mark.parametrize("plant", [_sim_stale_read, _sim_stale_cas,
                                   _sim_lost_write, _sim_reorder,
                                   _sim_phantom])
@pytest.mark.parametrize("seed", [1, 2])
def test_planted_doozer_anomalies_are_detected(plant, seed):
    history = simulate(seed, 600, clients=6, paths=["/a", "/b", "/c"],
                       unknown_rate=0.02)
    assert check(history, DoozerModel(), timeout=20).ok
    planted = plant(history)
    assert planted != history
    result = check(planted, DoozerModel(), timeout=20)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.violation.op.input.key == result.violation.partition


@pytest.mark.parametrize("n_paths", [40, 1])
def test_ten_thousand_ops_are_checked_quickly(n_paths):
    history = simulate(7, 10_000, clients=10, unknown_rate=0.01,
                       paths=[f"/k/{i}" for i in range(n_paths)])
    assert len(history) == 10_000
    started = time.monotonic()
    result = check(history, DoozerModel(), timeout=60)
    assert result.ok, result.describe()
    assert result.partitions == n_paths
    assert time.monotonic() - started < 10.0
    planted = _sim_stale_read(history)
    assert check(planted, DoozerModel(), timeout=60).verdict is \
        Verdict.NOT_LINEARIZABLE


# --- agreement with exhaustive search on small random histories ----------


def _brute_force(ops, model):
    """Linearizable iff some subset of the unknown-outcome ops plus all the
    known ones has a total order respecting real time that the model
    accepts. No partitioning: the state is the whole {path: value} map."""
    known = [o for o in ops if not o.unknown]
    unknown = [o for o in ops if o.unknown]
    for r in range(len(unknown) + 1):
        for subset in itertools.combinations(unknown, r):
            if _some_order(known + list(subset), model, {}):
                return True
    return False


def _some_order(remaining, model, states):
    if not remaining:
        return True
    for o in remaining:
        if any(_before(other, o) for other in remaining):
            continue
        key = o.input.key
        accepted, new = model.step(states.get(key, model.init()), o.input,
                                   o.output)
        rest = [x for x in remaining if x is not o]
        if accepted and _some_order(rest, model, {**states, key: new}):
            return True
    return False


def _random_small_history(rng):
    """Some written values are never read: exercises skipping them."""
    ops = []
    for client in range(rng.randint(1, 8)):
        call = rng.randint(0, 8)
        ret = call + rng.randint(0, 4)
        path = rng.choice(["/a", "/b"])
        kind = rng.randrange(4)
        value = rng.choice([None, b"1", b"2"])
        other = rng.choice([b"1", b"2", b"3", b"4"])
        inp, out = [(Read(path), value), (Write(path, other), None),
                    (Cas(path, value, other), rng.random() < 0.5),
                    (Delete(path), None)][kind]
        if rng.random() < 0.3:
            ops.append(unknown_outcome(client, call, inp))
        else:
            ops.append(op(client, call, ret, inp, out))
    return ops


def test_agrees_with_exhaustive_search_on_random_small_histories():
    rng = random.Random(1234)
    verdicts = {True: 0, False: 0}
    for _ in range(1500):
        history = _random_small_history(rng)
        expected = _brute_force(history, DoozerModel())
        result = check(history, DoozerModel())
        assert result.ok == expected, history
        assert result.verdict is not Verdict.UNKNOWN
        verdicts[expected] += 1
    assert min(verdicts.values()) > 200
