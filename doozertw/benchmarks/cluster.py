"""``python -m doozertw.bench --cluster [--compare-etcd]``: start a local
3-node doozertw cluster (durable, scratch directory) and run issue 12's
workloads on it, and with ``--compare-etcd`` the same workloads on a local
3-node etcd (fsync on, its defaults) over etcd's native gRPC API; print
ops/s, p50, p99 and max per row and the ratios doozertw/etcd.

Workloads (``--value-size`` 100-byte values over ``--keys`` 64 keys):

- ``seq writes``: one client, one write at a time;
- ``writes xC``: ``--clients`` (64) clients, one write in flight each;
- ``lin reads xC``: the same clients, linearizable reads;
- ``http writes xC``, ``http lin reads xC``: the same over HTTP/1.1
  keep-alive (``http.py``): doozertw's HTTP API (``PUT``/``GET
  /v1/keys``) and etcd's JSON gateway (``POST /v3/kv/put``,
  ``/v3/kv/range``); ``--no-http`` leaves them out;
- ``watch N @R/s``: N watchers (``--watchers 200,1000``) of a prefix, one
  writer at ``--watch-rate`` writes/s; latency from the write being sent
  to each watcher having the event; ``missing`` counts events not seen.

Load comes from ``--workers`` processes; each row shows the mean CPU of
those processes (share of one core), flagged when near a full core: the
generator, not the server, may then bound that row. Leader elections seen
during the run are counted (doozertw: ``doozer_leader_changes_total``,
etcd: ``etcd_server_leader_changes_seen_total``). ``--memory`` loads
``--memory-files`` files (100,000) of ``--value-size`` bytes and prints
each node's RSS (VmRSS of /proc/PID/status). ``--failover`` adds the rows
``failover kill`` and ``failover pause`` (``failover.py``): how long writes
stall when the leader is SIGKILLed or SIGSTOPped; elections during those
rounds are counted apart from the workloads'.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable

import attrs

from doozertw.benchmarks import doozer, etcd, failover, http
from doozertw.benchmarks.stats import (
    Row,
    Sample,
    format_failover,
    format_table,
    merge,
    summarize,
)

MAX_CLIENTS = 4096
MAX_WATCHERS = 20000


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value
    return parse


def _watchers(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text}") from None
    if not counts or any(not 0 < n <= MAX_WATCHERS for n in counts):
        raise argparse.ArgumentTypeError(f"watcher counts must be 1..{MAX_WATCHERS}: {text}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m doozertw.bench --cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", action="store_true", help="this mode (accepted, implied)")
    p.add_argument("--compare-etcd", action="store_true",
                   help="also run every workload on a local 3-node etcd (needs etcd, grpcio)")
    p.add_argument("-s", "--seconds", type=_positive(float), default=5.0, help="per workload")
    p.add_argument("--clients", type=_positive(int), default=64)
    p.add_argument("--workers", type=_positive(int), default=3, help="load processes")
    p.add_argument("--value-size", type=_positive(int), default=100)
    p.add_argument("--keys", type=_positive(int), default=64)
    p.add_argument("--http", action=argparse.BooleanOptionalAction, default=True,
                   help="the HTTP rows: doozertw's HTTP API and etcd's JSON gateway")
    p.add_argument("--watchers", type=_watchers, default=[200],
                   help="comma-separated watcher counts, e.g. 200,1000")
    p.add_argument("--watch-rate", type=_positive(float), default=100.0, help="writes/s")
    p.add_argument("--watch-via", choices=sorted(doozer.WATCH_VIAS), default="stream",
                   help="doozertw's watchers: the text protocol's streaming watch, or "
                        "the doozer protocol's WAIT chains")
    p.add_argument("--drain", type=_positive(float), default=3.0,
                   help="watchers listen this long after the last write; events not "
                        "delivered by then count as missing")
    p.add_argument("--memory", action="store_true",
                   help="also load --memory-files files and print each node's RSS")
    p.add_argument("--memory-files", type=_positive(int), default=100_000)
    p.add_argument("--only", choices=("doozertw", "etcd"), help="run one system only")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.add_argument("--lease-reads", action="store_true",
                   help="doozertw nodes answer linearizable reads from a read lease")
    p.add_argument("--election-timeout", type=_positive(float),
                   help="doozertw nodes' --election-timeout (seconds)")
    p.add_argument("--heartbeat-interval", type=_positive(float),
                   help="doozertw nodes' --heartbeat-interval (seconds)")
    failover.add_arguments(p, _positive)
    args = p.parse_args(argv)
    if args.clients > MAX_CLIENTS:
        p.error(f"--clients at most {MAX_CLIENTS}")
    failover.check_arguments(p, args)
    args.workers = min(args.workers, args.clients)
    return args


@attrs.define
class Suite:
    """How to drive one system: its cluster, worker functions and API
    names (``api`` of the native rows, ``http_api`` of the HTTP rows,
    ``watch_api`` of the watch rows). The HTTP worker runs in forked
    processes on ``http_endpoints(cluster)`` (read once it is started)."""

    name: str
    api: str
    cluster: object
    load_worker: Callable
    watch_worker: Callable
    stamped_writer: Callable
    fill_worker: Callable
    context: str              # multiprocessing start method for its load processes
    failover_worker: Callable
    http_worker: Callable
    http_api: str
    http_endpoints: Callable[[object], list[str]]
    watch_api: str


def node_options(args: argparse.Namespace) -> tuple[str, ...]:
    """The ``twistd doozer`` options the doozertw nodes get from ``args``."""
    options: tuple[str, ...] = ("--lease-reads",) if args.lease_reads else ()
    for flag in ("election_timeout", "heartbeat_interval"):
        value = getattr(args, flag)
        if value is not None:
            options += ("--" + flag.replace("_", "-"), f"{value:g}")
    return options


def suites(args: argparse.Namespace) -> list[Suite]:
    out = []
    if args.only != "etcd":
        api = doozer.API + (", lease reads" if args.lease_reads else "")
        out.append(Suite("doozertw", api, doozer.DoozerCluster(node_options(args)),
                         doozer.load_worker,
                         functools.partial(doozer.watch_worker, via=args.watch_via),
                         doozer.stamped_writer, doozer.fill_worker, "fork",
                         doozer.failover_worker, http.doozer_worker,
                         http.DOOZER_API + (", lease reads" if args.lease_reads else ""),
                         http.doozer_endpoints, doozer.WATCH_VIAS[args.watch_via]))
    if args.compare_etcd or args.only == "etcd":
        if not etcd.available():
            raise SystemExit("--compare-etcd: no etcd binary (Debian: apt-get install "
                             "etcd-server)")
        out.append(Suite("etcd", etcd.API, etcd.EtcdCluster(), etcd.load_worker,
                         etcd.watch_worker, etcd.stamped_writer, etcd.fill_worker, "spawn",
                         etcd.failover_worker, http.etcd_worker, http.ETCD_API,
                         http.etcd_endpoints, etcd.API))
    return out


class Timed:
    """Wraps a worker: its result tuple gains (CPU seconds, wall seconds) of
    the load process, so the generator's own load is reported."""

    def __init__(self, worker: Callable) -> None:
        self.worker = worker

    def __call__(self, *args) -> None:
        *rest, results = args
        self.worker(*rest, _Stamping(results, time.process_time(), time.perf_counter()))


class _Stamping:
    """A queue stand-in that appends (cpu, wall) since its creation to a result."""

    def __init__(self, queue, cpu0: float, wall0: float) -> None:
        self.queue, self.cpu0, self.wall0 = queue, cpu0, wall0

    def put(self, result) -> None:
        if isinstance(result, tuple) and result and result[0] != "error":
            result = (*result, time.process_time() - self.cpu0, time.perf_counter() - self.wall0)
        self.queue.put(result)


def generator_cpu(parts: list) -> float | None:
    """CPU over wall time of the busiest load process (share of one core):
    from results whose items 4 and 5 are its CPU and wall seconds (added by
    ``Timed``; watch workers report their watching window themselves)."""
    shares = [p[4] / p[5] for p in parts if len(p) >= 6 and p[5] > 0]
    return round(max(shares), 3) if shares else None


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        total += (int(after_name[11]) + int(after_name[12])) / ticks
    return total


def _run(ctx, jobs: list[tuple[Callable, tuple]], results, timeout: float) -> list:
    """Start one process per job (each puts one result), collect, join."""
    procs = [ctx.Process(target=fn, args=(*job_args, results))
             for fn, job_args in jobs]
    for proc in procs:
        proc.start()
    try:
        parts = [results.get(timeout=timeout) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    failed = [p for p in parts if isinstance(p, tuple) and p and p[0] == "error"]
    if failed:
        raise RuntimeError(f"load process failed: {failed[0][1]}")
    return parts


def run_clients(suite: Suite, args, kind: str, clients: int, workers: int,
                over_http: bool = False) -> Sample:
    """``clients`` clients of ``kind`` in ``workers`` processes (the
    suite's native API, or ``over_http`` its HTTP API): a Sample."""
    # http.py imports neither grpc nor twisted: its processes may be forked
    ctx = multiprocessing.get_context("fork" if over_http else suite.context)
    if over_http:
        worker, endpoints = suite.http_worker, suite.http_endpoints(suite.cluster)
    else:
        worker, endpoints = suite.load_worker, suite.cluster.endpoints  # type: ignore
    results = ctx.Queue()
    groups = [g for g in (list(range(clients))[w::workers] for w in range(workers)) if g]
    parts = _run(ctx, [(Timed(worker),
                        (endpoints, g, kind, args.seconds, args.value_size, args.keys))
                       for g in groups],
                 results, args.seconds + 120)
    return merge(parts, generator_cpu=generator_cpu(parts))


def run_watch(suite: Suite, args, watchers: int) -> Sample:
    """``watchers`` watchers over ``--workers`` processes (spread over the
    members) and one stamped writer process: a Sample whose ``expected``
    is writes x watchers."""
    ctx = multiprocessing.get_context(suite.context)
    results, ready, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    endpoints = suite.cluster.endpoints    # type: ignore[attr-defined]
    shares = [len(range(w, watchers, args.workers)) for w in range(args.workers)]
    procs = [ctx.Process(target=suite.watch_worker, args=(   # type: ignore[attr-defined]
        endpoints[i % len(endpoints)], n, args.seconds + args.drain + 120, ready, stop,
        results)) for i, n in enumerate(shares) if n]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    time.sleep(0.2)              # watchers start from a revision: no write is missed
    writes_q = ctx.Queue()
    writer = ctx.Process(target=suite.stamped_writer,  # type: ignore[attr-defined]
                         args=(endpoints[0], args.seconds, args.watch_rate, writes_q))
    writer.start()
    writes = writes_q.get(timeout=args.seconds + 60)
    writer.join()
    time.sleep(args.drain)       # events still on their way count; later ones are missing
    stop.set()
    if isinstance(writes, tuple):
        raise RuntimeError(f"watch writer failed: {writes[1]}")
    parts = [results.get(timeout=args.seconds + 60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    failed = [p for p in parts if p and p[0] == "error"]
    if failed:
        raise RuntimeError(f"watch process failed: {failed[0][1]}")
    sample = merge(parts, expected=writes * watchers, generator_cpu=generator_cpu(parts))
    sample = attrs.evolve(sample, writes=writes)
    return attrs.evolve(sample, elapsed=args.seconds)


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise ValueError(f"no VmRSS for {pid}")


def fill(suite: Suite, args) -> None:
    """Load ``--memory-files`` distinct files over ``--workers`` processes."""
    ctx = multiprocessing.get_context(suite.context)
    results = ctx.Queue()
    endpoints = suite.cluster.endpoints    # type: ignore[attr-defined]
    n, w = args.memory_files, args.workers
    bounds = [(i * n // w, (i + 1) * n // w) for i in range(w)]
    _run(ctx, [(suite.fill_worker, (endpoints[i % len(endpoints)], lo, hi - lo,
                                    args.value_size)) for i, (lo, hi) in enumerate(bounds)],
         results, 3600)


Workload = tuple[str, Callable[[Suite], Sample], str]


def workloads(args) -> list[Workload]:
    """(row name, run, the Suite field naming its API) in the order of
    issue 12's table: native rows, HTTP rows (unless ``--no-http``), watch rows."""
    c, w = args.clients, args.workers
    rows: list[Workload] = [
        ("seq writes x1", lambda s: run_clients(s, args, "write", 1, 1), "api"),
        (f"writes x{c}", lambda s: run_clients(s, args, "write", c, w), "api"),
        (f"lin reads x{c}", lambda s: run_clients(s, args, "read", c, w), "api"),
    ]
    if args.http:
        rows += [
            (f"http writes x{c}", lambda s: run_clients(s, args, "write", c, w, True), "http_api"),
            (f"http lin reads x{c}", lambda s: run_clients(s, args, "read", c, w, True),
             "http_api"),
        ]
    for n in args.watchers:
        rows.append((f"watch {n} @{args.watch_rate:g}/s", _watch_run(args, n), "watch_api"))
    return rows


def _watch_run(args, watchers: int) -> Callable[[Suite], Sample]:
    return lambda suite: run_watch(suite, args, watchers)


def run_suite(suite: Suite, args) -> dict:
    """Start the cluster, run every workload, stop it; the suite's report."""
    print(f"starting a local 3-node {suite.name} cluster ...", flush=True)
    suite.cluster.start()                  # type: ignore[attr-defined]
    try:
        rows: list[Row] = []
        before = suite.cluster.leader_changes()    # type: ignore[attr-defined]
        pids = suite.cluster.pids()        # type: ignore[attr-defined]
        for name, run, api_field in workloads(args):
            cpu0, t0 = process_cpu(pids), time.perf_counter()
            sample = run(suite)
            busy = (process_cpu(pids) - cpu0) / (time.perf_counter() - t0)
            sample = attrs.evolve(sample, server_cpu=round(busy, 2))
            rows.append(summarize(name, getattr(suite, api_field), sample))
            print(f"  {suite.name}: done {name}", flush=True)
        elections = suite.cluster.leader_changes() - before   # type: ignore[attr-defined]
        fo_rows: list = []
        fo_elections: int | None = None
        if args.failover:
            print(f"  {suite.name}: failover rounds ...", flush=True)
            fo_rows, fo_elections = failover.run_failover(
                suite.cluster, suite.failover_worker, suite.context, suite.api, args,
                say=lambda line: print(line, flush=True))
        rss = fill_s = None
        if args.memory:
            began = time.perf_counter()
            fill(suite, args)
            fill_s = round(time.perf_counter() - began, 1)
            time.sleep(1.0)
            rss = [round(rss_mb(pid), 1) for pid in suite.cluster.pids()]  # type: ignore
    finally:
        suite.cluster.stop()               # type: ignore[attr-defined]
    return {"system": suite.name, "api": suite.api, "rows": rows,
            "elections": elections, "rss_mb": rss, "fill_s": fill_s,
            "failover": fo_rows, "failover_elections": fo_elections}


def format_report(reports: list[dict], args) -> str:
    """The table (with ratios when both systems ran), elections and RSS."""
    by = {r["system"]: r for r in reports}
    ours = by.get("doozertw", {}).get("rows", [])
    theirs = by.get("etcd", {}).get("rows")
    if not ours and theirs is not None:
        ours, theirs = theirs, None
    lines = [format_table(ours, theirs)]
    fo = {r["system"]: r.get("failover") for r in reports if r.get("failover")}
    if fo:
        mine, other = fo.get("doozertw"), fo.get("etcd")
        lines.append(format_failover(mine, other) if mine
                     else format_failover(other or [], name="etcd"))
    for r in reports:
        lines.append(f"{r['system']}: leader elections during the workloads: {r['elections']}")
        if r.get("failover_elections") is not None:
            lines.append(f"{r['system']}: leader elections during the failover rounds: "
                         f"{r['failover_elections']} (each round forces at least one)")
        if r["rss_mb"] is not None:
            lines.append(f"{r['system']}: RSS per node after {args.memory_files:,} files of "
                         f"{args.value_size} B: {', '.join(f'{x} MB' for x in r['rss_mb'])} "
                         f"(loaded in {r.get('fill_s')} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    # SIGTERM (e.g. from ``timeout``) unwinds, so the clusters are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"{os.cpu_count()} cpus; {args.clients} clients, {args.workers} load processes, "
          f"{args.seconds:g} s per workload, {args.value_size} B values over {args.keys} keys",
          flush=True)
    reports = [run_suite(s, args) for s in suites(args)]
    print(format_report(reports, args), flush=True)
    print("load average at the end (1, 5, 15 min): %.2f %.2f %.2f; on a shared machine a low "
          "generator CPU share can mean a process waiting for a core" % os.getloadavg(),
          flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([{**r, "rows": [row.as_dict() for row in r["rows"]],
                        "failover": [row.as_dict() for row in r.get("failover") or []]}
                       for r in reports], f, indent=2)
    return reports


if __name__ == "__main__":
    main()
