"""Benchmark: drive nodes over the doozer protocol and print figures.

    python -m doozertw.bench --spawn                      # start a node, measure it
    python -m doozertw.bench --spawn-cluster 3            # start 3 durable nodes
    python -m doozertw.bench --spawn-cluster 3 --in-memory
    python -m doozertw.bench -a 127.0.0.1:8046 -a ...     # measure running nodes
    python -m doozertw.bench --cluster [--compare-etcd]   # side by side (doozertw.benchmarks)

N connections (spread over the given addresses) each keep ``--depth``
pipelined requests in flight; load comes from ``--workers`` processes so the
client is not the bottleneck on one core. Phases: ``write`` (SET, clobber),
``read`` (GET), ``watch`` (a writer sets a key ``--watch-rate`` times a second
while ``--watchers`` connections chain WAITs from the next revision;
latency is from the SET being sent to each watcher receiving its event). Prints
throughput and p50/p99 latency per phase; ``--json FILE`` also writes them as
JSON. With ``--spawn`` or ``--spawn-cluster`` the nodes' ``/metrics`` give the
fsyncs made during the write phase: ``fsyncs/write`` is fsyncs on all nodes
per acknowledged write (group commit makes it far below the node count).

The load is made with doozertw.client: each worker process runs its own
reactor with ``DoozerClientProtocol`` connections (``Pipeline`` and
``WaitChain`` below); the stamped writer uses the BlockingClient. Spawned
nodes are ``doozertw.testing.spawn.Twistd`` processes, ready once they
accept connections (a cluster: once a write commits).
"""

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import struct
import tempfile
import time

import attrs

from doozertw.client import BlockingClient, ConnectionLost, DoozerError, TCPConnector, call
from doozertw.client.uri import parse_address
from doozertw.testing.node_process import endpoint, free_port, free_ports
from doozertw.testing.spawn import Twistd, listening, start_twistd, writable

_STAMP = struct.Struct(">d")


@attrs.define
class Stats:
    """What one worker measured: answers, error answers, latencies (s)."""

    errors: int = 0
    lost: int = 0
    latencies: list = attrs.field(factory=list)


class Pipeline:
    """Keeps ``len(calls)`` requests in flight on one DoozerClientProtocol:
    slot i always sends ``calls[i]``, again as soon as it is answered,
    until ``now()`` passes ``deadline``. Every answer before the deadline
    adds its latency to ``stats``; an error answer also counts in
    ``stats.errors``. A lost connection ends the pipeline (``stats.lost``)."""

    def __init__(self, proto, calls, now, deadline, stats):
        self.slots = [_Slot(proto, c, now, deadline, stats) for c in calls]

    def start(self):
        for slot in self.slots:
            slot.send()


class _Slot:
    """One request of a Pipeline, re-sent on every answer; it is the
    ``answer`` object of ``DoozerClientProtocol.send`` (no Deferreds)."""

    __slots__ = ("proto", "call", "now", "deadline", "stats", "sent")

    def __init__(self, proto, call_, now, deadline, stats):
        self.proto = proto
        self.call = call_
        self.now = now
        self.deadline = deadline
        self.stats = stats
        self.sent = 0.0

    def send(self):
        self.sent = self.now()
        self.proto.send(self.call, self)

    def callback(self, _result):
        done = self.now()
        if done < self.deadline:
            self.stats.latencies.append(done - self.sent)
            self.send()

    def errback(self, error):
        if isinstance(error, ConnectionLost):
            self.stats.lost += 1
            return
        if self.now() < self.deadline:
            self.stats.errors += 1
        self.callback(None)


class WaitChain:
    """Chains WAITs on ``glob`` from ``rev`` over one DoozerClientProtocol;
    each event's value starts with a perf_counter stamp (``_STAMP``) and
    adds ``now() - stamp`` to ``stats``."""

    def __init__(self, proto, glob, rev, now, stats):
        self.proto = proto
        self.glob = glob
        self.rev = rev
        self.now = now
        self.stats = stats

    def start(self):
        d = self.proto.send(call("WAIT", path=self.glob, rev=self.rev))
        d.addCallbacks(self._event, self._failed)

    def _event(self, event):
        self.stats.latencies.append(self.now() - _STAMP.unpack(event.value[:8])[0])
        self.rev = event.rev + 1
        self.start()

    def _failed(self, failure):
        if failure.check(ConnectionLost):
            self.stats.lost += 1
        else:
            failure.trap(DoozerError)
            self.stats.errors += 1


def _in_reactor(run, results):
    """Run ``run(reactor)`` (a Deferred of a result tuple) in this process's
    own reactor; put the result, or ("error", why), on ``results``.

    Workers are forked before any reactor is imported, so each one gets a
    fresh reactor here."""
    from twisted.internet import reactor

    def finish(outcome):
        if isinstance(outcome, tuple):
            results.put(outcome)
        else:
            results.put(("error", outcome.getErrorMessage()))
        reactor.stop()

    reactor.callWhenRunning(lambda: run(reactor).addBoth(finish))
    reactor.run()


def _connect_all(reactor, addresses):
    from twisted.internet import defer

    connector = TCPConnector(reactor, timeout=10)
    return defer.gatherResults([connector(parse_address(a)) for a in addresses],
                               consumeErrors=True)


def _load_worker(addresses, conn_ids, phase, depth, seconds, value_size, results):
    """Run one phase on some connections; put (count, errors, latencies, elapsed)."""
    value = b"x" * value_size

    def calls(cid):
        paths = [f"/bench/c{cid}/k{slot}" for slot in range(depth)]
        if phase == "write":
            return [call("SET", path=p, value=value, rev=-1) for p in paths]
        return [call("GET", path=p) for p in paths]

    async def run(reactor):
        from twisted.internet.task import deferLater
        protos = await _connect_all(reactor, [addresses[c % len(addresses)] for c in conn_ids])
        stats = Stats()
        start = time.perf_counter()
        for proto, cid in zip(protos, conn_ids):
            Pipeline(proto, calls(cid), time.perf_counter, start + seconds, stats).start()
        await deferLater(reactor, seconds, lambda: None)
        elapsed = time.perf_counter() - start
        for proto in protos:
            proto.close()
        return len(stats.latencies), stats.errors + stats.lost, stats.latencies, elapsed

    _in_reactor(_as_deferred(run), results)


def _watch_worker(address, pattern, watchers, seconds, results):
    """Watchers chaining WAITs on ``pattern``; latency from the stamp in each value."""
    async def run(reactor):
        from twisted.internet.task import deferLater
        protos = await _connect_all(reactor, [address] * watchers)
        start_rev = await protos[0].send(call("REV")) + 1
        stats = Stats()
        for proto in protos:
            WaitChain(proto, pattern, start_rev, time.perf_counter, stats).start()
        await deferLater(reactor, seconds + 1.0, lambda: None)
        for proto in protos:
            proto.close()
        return len(stats.latencies), stats.errors + stats.lost, stats.latencies, seconds

    _in_reactor(_as_deferred(run), results)


def _as_deferred(coroutine_function):
    from twisted.internet import defer
    return lambda reactor: defer.ensureDeferred(coroutine_function(reactor))


def paced_stamps(seconds, rate, write):
    """Call ``write(stamp)`` at ``rate`` calls/s for ``seconds`` (one at a
    time: a slow write lowers the rate), ``stamp`` being the perf_counter
    of the call packed for the watch row; returns how many were made."""
    start = time.perf_counter()
    writes = 0
    while (now := time.perf_counter()) < start + seconds:
        due = start + writes / rate
        if now < due:
            time.sleep(min(0.05, due - now))
            continue
        write(_STAMP.pack(time.perf_counter()) + b"-" * 8)
        writes += 1
    return writes


def _stamped_writer(address, path, seconds, rate):
    """Write perf_counter stamps to ``path`` at ``rate`` writes/s (one in flight at most)."""
    with BlockingClient(address, suspend_timeout=0.0) as client:
        return paced_stamps(seconds, rate, lambda stamp: client.set(path, -1, stamp))


def _collect(results, procs, seconds):
    parts = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    failed = [p[1] for p in parts if p[0] == "error"]
    if failed:
        raise RuntimeError(f"bench worker failed: {failed[0]}")
    return parts


def _summary(phase, parts, unit="ops"):
    count = sum(p[0] for p in parts)
    errors = sum(p[1] for p in parts)
    elapsed = max(p[3] for p in parts)
    lat = sorted(x for p in parts for x in p[2])

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None
    return {"phase": phase, unit: count, "errors": errors, "seconds": round(elapsed, 3),
            f"{unit}_per_s": round(count / elapsed, 1) if elapsed else 0.0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def run_load(addresses, phase, connections, depth, seconds, workers, value_size):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    groups = [list(range(connections))[w::workers] for w in range(workers)]
    procs = [ctx.Process(target=_load_worker, args=(
        addresses, g, phase, depth, seconds, value_size, results)) for g in groups if g]
    for p in procs:
        p.start()
    return _summary(phase, _collect(results, procs, seconds))


def run_watch(addresses, watchers, seconds, rate, workers):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    pattern, path = "/bench/watch/*", "/bench/watch/stamp"
    shares = [len(range(w, watchers, workers)) for w in range(workers)]
    procs = [ctx.Process(target=_watch_worker, args=(
        addresses[i % len(addresses)], pattern, n, seconds, results))
        for i, n in enumerate(shares) if n]
    for p in procs:
        p.start()
    time.sleep(0.5)
    writes = _stamped_writer(addresses[0], path, seconds, rate)
    parts = _collect(results, procs, seconds)
    summary = _summary("watch", parts, unit="events")
    summary.update(writes=writes, watchers=watchers, write_rate=rate)
    return summary


def spawn_node(port: int, web_port: int | None = None, in_memory: bool = False) -> Twistd:
    """Start ``twistd doozer`` on ``port`` (its log: ``node.log`` in a
    scratch directory); return it once it accepts connections."""
    workdir = tempfile.mkdtemp(prefix="doozer-bench-")
    options = ["--listen", endpoint(port), "--web", endpoint(web_port) if web_port else "none",
               "--peer-listen", endpoint(free_port())] + (["--in-memory"] if in_memory else [])
    return start_twistd(options, workdir, listening(port), timeout=20)


def _write_cluster_file(workdir: str, ports: dict[str, tuple[int, int, int]]) -> str:
    """Write ``cluster.yaml`` (and a fresh ``peer-secret``) into ``workdir``
    for nodes {name: (client, web, peer) ports}; returns the file's path."""
    secret = os.path.join(workdir, "peer-secret")
    with open(secret, "w", encoding="ascii") as g:
        g.write(secrets.token_hex(32) + "\n")
    config = os.path.join(workdir, "cluster.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"cluster: bench\npeer_secret_file: {secret}\nnodes:\n")
        for name, (client, web, peer) in ports.items():
            f.write(f"  {name}:\n    listen: {endpoint(client)}\n"
                    f"    web: {endpoint(web)}\n    peer_listen: {endpoint(peer)}\n")
    return config


def spawn_cluster(size: int, in_memory: bool = False, options: tuple[str, ...] = ()
                  ) -> tuple[list[Twistd], list[str], list[int]]:
    """Start ``size`` nodes of one cluster (a YAML file in a scratch
    directory, their logs ``nK.log`` beside it), each with the extra
    ``twistd doozer`` ``options``; returns (nodes, client addresses, web
    ports) once every node accepts and a write commits."""
    workdir = tempfile.mkdtemp(prefix="doozer-bench-cluster-")
    picked = free_ports(3 * size)
    ports = {f"n{i + 1}": (picked[3 * i], picked[3 * i + 1], picked[3 * i + 2])
             for i in range(size)}
    config = _write_cluster_file(workdir, ports)
    more = (("--in-memory",) if in_memory else ()) + tuple(options)
    nodes = [Twistd(("--config", config, "--name", name, *more), workdir, name)
             for name in ports]
    try:
        for node in nodes:
            node.launch()
        for node, (client, _, _) in zip(nodes, ports.values()):
            node.wait_ready(listening(client), timeout=20)
        first = next(iter(ports.values()))[0]
        nodes[0].wait_ready(writable(first, "/bench/ready"), timeout=30)
    except BaseException:
        for node in nodes:      # a cluster that never became ready is not left running
            node.kill()
        raise
    addresses = [f"127.0.0.1:{client}" for client, _, _ in ports.values()]
    return nodes, addresses, [web for _, web, _ in ports.values()]


def stop_nodes(nodes: list[Twistd], timeout: float = 10) -> None:
    """Stop spawned ``nodes`` (SIGTERM, reaped) and remove their scratch
    directories (logs and data included)."""
    for node in nodes:
        node.terminate()
    for node in nodes:
        node.reap(timeout=timeout)
    for directory in {node.directory for node in nodes}:
        shutil.rmtree(directory, ignore_errors=True)


def fsyncs(web_ports):
    """Total ``doozer_wal_fsyncs_total`` over the nodes' /metrics."""
    import urllib.request
    total = 0.0
    for port in web_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("doozer_wal_fsyncs_total"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m doozertw.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-a", "--addr", action="append", default=[],
                   help="host:port of a node's client port (repeat for a cluster)")
    p.add_argument("--spawn", action="store_true", help="start a local node to measure")
    p.add_argument("--spawn-cluster", type=int, metavar="N",
                   help="start a local cluster of N nodes to measure")
    p.add_argument("--in-memory", action="store_true",
                   help="spawned nodes keep no data directory (no fsync)")
    p.add_argument("-c", "--connections", type=int, default=8)
    p.add_argument("-d", "--depth", type=int, default=32, help="requests in flight per connection")
    p.add_argument("-s", "--seconds", type=float, default=5.0, help="per phase")
    p.add_argument("--workers", type=int, default=2, help="client processes")
    p.add_argument("--value-size", type=int, default=64)
    p.add_argument("--watchers", type=int, default=16, help="watch phase: watching connections")
    p.add_argument("--watch-rate", type=float, default=250.0,
                   help="watch phase: writes/s to the watched key")
    p.add_argument("--phases", default="write,read,watch")
    p.add_argument("--json", help="also write results to this file")
    return p.parse_args(argv)


def main(argv=None):
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if "--cluster" in argv or "--compare-etcd" in argv:   # the side-by-side mode
        from doozertw.benchmarks.cluster import main as cluster_main
        return cluster_main(argv)
    args = parse_args(argv)
    nodes: list[Twistd] = []
    web_ports: list[int] = []
    if args.spawn:
        port, web = free_ports(2)
        nodes = [spawn_node(port, web, args.in_memory)]
        args.addr, web_ports = [f"127.0.0.1:{port}"], [web]
    elif args.spawn_cluster:
        nodes, args.addr, web_ports = spawn_cluster(args.spawn_cluster, args.in_memory)
    if not args.addr:
        args.addr = ["127.0.0.1:8046"]
    try:
        results = []
        for phase in args.phases.split(","):
            before = fsyncs(web_ports) if web_ports else None
            if phase == "watch":
                results.append(run_watch(args.addr, args.watchers, args.seconds, args.watch_rate,
                                           args.workers))
            else:
                results.append(run_load(args.addr, phase, args.connections, args.depth,
                                        args.seconds, args.workers, args.value_size))
            if before is not None and phase == "write" and results[-1]["ops"]:
                results[-1]["fsyncs_per_write"] = round(
                    (fsyncs(web_ports) - before) / results[-1]["ops"], 4)
            print(_format(results[-1]), flush=True)
    finally:
        stop_nodes(nodes)
    report = {"addresses": args.addr, "connections": args.connections, "depth": args.depth,
              "workers": args.workers, "value_size": args.value_size,
              "seconds": args.seconds, "cpus": os.cpu_count(), "results": results}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


def _format(r):
    unit = "events" if r["phase"] == "watch" else "ops"
    extra = f", {r['fsyncs_per_write']} fsyncs/write" if "fsyncs_per_write" in r else ""
    return (f"{r['phase']:>6}: {r[unit + '_per_s']:>10.1f} {unit}/s  "
            f"p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  ({r[unit]} {unit}, "
            f"{r['errors']} errors{extra})")


if __name__ == "__main__":
    main()
