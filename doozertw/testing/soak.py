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
    history.jsonl        the whole history, doozertw.testing.history_file
    nodes/<name>.log     every node's log (all restarts), proxy.log, cluster.yaml
    nodes/<name>.events.jsonl  every node's JSON log events (all restarts)

With ``readers_per_node`` the workload also has read-only clients pinned
to each node (``add_pinned_readers``), so a deposed leader that still
answers is asked for reads; a failed check records when the operation it
could not linearize was invoked (``detected_after``, ``operations_before``).

Revisions: every worker's connection is tapped (``RevisionWorker``), so the
run knows the revision each acknowledged write got and the (value,
revision) each read returned. ``RevisionLog.errors`` then finds two
distinct writes given the same revision, or a value read with another
revision than its write got; ``read_back`` reads a sample of acknowledged
writes at their own revision (pinned reads) on every node: each must read
back as written. Violations go into ``RunResult.revision_errors``.

By hand (see docs/fire-drills.md)::

    python -m doozertw.testing.soak --minutes 30 --size 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import threading
import time
import traceback
from typing import Callable, cast

import attrs

from doozertw.errors import ErrCode
from doozertw.testing.cluster_harness import Cluster
from doozertw.testing.history_file import dump_history
from doozertw.testing.linearizability import CheckResult
from doozertw.testing.nemesis import ALL_KINDS, KNOWN_KINDS, Nemesis, schedule
from doozertw.testing.workload import (
    Timeout, WireClient, WireError, Worker, Workload, WorkloadConfig,
    acknowledged_writes, lost_writes)


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
    readback: int = 300  # acknowledged writes read back pinned, per node
    readers_per_node: int = 0  # read-only clients that never leave their node
    linger: float = 1.5  # seconds a linger-leader fault serves cut off


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
    revision_errors: list = attrs.field(factory=list)
    revisions_read_back: int = 0
    detected_after: float | None = None  # seconds into the workload
    operations_before: int = 0  # invoked before the operation that failed
    error: str = ""
    report: str | None = None

    @property
    def ok(self) -> bool:
        return (not self.error and self.check is not None and self.check.ok
                and not self.lost and not self.unanswered_final_reads
                and not self.revision_errors)

    def describe(self) -> str:
        verdict = self.check.describe() if self.check else "not checked"
        lines = [f"{self.operations} ops ({self.acknowledged_writes} acknowledged "
                 f"writes, {self.unknown} unknown), {self.injected} faults, "
                 f"{self.duration:.1f}s: {verdict}"]
        if self.lost:
            lines.append(f"acknowledged writes lost on keys {self.lost}")
        if self.detected_after is not None:
            lines.append(f"the operation the checker could not linearize was "
                         f"invoked {self.detected_after:.1f}s into the workload,"
                         f" after {self.operations_before} others")
        if self.unanswered_final_reads:
            lines.append(f"final reads unanswered: {self.unanswered_final_reads}")
        if self.revision_errors:
            lines.append(f"{len(self.revision_errors)} revision errors, first: "
                         + "; ".join(self.revision_errors[:5]))
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
        revisions = RevisionLog()
        workload = revision_workload(
            WorkloadConfig(workers=config.workers, keys=config.keys,
                           seed=config.seed, think=config.think),
            cluster.all_client_ports, revisions)
        add_pinned_readers(workload, cluster.all_client_ports(),
                           config.readers_per_node, revisions)
        plan = schedule(config.faults, config.seed, config.kinds,
                        config.hold, config.settle)
        nemesis = Nemesis(cluster, plan, recover_timeout=config.recover_timeout,
                          seed=config.seed, linger=config.linger)
        workload_started = time.monotonic()
        workload.start()
        try:
            time.sleep(config.warmup)
            nemesis.run()
            _keep_going(workload, config)
        finally:
            workload.stop()
            result.injected = nemesis.injected
        _finish(cluster, workload, result, config)
        _locate_violation(result, workload.history(), workload_started)
        misread, result.revisions_read_back = read_back(
            revisions, cluster.client_ports(), config.readback, config.seed)
        result.revision_errors = revisions.errors() + misread
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


def _locate_violation(result: RunResult, history: list,
                      started: float) -> None:
    """Fill ``detected_after``/``operations_before`` from the checker's
    violation: when the operation it could not linearize was invoked."""
    violation = result.check.violation if result.check else None
    if violation is None:
        return
    result.detected_after = violation.op.call - started
    result.operations_before = sum(1 for op in history
                                   if op.call < violation.op.call)


def _pinned(port: int) -> Callable[[], list[int]]:
    """A Worker's ``ports`` that always names ``port``."""
    return lambda: [port]


def add_pinned_readers(workload: Workload, ports: list[int], per_node: int,
                       log: RevisionLog) -> None:
    """Add ``per_node`` read-only RevisionWorkers for each port, each
    pinned to it: after a timeout or a lost connection it reconnects to
    the same node, so a deposed leader keeps being asked to serve reads."""
    config = attrs.evolve(workload.config, read_fraction=1.0, cas_fraction=0.0)
    for port in ports:
        for _ in range(per_node):
            worker = RevisionWorker(len(workload.workers), config, _pinned(port),
                                    workload.stop_flag, workload.clock)
            worker.revisions = log
            workload.workers.append(worker)


# --- revisions ------------------------------------------------------------------


class RevisionLog:
    """What the workers' connections saw, thread-safe: (key, value, rev)
    of every acknowledged SET and of every answered GET of a file."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writes: list[tuple[str, bytes, int]] = []
        self.reads: list[tuple[str, bytes, int]] = []

    def wrote(self, key: str, value: bytes, rev: int) -> None:
        with self.lock:
            self.writes.append((key, value, rev))

    def read(self, key: str, value: bytes, rev: int) -> None:
        if rev:
            with self.lock:
                self.reads.append((key, value, rev))

    def errors(self) -> list[str]:
        """A revision used by two distinct writes (acknowledged, or seen by
        a read), or a value read with another revision than its write got;
        every value the workload writes is unique."""
        with self.lock:
            writes, reads = list(self.writes), list(self.reads)
        found = []
        by_rev: dict[int, tuple[str, bytes, str]] = {}
        by_value: dict[tuple[str, bytes], tuple[int, str]] = {}
        for what, (key, value, rev) in ([("write", w) for w in writes]
                                        + [("read", r) for r in reads]):
            seen = by_rev.setdefault(rev, (key, value, what))
            if seen[:2] != (key, value):
                found.append(f"revision {rev} reused: {seen[2]} {seen[0]}={seen[1]!r}"
                             f" and {what} {key}={value!r}")
            known = by_value.setdefault((key, value), (rev, what))
            if known[0] != rev:
                found.append(f"{key}={value!r} has revision {known[0]} ({known[1]}) "
                             f"and {rev} ({what})")
        return found


class _RevisionTap:
    """A WireClient whose SET and GET results go into a RevisionLog."""

    def __init__(self, client: WireClient, log: RevisionLog):
        self._client = client
        self._log = log

    def __getattr__(self, name):
        return getattr(self._client, name)

    def set(self, path: str, rev: int, value: bytes) -> int:
        new_rev = self._client.set(path, rev, value)
        self._log.wrote(path, value, new_rev)
        return new_rev

    def get(self, path: str) -> tuple[bytes, int]:
        value, rev = self._client.get(path)
        self._log.read(path, value, rev)
        return value, rev


class RevisionWorker(Worker):
    """A workload Worker whose connections are tapped by a RevisionLog."""

    revisions: RevisionLog

    def _connect(self) -> bool:
        if not super()._connect():
            return False
        # a stand-in: _RevisionTap forwards everything it does not record
        self.client = cast(WireClient, _RevisionTap(self._conn(), self.revisions))
        return True


def revision_workload(config: WorkloadConfig, ports, log: RevisionLog) -> Workload:
    """A Workload of RevisionWorkers recording into ``log``."""
    workload = Workload(config, ports)
    workers: list[Worker] = []
    for old in workload.workers:
        worker = RevisionWorker(old.index, config, ports, workload.stop_flag,
                                workload.clock)
        worker.revisions = log
        workers.append(worker)
    workload.workers = workers
    return workload


def read_back(log: RevisionLog, ports, sample: int, seed: int,
              timeout: float = 30.0) -> tuple[list[str], int]:
    """GET a seeded sample of acknowledged writes at their own revision
    (a pinned read) on every port; each must read back as written. Each
    node first answers a linearizable read, so its revision then covers
    every acknowledged write: a write beyond it is reported (the node's
    history went back), not waited for. A revision older than the node's
    history window (TOO_LATE) is skipped. Returns (errors, reads that
    matched)."""
    with log.lock:
        writes = list(log.writes)
    chosen = random.Random(seed).sample(writes, min(sample, len(writes)))
    found, matched = [], 0
    deadline = time.monotonic() + timeout
    for port in ports:
        try:
            client, node_rev = _caught_up(port, deadline)
        except (WireError, Timeout, OSError) as e:
            found.append(f"port {port}: no linearizable read: {e!r}")
            continue
        try:
            for key, value, rev in chosen:
                if rev > node_rev:
                    found.append(f"port {port}: acknowledged {key}={value!r} at "
                                 f"revision {rev}, the node is at {node_rev}")
                    continue
                try:
                    resp = client.call("GET", path=key, rev=rev)
                except WireError as e:
                    if e.code != ErrCode.TOO_LATE:
                        found.append(f"port {port}: GET {key} at {rev}: "
                                     f"error {e.code} {e.detail}")
                    continue
                if (resp.value, resp.rev) == (value, rev):
                    matched += 1
                else:
                    found.append(f"port {port}: GET {key} at {rev} read "
                                 f"{resp.value!r} rev {resp.rev}, written {value!r}")
        except (Timeout, OSError) as e:
            found.append(f"port {port}: pinned reads failed: {e!r}")
        finally:
            client.close()
    return found, matched


def _caught_up(port: int, deadline: float) -> tuple[WireClient, int]:
    """A client of ``port`` and the node's revision right after it
    answered a linearizable read; retried until ``deadline``."""
    while True:
        client = None
        try:
            client = WireClient(port)
            client.get("/harness/readback")
            return client, client.call("REV").rev
        except (WireError, Timeout, OSError):
            if client is not None:
                client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


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
                   "revision_errors": result.revision_errors[:100],
                   "detected_after": result.detected_after,
                   "operations_before": result.operations_before,
                   "verdict": result.check.verdict.value if result.check else None},
                  f, indent=2, default=str)
    with open(os.path.join(path, "violation.txt"), "w", encoding="utf-8") as f:
        f.write(result.describe() + "\n")
    if nemesis is not None:
        with open(os.path.join(path, "timeline.txt"), "w", encoding="utf-8") as f:
            f.writelines(i.describe() + "\n" for i in nemesis.timeline)
    if workload is not None:
        dump_history(workload.history(), os.path.join(path, "history.jsonl"))
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
    parser.add_argument("--kinds", default=",".join(ALL_KINDS),
                        help=f"comma-separated, of {','.join(KNOWN_KINDS)}")
    parser.add_argument("--readers", type=int, default=0,
                        help="read-only clients pinned to each node")
    parser.add_argument("--hold", type=float, nargs=2, default=(0.5, 1.5),
                        metavar=("MIN", "MAX"), help="seconds a fault is held")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    seed = args.seed
    while True:
        result = fault_run(RunConfig(
            size=args.size, faults=args.faults, min_ops=args.ops, seed=seed,
            workers=args.workers, kinds=tuple(args.kinds.split(",")),
            readers_per_node=args.readers, hold=tuple(args.hold),
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
