"""The failover rows of the side-by-side benchmark (``--failover``).

Each round finds the leader, starts ``--failover-clients`` (8) writers
on the two other nodes (so no client talks to the node that fails), lets
them write for ``--failover-lead`` (1) second, then faults the leader:

- ``failover kill``: SIGKILL; after the window the node is started again
  (same data directory) and the round waits until the cluster is healthy;
- ``failover pause``: SIGSTOP; after the window SIGCONT, then the same wait.

The writers go on for ``--failover-window`` (4) seconds after the fault.
Each writer keeps one write in flight; one unanswered after
``--failover-retry`` (0.2) seconds is sent again beside it (the first
stays outstanding and its answer still counts), so a write lost with the
old leader (etcd drops proposals forwarded to a dead leader; the server
gives up only after its request timeout) holds a client for at most that
long. ``stats.failover_gap`` turns the acknowledgement times of all the
writers into the round's stall and recovery; ``--failovers`` (3) rounds
of each kind give one row each (p50 and max). The leader elections of
each round (``stats.elections_seen``: the largest increase of a
survivor's counter) are counted apart from those of the workloads (each
round forces at least one).

A cluster object offers ``endpoints``, ``leaders()`` (indexes),
``kill(i)``, ``pause(i)``, ``resume(i)``, ``restart(i)``, ``healthy()``
and ``leader_change_counts()`` (each node's counter; ``doozer.DoozerCluster``,
``etcd.EtcdCluster``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import attrs

from doozertw.benchmarks.stats import (
    Failover,
    FailoverRow,
    elections_seen,
    failover_gap,
    summarize_failover,
)

MODES = ("kill", "pause")
MAX_ROUNDS = 100
MAX_FAILOVER_CLIENTS = 256
HEALTHY_TIMEOUT = 90.0
#: Writer processes per round (the load is light: 8 clients one write each).
WORKERS = 2


def add_arguments(p: argparse.ArgumentParser, positive: Callable) -> None:
    """The failover options of ``python -m doozertw.bench --cluster``."""
    p.add_argument("--failover", action="store_true",
                   help="also measure write stalls when the leader is killed or paused "
                        "(about 7 s per round)")
    p.add_argument("--failovers", type=positive(int), default=3,
                   help=f"rounds of each kind (at most {MAX_ROUNDS})")
    p.add_argument("--failover-clients", type=positive(int), default=8)
    p.add_argument("--failover-lead", type=positive(float), default=1.0,
                   help="seconds of writes before the fault")
    p.add_argument("--failover-window", type=positive(float), default=4.0,
                   help="seconds of writes after the fault")
    p.add_argument("--failover-retry", type=positive(float), default=0.2,
                   help="a write unanswered this long is sent again beside it")


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse rounds or clients beyond the bounds, a window over a minute."""
    if args.failovers > MAX_ROUNDS:
        p.error(f"--failovers at most {MAX_ROUNDS}")
    if args.failover_clients > MAX_FAILOVER_CLIENTS:
        p.error(f"--failover-clients at most {MAX_FAILOVER_CLIENTS}")
    if args.failover_window > 60 or args.failover_lead > 60:
        p.error("--failover-window and --failover-lead at most 60 s")


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``check`` until it returns something truthy; RuntimeError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"failover: {what} within {timeout:g} s")
        time.sleep(0.1)


def one_leader(cluster) -> int:
    """The index of the one leader (waits up to HEALTHY_TIMEOUT for one)."""
    def single() -> list[int] | None:
        found = cluster.leaders()
        return found if len(found) == 1 else None

    return wait_for(single, HEALTHY_TIMEOUT, "no single leader")[0]  # type: ignore[index]


def run_round(cluster, worker: Callable, context: str, args, mode: str) -> Failover:
    """One round of ``mode`` ("kill" or "pause"); the cluster is healthy
    again when it returns."""
    leader = one_leader(cluster)
    counts = cluster.leader_change_counts()
    survivors = [e for i, e in enumerate(cluster.endpoints) if i != leader]
    ctx: Any = multiprocessing.get_context(context)
    results, ready, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    ids = list(range(args.failover_clients))
    groups = [g for g in (ids[w::WORKERS] for w in range(WORKERS)) if g]
    procs = [ctx.Process(target=worker, args=(survivors, g, args.failover_retry,
                                              args.value_size, args.keys, ready, stop, results))
             for g in groups]
    for proc in procs:
        proc.start()
    faulted = False
    try:
        for _ in procs:
            ready.get(timeout=60)
        time.sleep(args.failover_lead)
        fault = time.monotonic()
        (cluster.kill if mode == "kill" else cluster.pause)(leader)
        faulted = True
        time.sleep(args.failover_window)
        end = time.monotonic()
        stop.set()
        parts = [results.get(timeout=60) for _ in procs]
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        if faulted:
            (cluster.restart if mode == "kill" else cluster.resume)(leader)
    failed = [p for p in parts if p and p[0] == "error"]
    if failed:
        raise RuntimeError(f"failover writer failed: {failed[0][1]}")
    wait_for(cluster.healthy, HEALTHY_TIMEOUT, "the cluster was not healthy again")
    acks = [t for p in parts for t in p[0]]
    gap = failover_gap(acks, fault, end)
    return attrs.evolve(gap, errors=sum(p[1] for p in parts),
                        elections=elections_seen(counts, cluster.leader_change_counts(), leader))


def run_failover(cluster, worker: Callable, context: str, api: str, args,
                 say: Callable[[str], None] = print) -> tuple[list[FailoverRow], int]:
    """``--failovers`` rounds of each mode: (one row per mode, leader
    elections seen over all the rounds)."""
    wait_for(cluster.healthy, HEALTHY_TIMEOUT, "the cluster was not healthy")
    rows = []
    for mode in MODES:
        rounds = []
        for n in range(args.failovers):
            rounds.append(run_round(cluster, worker, context, args, mode))
            r = rounds[-1]
            recovery = "none" if r.recovery is None else f"{r.recovery * 1000:.0f} ms"
            say(f"    failover {mode} {n + 1}: stall {r.stall * 1000:.0f} ms, "
                f"recovery {recovery}, {r.elections} elections")
        rows.append(summarize_failover(f"failover {mode}", api, rounds))
    return rows, sum(row.elections for row in rows)
