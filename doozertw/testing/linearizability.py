"""Linearizability checker (Wing & Gong search with Lowe's cache).

``check(history, model)`` decides whether a concurrent history of
``Operation``s is linearizable with respect to a sequential ``Model``:

- The history is split by ``model.partition_key`` (P-compositionality:
  a history of independent objects is linearizable iff each object's
  sub-history is). Read-only operations with unknown outcome are dropped.
- Each partition is searched depth-first over the order of call/return
  events kept in a doubly linked list. Linearizing an operation "lifts" its
  call and return entries out of the list; backtracking "unlifts" them.
  A cache of (set of linearized operations as compact int bitsets, model
  state) prunes configurations already explored.
- Accepted reads are linearized at once without alternatives; other
  candidates are tried known-outcome operations first, then unknown-outcome
  ones, so an operation that may never have happened is only placed where
  something requires it (see ``_PartitionSearch``).

Result: ``CheckResult.verdict`` is LINEARIZABLE, NOT_LINEARIZABLE (with a
``Violation``: the operation whose completion could not be linearized at
the deepest point the search reached, the partial linearization before it,
and the model state there) or UNKNOWN when the deadline or step budget ran
out. ``CheckResult.ok`` is True only for a proven LINEARIZABLE: callers must
treat UNKNOWN as a failure.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Callable, Hashable, Iterable, Sequence

import attrs

from doozertw.testing.history import Operation
from doozertw.testing.models import Model

_CHECK_EVERY = 2048


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNKNOWN = "unknown"


@attrs.frozen
class Violation:
    """Where the search got stuck in a non-linearizable partition.

    ``op`` is the operation whose return could not be passed at the deepest
    point of the search; ``linearized`` is the longest partial linearization
    the search built (in order) and ``state`` the model state after it.
    """

    partition: Hashable
    op: Operation
    linearized: tuple[Operation, ...]
    state: Any

    def describe(self, last: int = 10) -> str:
        lines = [f"partition {self.partition!r}: cannot linearize "
                 f"{self.op.describe()}",
                 f"  state after {len(self.linearized)} linearized ops: "
                 f"{self.state!r}"]
        tail = self.linearized[-last:]
        if tail:
            lines.append(f"  last {len(tail)} ops of that linearization:")
            lines.extend(f"    {op.describe()}" for op in tail)
        return "\n".join(lines)


@attrs.frozen
class CheckResult:
    """Outcome of ``check``. ``ok`` is True only when proven linearizable."""

    verdict: Verdict
    violation: Violation | None = None
    partitions: int = 0
    operations: int = 0
    steps: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    def describe(self) -> str:
        head = (f"{self.verdict.value} ({self.operations} ops, "
                f"{self.partitions} partitions, {self.steps} steps)")
        if self.violation is None:
            return head
        return head + "\n" + self.violation.describe()


class _Budget:
    """Shared step budget and wall-clock deadline (``clock`` seconds)."""

    def __init__(self, deadline: float | None, max_steps: int | None,
                 clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.max_steps = max_steps
        self.clock = clock
        self.steps = 0
        self.pending = 0

    def exhausted(self) -> bool:
        if self.max_steps is not None and self.steps >= self.max_steps:
            return True
        return self.deadline is not None and self.clock() >= self.deadline


class _OutOfBudget(Exception):
    pass


def check(history: Iterable[Operation], model: Model, *,
          timeout: float | None = None, deadline: float | None = None,
          max_steps: int | None = None,
          clock: Callable[[], float] = time.monotonic) -> CheckResult:
    """Check ``history`` against ``model``.

    ``timeout`` (seconds from now) or ``deadline`` (an absolute ``clock()``
    value) bound the wall time; ``max_steps`` bounds the number of model
    steps. When either runs out the verdict is UNKNOWN, unless some
    partition was already found not linearizable.
    """
    if timeout is not None:
        limit = clock() + timeout
        deadline = limit if deadline is None else min(deadline, limit)
    budget = _Budget(deadline, max_steps, clock)
    ops = [op for op in history
           if not (op.unknown and model.is_read_only(op.input))]
    parts = partition(ops, model)
    verdict = Verdict.LINEARIZABLE
    for key in sorted(parts, key=lambda k: len(parts[k])):
        try:
            violation = _check_partition(key, parts[key], model, budget)
        except _OutOfBudget:
            verdict = Verdict.UNKNOWN
            break
        if violation is not None:
            return CheckResult(Verdict.NOT_LINEARIZABLE, violation,
                               len(parts), len(ops), budget.steps)
    return CheckResult(verdict, None, len(parts), len(ops), budget.steps)


def partition(ops: Iterable[Operation], model: Model,
              ) -> dict[Hashable, list[Operation]]:
    """Split operations by the model's partition key, keeping order."""
    parts: dict[Hashable, list[Operation]] = {}
    for op in ops:
        parts.setdefault(model.partition_key(op.input), []).append(op)
    return parts


class _EventList:
    """Call/return entries of one partition as a doubly linked list.

    Node 0 is the head, nodes 1..2n the entries in time order, node 2n+1 the
    tail. ``match[e]`` is the return node of call node ``e`` (0 for return
    nodes); ``op[e]`` the operation index of node ``e``.
    """

    def __init__(self, ops: Sequence[Operation]) -> None:
        events = []
        for i, o in enumerate(ops):
            # At equal times calls sort before returns: such ops overlap.
            events.append((o.call, 0, i))
            events.append((o.ret, 1, i))
        events.sort()
        size = len(events)
        self.tail = size + 1
        self.next = list(range(1, size + 2)) + [size + 1]
        self.prev = [0] + list(range(0, size + 1))
        self.match = [0] * (size + 2)
        self.op = [-1] * (size + 2)
        call_node: dict[int, int] = {}
        for node, (_t, kind, i) in enumerate(events, start=1):
            self.op[node] = i
            if kind == 0:
                call_node[i] = node
            else:
                self.match[call_node[i]] = node

    def lift(self, call: int) -> None:
        """Unlink call node ``call`` and its return node."""
        nxt, prv = self.next, self.prev
        ret = self.match[call]
        nxt[prv[call]] = nxt[call]
        prv[nxt[call]] = prv[call]
        nxt[prv[ret]] = nxt[ret]
        prv[nxt[ret]] = prv[ret]

    def unlift(self, call: int) -> None:
        """Relink what ``lift(call)`` unlinked (in reverse order)."""
        nxt, prv = self.next, self.prev
        ret = self.match[call]
        prv[nxt[ret]] = ret
        nxt[prv[ret]] = ret
        prv[nxt[call]] = call
        nxt[prv[call]] = call


def _check_partition(key: Hashable, ops: Sequence[Operation], model: Model,
                     budget: _Budget) -> Violation | None:
    """Depth-first search for a linearization; None if one exists."""
    return _PartitionSearch(key, ops, model, budget).run()


class _PartitionSearch:
    """The search over one partition.

    A configuration is (linearized set, model state). Its children are the
    candidate operations (calls before the first pending return in the event
    list) the model accepts in that state:

    - An accepted known-outcome candidate that can never change any state
      (``model.is_observer``: a read, a failed cas) is linearized at once,
      with no alternative: moving such an operation to the front of any
      valid continuation keeps it valid.
    - Otherwise children are the accepted known candidates in call order,
      then the accepted unknown-outcome ones that change the state and
      whose new state may matter (``_useful``). An unknown op not placed
      now can always be placed later, or never.
    - The search succeeds once every known-outcome op is linearized; unknown
      ops left over never happened.

    The linearized set is a watermark ``w`` (known ops are numbered in call
    order, and all numbered below ``w`` are linearized) plus ``rel``, the
    linearized ones at ``w`` and above shifted down by ``w`` (both stay
    small however long the history), plus ``unk``, a bitset of linearized
    unknown-outcome ops. The cache maps (w, rel, state) to the ``unk`` sets
    visited; a visit whose ``unk`` is a superset of a visited one is pruned,
    since an unknown op linearized later is never worse than one linearized
    now.
    """

    def __init__(self, key, ops, model, budget):
        self.key = key
        self.ops = sorted(ops, key=lambda o: o.call)
        self.events = _EventList(self.ops)
        self.model = model
        self.budget = budget
        self.unknown, self.rank = _ranks(self.ops)
        self.known_count = self.unknown.count(False)
        self.observer = [not o.unknown and model.is_observer(o.input, o.output)
                         for o in self.ops]
        self.cache: dict = {}
        self.named = None
        if model.blind_writes:
            self.named = {n for o in self.ops
                          for n in model.named_states(o.input, o.output)}

    def run(self) -> Violation | None:
        events, cache = self.events, self.cache
        opidx, known_count = events.op, self.known_count
        state, w, rel, unk = self.model.init(), 0, 0, 0
        # frame: [children, blocker, next child, state, w, rel, unk, entry]
        frames = [[*self._children(state), 0, state, 0, 0, 0, 0]]
        best_depth, best = -1, None
        while w < known_count:
            frame = frames[-1]
            children = frame[0]
            if frame[2] == len(children):  # exhausted: backtrack
                if len(frames) > best_depth:
                    best_depth = len(frames)
                    best = (frame[1], [f[7] for f in frames[1:]], state)
                frames.pop()
                if not frames:
                    break
                events.unlift(frame[7])
                state, w, rel, unk = frames[-1][3:7]
                continue
            e, new_state = children[frame[2]]
            frame[2] += 1
            nw, nrel, nunk = self._with(opidx[e], w, rel, unk)
            if not _first_visit(cache, (nw, nrel, new_state), nunk):
                continue
            events.lift(e)
            state, w, rel, unk = new_state, nw, nrel, nunk
            frames.append([*self._children(state), 0, state, w, rel, unk, e])
        if w == known_count:  # unknown ops left over: they never happened
            return None
        assert best is not None  # w < known_count: some frame was the deepest
        blocker, path, at_state = best
        return Violation(partition=self.key, op=self.ops[opidx[blocker]],
                         linearized=tuple(self.ops[opidx[e]] for e in path),
                         state=at_state)

    def _with(self, i, w, rel, unk) -> tuple[int, int, int]:
        """The linearized set (w, rel, unk) with op ``i`` added."""
        rank = self.rank[i]
        if self.unknown[i]:
            return w, rel, unk | rank
        if rank != w:
            return w, rel | (1 << (rank - w)), unk
        rel |= 1
        shift = (rel ^ (rel + 1)).bit_length() - 1  # trailing one bits
        return w + shift, rel >> shift, unk

    def _children(self, state) -> tuple[list, int]:
        """(children of the configuration in ``state``, the first pending
        return entry). Each child is (call entry, state after it): the
        accepted known-outcome candidates in call order, then the accepted
        unknown-outcome ones that change the state; or a single accepted
        observer, which is linearized with no alternative."""
        ev = self.events
        nxt, match, opidx = ev.next, ev.match, ev.op
        step, unknown, observer = self.model.step, self.unknown, self.observer
        ops = self.ops
        known: list[tuple[int, Any]] = []
        maybe: list[tuple[int, Any]] = []
        rejected: list[int] = []
        e = nxt[0]
        count = 0
        while match[e]:
            i = opidx[e]
            count += 1
            accepted, new_state = step(state, ops[i].input, ops[i].output)
            if not accepted:
                if observer[i]:
                    rejected.append(i)
            elif observer[i]:
                self._count(count)
                return [(e, new_state)], self._blocker(e)
            elif not unknown[i]:
                known.append((e, new_state))
            elif new_state != state:
                maybe.append((e, new_state))
            e = nxt[e]
        self._count(count)
        known.extend(c for c in maybe if self._useful(c[1], rejected))
        return known, e

    def _useful(self, new_state, rejected: list[int]) -> bool:
        """Whether placing an unknown-outcome op that produces
        ``new_state`` now can matter. With blind writes it can only if some
        op names that state (it may be read later) or a pending observer
        rejected now accepts it; otherwise the state is unobservable until
        overwritten, and placing the op later (or never) is as good."""
        if self.named is None or new_state in self.named:
            return True
        step, ops = self.model.step, self.ops
        return any(step(new_state, ops[j].input, ops[j].output)[0]
                   for j in rejected)

    def _blocker(self, e) -> int:
        nxt, match = self.events.next, self.events.match
        while match[e]:
            e = nxt[e]
        return e

    def _count(self, steps) -> None:
        budget = self.budget
        budget.steps += steps
        budget.pending += steps
        if budget.pending >= _CHECK_EVERY:
            budget.pending = 0
            if budget.exhausted():
                raise _OutOfBudget()


def _first_visit(cache: dict, entry: tuple, unk: int) -> bool:
    """Record a visit of configuration ``entry`` with unknown-op set
    ``unk``; False when it is already covered by a visit with a subset."""
    seen = cache.get(entry)
    if seen is None:
        cache[entry] = unk
    elif type(seen) is int:
        if seen & ~unk == 0:
            return False
        cache[entry] = [seen, unk]
    elif any(u & ~unk == 0 for u in seen):
        return False
    else:
        seen.append(unk)
    return True


def _ranks(ops: Sequence[Operation]) -> tuple[list[bool], list[int]]:
    """Per op: whether its outcome is unknown, and its rank: the call-order
    number among known ops, or its bit (1 << number) among unknown ops."""
    unknown = [o.unknown for o in ops]
    rank = []
    known_count = unknown_count = 0
    for u in unknown:
        if u:
            rank.append(1 << unknown_count)
            unknown_count += 1
        else:
            rank.append(known_count)
            known_count += 1
    return unknown, rank
