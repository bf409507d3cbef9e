"""PURE. What one workload measured, its summary row, and the printed table.

A ``Sample`` is what the load processes of one workload reported: answers,
errors, latencies (seconds), the wall time, how many answers were expected
(watch fan-out: writes x watchers) and the CPU the generator processes
used. ``summarize`` turns it into a ``Row`` (ops/s, p50, p99, max in ms);
``format_table`` prints doozertw's rows beside etcd's with the ratio
doozertw/etcd of throughput and of p99 per row. ``failover_gap`` turns the
acknowledgement times of one failover round into its stall and recovery,
``summarize_failover`` rounds into a ``FailoverRow``, ``format_failover``
prints those rows with the ratios of the stall.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs

#: A generator process busier than this (share of one core) may itself be
#: the bottleneck: the row is flagged.
GENERATOR_BUSY = 0.9


@attrs.frozen
class Sample:
    """Raw figures of one workload run (latencies in seconds)."""

    count: int
    errors: int
    latencies: tuple[float, ...]
    elapsed: float
    expected: int | None = None
    generator_cpu: float | None = None   # busiest load process: share of one core
    server_cpu: float | None = None      # all nodes together, in cores
    writes: int | None = None            # watch fan-out: writes made by the writer


@attrs.frozen
class Row:
    """One printed row: ``ops_per_s`` and latencies in milliseconds."""

    workload: str
    api: str
    count: int
    errors: int
    ops_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    missing: int | None = None
    generator_cpu: float | None = None
    server_cpu: float | None = None
    writes: int | None = None

    def as_dict(self) -> dict:
        return attrs.asdict(self)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ascending
    ``ordered``; None when empty."""
    if not ordered:
        return None
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile out of range: {q}")
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def summarize(workload: str, api: str, sample: Sample) -> Row:
    """The row of ``sample``: throughput over its wall time, p50/p99/max."""
    ordered = sorted(sample.latencies)
    rate = sample.count / sample.elapsed if sample.elapsed > 0 else 0.0
    missing = None if sample.expected is None else max(0, sample.expected - sample.count)
    return Row(workload=workload, api=api, count=sample.count, errors=sample.errors,
               ops_per_s=round(rate, 1), p50_ms=_ms(percentile(ordered, 0.50)),
               p99_ms=_ms(percentile(ordered, 0.99)), max_ms=_ms(ordered[-1] if ordered else None),
               missing=missing, generator_cpu=sample.generator_cpu,
               server_cpu=sample.server_cpu, writes=sample.writes)


def merge(parts: Sequence[tuple[int, int, Sequence[float], float]],
          expected: int | None = None, generator_cpu: float | None = None) -> Sample:
    """One Sample from worker results ``(count, errors, latencies, elapsed)``
    (the wall time is the longest worker's)."""
    return Sample(count=sum(p[0] for p in parts), errors=sum(p[1] for p in parts),
                  latencies=tuple(x for p in parts for x in p[2]),
                  elapsed=max((p[3] for p in parts), default=0.0),
                  expected=expected, generator_cpu=generator_cpu)


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs`` as ``"1.23x"``; ``"-"`` when either is missing or
    the divisor is zero."""
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 100 else f"{value:.2f}"


def format_row(row: Row) -> str:
    """One line: workload, ops/s, p50/p99/max ms, errors, notes."""
    notes = []
    if row.writes is not None:
        notes.append(f"{row.writes} writes")
    if row.missing:
        notes.append(f"{row.missing} events missing")
    if row.errors:
        notes.append(f"{row.errors} errors")
    if row.generator_cpu is not None:
        busy = " GENERATOR BUSY" if row.generator_cpu >= GENERATOR_BUSY else ""
        notes.append(f"gen cpu {row.generator_cpu:.0%}{busy}")
    if row.server_cpu is not None:
        notes.append(f"nodes cpu {row.server_cpu:.2f} cores")
    note = f"  ({', '.join(notes)})" if notes else ""
    return (f"{row.workload:<28} {_num(row.ops_per_s):>11}/s  p50 {_num(row.p50_ms):>7}"
            f"  p99 {_num(row.p99_ms):>7}  max {_num(row.max_ms):>7} ms  [{row.api}]{note}")


def format_table(ours: Sequence[Row], theirs: Sequence[Row] | None = None) -> str:
    """doozertw's rows; with ``theirs`` (etcd's, matched by workload name)
    also etcd's rows and, per workload, the ratios doozertw/etcd of ops/s
    and of p99 (a p99 ratio below 1 means doozertw's tail is shorter)."""
    return _side_by_side(
        ("doozertw:", "etcd:", "doozertw/etcd:"), ours, theirs, format_row,
        lambda row, other: (f"ops/s {ratio(row.ops_per_s, other.ops_per_s):>7}"
                            f"  p50 {ratio(row.p50_ms, other.p50_ms):>7}"
                            f"  p99 {ratio(row.p99_ms, other.p99_ms):>7}"))


def _side_by_side(titles: tuple[str, str, str], ours: Sequence, theirs: Sequence | None,
                  format_one: Callable, ratios: Callable) -> str:
    """Our rows under ``titles[0]``; with ``theirs``, theirs under
    ``titles[1]`` and, under ``titles[2]``, ``ratios(ours, theirs)`` for each
    workload both have."""
    lines = [titles[0]] + ["  " + format_one(r) for r in ours]
    if theirs is None:
        return "\n".join(lines)
    lines += [titles[1]] + ["  " + format_one(r) for r in theirs]
    by_name = {r.workload: r for r in theirs}
    lines.append(titles[2])
    lines += [f"  {row.workload:<28} {ratios(row, by_name[row.workload])}"
              for row in ours if row.workload in by_name]
    return "\n".join(lines)


# -- failover rounds ----------------------------------------------------------


@attrs.frozen
class Failover:
    """One failover round (seconds): ``stall`` the longest gap between
    consecutive acknowledged writes around the fault, ``recovery`` the time
    from the fault to the write that ended that gap (None: no write was
    acknowledged after the fault within the window)."""

    stall: float
    recovery: float | None
    acks: int = 0
    errors: int = 0
    elections: int = 0


def failover_gap(acks: Sequence[float], fault: float, end: float) -> Failover:
    """The stall of one round from the times writes were acknowledged
    (``acks``, any order, all clients), the time of the ``fault`` and the
    ``end`` of the window. The points are the last acknowledgement at or
    before the fault (the fault itself if none), every one after it up to
    ``end``, and ``end``; the stall is the longest gap between consecutive
    points and the recovery is that gap's end minus the fault, None when it
    ends at ``end`` (writes had not resumed, or stopped again for longer).
    Acknowledgements of writes in flight at the fault that arrive just
    after it thus end only a short gap, not the stall."""
    if end < fault:
        raise ValueError(f"window ends before the fault: {end} < {fault}")
    before = [t for t in acks if t <= fault]
    after = sorted(t for t in acks if fault < t <= end)
    points = [max(before) if before else fault, *after, end]
    gap, at = max((points[i + 1] - points[i], i + 1) for i in range(len(points) - 1))
    recovery = None if at == len(points) - 1 else points[at] - fault
    return Failover(stall=gap, recovery=recovery, acks=len(before) + len(after))


def elections_seen(before: Sequence[int], after: Sequence[int], faulted: int) -> int:
    """Leader changes over one round from each node's counter ``before``
    and ``after`` it: the largest increase of a node other than
    ``faulted`` (the survivors see every change; a killed node's counter
    starts again from zero when it is restarted)."""
    return max((a - b for i, (b, a) in enumerate(zip(before, after)) if i != faulted),
               default=0)


@attrs.frozen
class FailoverRow:
    """The rounds of one failover workload (milliseconds)."""

    workload: str
    api: str
    rounds: int
    stall_p50_ms: float | None
    stall_max_ms: float | None
    recovery_p50_ms: float | None
    recovery_max_ms: float | None
    unrecovered: int
    errors: int
    acks: int
    stalls_ms: tuple[float, ...] = ()
    elections: int = 0

    def as_dict(self) -> dict:
        return attrs.asdict(self)


def summarize_failover(workload: str, api: str, rounds: Sequence[Failover]) -> FailoverRow:
    """p50 (nearest rank) and max of the stalls and of the recoveries of
    ``rounds``; rounds with no recovery count in ``unrecovered`` (their
    stall, the whole window after the last acknowledgement, still counts)."""
    stalls = sorted(r.stall for r in rounds)
    recoveries = sorted(r.recovery for r in rounds if r.recovery is not None)
    return FailoverRow(
        workload=workload, api=api, rounds=len(rounds),
        stall_p50_ms=_ms(percentile(stalls, 0.5)),
        stall_max_ms=_ms(stalls[-1] if stalls else None),
        recovery_p50_ms=_ms(percentile(recoveries, 0.5)),
        recovery_max_ms=_ms(recoveries[-1] if recoveries else None),
        unrecovered=len(rounds) - len(recoveries),
        errors=sum(r.errors for r in rounds), acks=sum(r.acks for r in rounds),
        stalls_ms=tuple(_ms(r.stall) or 0.0 for r in rounds),
        elections=sum(r.elections for r in rounds))


def format_failover_row(row: FailoverRow) -> str:
    """One line: stall p50/max, recovery p50/max, each round's stall."""
    notes = [f"{row.rounds} rounds: " + ", ".join(f"{s:,.0f}" for s in row.stalls_ms) + " ms",
             f"{row.acks} writes", f"{row.elections} elections"]
    if row.errors:
        notes.append(f"{row.errors} errors")
    if row.unrecovered:
        notes.append(f"{row.unrecovered} NOT RECOVERED in the window")
    return (f"{row.workload:<28} stall p50 {_num(row.stall_p50_ms):>7} max "
            f"{_num(row.stall_max_ms):>7} ms  recovery p50 {_num(row.recovery_p50_ms):>7} max "
            f"{_num(row.recovery_max_ms):>7} ms  [{row.api}]  ({'; '.join(notes)})")


def format_failover(ours: Sequence[FailoverRow], theirs: Sequence[FailoverRow] | None = None,
                    name: str = "doozertw") -> str:
    """The failover rows of doozertw (or of ``name``) and, with ``theirs``,
    of etcd and the ratios doozertw/etcd of the stall's p50 and max (below
    1: doozertw's writes stall for less)."""
    return _side_by_side(
        (f"{name} failover:", "etcd failover:", "doozertw/etcd failover:"), ours, theirs,
        format_failover_row,
        lambda row, other: (f"stall p50 {ratio(row.stall_p50_ms, other.stall_p50_ms):>7}"
                            f"  max {ratio(row.stall_max_ms, other.stall_max_ms):>7}"))
