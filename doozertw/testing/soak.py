"""The fault run: a real cluster, concurrent clients, a nemesis, a checker.

``fault_run(RunConfig(...))`` starts a ``Cluster`` of twistd processes,
runs a ``Workload`` against every node while a ``Nemesis`` applies a seeded
fault plan, keeps the clients going until ``min_ops`` operations are
recorded, heals everything, reads every key on every node, and checks the
merged history with the linearizability checker (a checker timeout is a
failure). A failed run writes a report directory under ``report_root``:

    summary.json         config, counts, verdict, duration
    violation.txt        the checker's verdict and first violation found
    timeline.txt         every fault: kind, node, injected/healed/recovered
    clients/<id>.txt     each client's history, one operation per line
    nodes/<name>.log     every node's log (all restarts), proxy.log, cluster.yaml

By hand (see docs/fire-drills.md)::

    python -m doozertw.testing.soak --minutes 30 --size 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback

import attrs

from doozertw.testing.cluster_harness import Cluster
from doozertw.testing.linearizability import CheckResult
from doozertw.testing.nemesis import ALL_KINDS, Nemesis, schedule
from doozertw.testing.workload import (
    Workload, WorkloadConfig, acknowledged_writes, lost_writes)


@attrs.define
class RunConfig:
    size: int = 3
    faults: int = 24
    min_ops: int = 10_000
    seed: int = 1
    workers: int = 10
    keys: int = 16
    think: float = 0.0
    kinds: tuple = ALL_KINDS
    hold: tuple = (0.5, 1.5)
    settle: tuple = (0.3, 1.0)
    warmup: float = 1.0
    max_extra_seconds: float = 120.0
    check_timeout: float = 120.0
    recover_timeout: float = 15.0
    report_root: str = "reports"
    keep_report: bool = False
    node_args: tuple = ()  # extra twistd doozer options, e.g. ("--in-memory",)


@attrs.define
class RunResult:
    config: RunConfig
    operations: int = 0
    acknowledged_writes: int = 0
    unknown: int = 0
    injected: int = 0
    duration: float = 0.0
    check: CheckResult | None = None
    lost: list = attrs.field(factory=list)
    unanswered_final_reads: list = attrs.field(factory=list)
    error: str = ""
    report: str | None = None

    @property
    def ok(self) -> bool:
        return (not self.error and self.check is not None and self.check.ok
                and not self.lost and not self.unanswered_final_reads)

    def describe(self) -> str:
        verdict = self.check.describe() if self.check else "not checked"
        lines = [f"{self.operations} ops ({self.acknowledged_writes} acknowledged "
                 f"writes, {self.unknown} unknown), {self.injected} faults, "
                 f"{self.duration:.1f}s: {verdict}"]
        if self.lost:
            lines.append(f"acknowledged writes lost on keys {self.lost}")
        if self.unanswered_final_reads:
            lines.append(f"final reads unanswered: {self.unanswered_final_reads}")
        if self.error:
            lines.append(f"error: {self.error}")
        if self.report:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


def fault_run(config: RunConfig) -> RunResult:
    """One complete fault run; never raises for a cluster failure: the
    result says what went wrong and where the report is."""
    result = RunResult(config)
    started = time.monotonic()
    cluster = Cluster(config.size, name=f"soak{config.seed}", extra_args=config.node_args)
    workload = nemesis = None
    try:
        cluster.start()
        cluster.wait_formed(timeout=60)
        workload = Workload(
            WorkloadConfig(workers=config.workers, keys=config.keys,
                           seed=config.seed, think=config.think),
            cluster.all_client_ports)
        plan = schedule(config.faults, config.seed, config.kinds,
                        config.hold, config.settle)
        nemesis = Nemesis(cluster, plan, recover_timeout=config.recover_timeout,
                          seed=config.seed)
        workload.start()
        try:
            time.sleep(config.warmup)
            nemesis.run()
            _keep_going(workload, config)
        finally:
            workload.stop()
            result.injected = nemesis.injected
        _finish(cluster, workload, result, config)
    except Exception as e:  # noqa: BLE001 - every failure goes into the report
        result.error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    finally:
        result.duration = time.monotonic() - started
        if workload is not None:
            history = workload.history()
            result.operations = len(history)
            result.acknowledged_writes = acknowledged_writes(history)
            result.unknown = sum(1 for op in history if op.unknown)
        ended = cluster.unexpected_exits()
        if ended:
            result.error = ("node process ended on its own: " + ", ".join(
                f"{name} {how}" for name, how in sorted(ended.items()))
                + ("\n" + result.error if result.error else ""))
        cluster.stop()  # first: a hung node's stacks land in its log
        if not result.ok or config.keep_report:
            result.report = write_report(config.report_root, cluster, workload,
                                         nemesis, result)
        cluster.cleanup()
    return result


def _keep_going(workload: Workload, config: RunConfig) -> None:
    deadline = time.monotonic() + config.max_extra_seconds
    while workload.completed() < config.min_ops and time.monotonic() < deadline:
        time.sleep(0.2)


def _finish(cluster: Cluster, workload: Workload, result: RunResult,
            config: RunConfig) -> None:
    cluster.heal()
    cluster.wait_for_leader(timeout=config.recover_timeout)
    cluster.wait_writable(timeout=config.recover_timeout)
    result.unanswered_final_reads = workload.final_reads(cluster.client_ports())
    history = workload.history()
    result.check = workload.check(timeout=config.check_timeout)
    result.lost = lost_writes(history)


def write_report(root: str, cluster: Cluster, workload: Workload | None,
                 nemesis: Nemesis | None, result: RunResult) -> str:
    """Write the report directory; returns its path."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = os.path.abspath(os.path.join(
        root, f"fault-run-{stamp}-seed{result.config.seed}-{os.getpid()}"))
    os.makedirs(os.path.join(path, "clients"), exist_ok=True)
    cluster.collect_logs(os.path.join(path, "nodes"))
    with open(os.path.join(path, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"config": attrs.asdict(result.config), "ok": result.ok,
                   "operations": result.operations, "unknown": result.unknown,
                   "acknowledged_writes": result.acknowledged_writes,
                   "injected": result.injected, "duration": result.duration,
                   "lost": result.lost, "error": result.error,
                   "verdict": result.check.verdict.value if result.check else None},
                  f, indent=2, default=str)
    with open(os.path.join(path, "violation.txt"), "w", encoding="utf-8") as f:
        f.write(result.describe() + "\n")
    if nemesis is not None:
        with open(os.path.join(path, "timeline.txt"), "w", encoding="utf-8") as f:
            f.writelines(i.describe() + "\n" for i in nemesis.timeline)
    if workload is not None:
        for client, ops in workload.per_client().items():
            with open(os.path.join(path, "clients", f"{client}.txt"), "w",
                      encoding="utf-8") as f:
                f.writelines(describe_op(op) + "\n" for op in ops)
    return path


def describe_op(op) -> str:
    """One history line with full-precision monotonic times."""
    ret = "?" if op.unknown else f"{op.ret:.6f}"
    return (f"client {op.client} call={op.call:.6f} ret={ret} "
            f"{op.input!r} -> {op.output!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m doozertw.testing.soak",
        description="Fault runs against a real local cluster, repeated "
                    "with new seeds until the time is up or one fails.")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--faults", type=int, default=24, help="per run")
    parser.add_argument("--ops", type=int, default=10_000, help="per run, at least")
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--kinds", default=",".join(ALL_KINDS))
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    seed = args.seed
    while True:
        result = fault_run(RunConfig(
            size=args.size, faults=args.faults, min_ops=args.ops, seed=seed,
            workers=args.workers, kinds=tuple(args.kinds.split(",")),
            report_root=args.reports))
        print(f"seed {seed}: {'ok' if result.ok else 'FAILED'}: {result.describe()}",
              flush=True)
        if not result.ok:
            return 1
        seed += 1
        if time.monotonic() >= deadline:
            return 0


if __name__ == "__main__":
    sys.exit(main())
