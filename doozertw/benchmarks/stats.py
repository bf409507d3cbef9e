"""PURE. What one workload measured, its summary row, and the printed table.

A ``Sample`` is what the load processes of one workload reported: answers,
errors, latencies (seconds), the wall time, how many answers were expected
(watch fan-out: writes x watchers) and the CPU the generator processes
used. ``summarize`` turns it into a ``Row`` (ops/s, p50, p99, max in ms);
``format_table`` prints doozertw's rows beside etcd's with the ratio
doozertw/etcd of throughput and of p99 per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    lines = ["doozertw:"] + ["  " + format_row(r) for r in ours]
    if theirs is None:
        return "\n".join(lines)
    lines += ["etcd:"] + ["  " + format_row(r) for r in theirs]
    by_name = {r.workload: r for r in theirs}
    lines.append("doozertw/etcd:")
    for row in ours:
        other = by_name.get(row.workload)
        if other is None:
            continue
        lines.append(f"  {row.workload:<28} ops/s {ratio(row.ops_per_s, other.ops_per_s):>7}"
                     f"  p50 {ratio(row.p50_ms, other.p50_ms):>7}"
                     f"  p99 {ratio(row.p99_ms, other.p99_ms):>7}")
    return "\n".join(lines)
