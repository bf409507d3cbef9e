"""The benchmark's workloads against a local 3-node doozertw cluster over
the doozer protocol (``doozertw.client``'s DoozerClientProtocol).

The cluster is ``doozertw.bench.spawn_cluster``: three durable
``twistd doozer`` nodes (a data directory each, fsync on) in a scratch
directory, ready once a write commits. Load processes are forked (each
runs its own reactor, as in ``doozertw.bench``); client i talks to node
``i % 3``, so two thirds of the writes are forwarded to the leader and
every GET without a revision is a linearizable read (ReadIndex).
"""

from __future__ import annotations

import shutil
import time
import urllib.request

from doozertw import bench
from doozertw.client import call

API = "doozer protocol"


def load_worker(addresses: list[str], client_ids: list[int], kind: str, seconds: float,
                value_size: int, keys: int, results) -> None:
    """Clients ``client_ids``, one request at a time each for ``seconds``
    (``kind`` "write": SET rev -1; "read": GET) on ``/bench/k{id % keys}``,
    client i on ``addresses[i % len]``; puts (count, errors, latencies,
    elapsed) on ``results``."""
    value = b"x" * value_size

    def request(cid: int):
        path = f"/bench/k{cid % keys}"
        if kind == "write":
            return call("SET", path=path, value=value, rev=-1)
        return call("GET", path=path)

    async def run(reactor):
        from twisted.internet.task import deferLater
        protos = await bench._connect_all(
            reactor, [addresses[c % len(addresses)] for c in client_ids])
        stats = bench.Stats()
        start = time.perf_counter()
        for proto, cid in zip(protos, client_ids):
            bench.Pipeline(proto, [request(cid)], time.perf_counter, start + seconds,
                           stats).start()
        await deferLater(reactor, seconds, lambda: None)
        elapsed = time.perf_counter() - start
        for proto in protos:
            proto.close()
        return len(stats.latencies), stats.errors + stats.lost, stats.latencies, elapsed

    bench._in_reactor(bench._as_deferred(run), results)


def fill_worker(address: str, first: int, count: int, value_size: int, results) -> None:
    """SET ``count`` distinct files ``/mem/fN`` (N from ``first``), 256 in flight."""
    from twisted.internet import defer
    value = b"v" * value_size

    async def run(reactor):
        (proto,) = await bench._connect_all(reactor, [address])
        for base in range(first, first + count, 256):
            top = min(base + 256, first + count)
            await defer.gatherResults(
                [proto.send(call("SET", path=f"/mem/f{i}", value=value, rev=-1))
                 for i in range(base, top)], consumeErrors=True)
        proto.close()
        return (count,)

    bench._in_reactor(bench._as_deferred(run), results)


class DoozerCluster:
    """Three spawned durable doozertw nodes; ``endpoints`` are client host:ports."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.endpoints: list[str] = []
        self.web_ports: list[int] = []

    def start(self) -> None:
        self.nodes, self.endpoints, self.web_ports = bench.spawn_cluster(3)

    def leader_changes(self) -> int:
        """The largest ``doozer_leader_changes_total`` of the nodes."""
        seen = [0.0]
        for port in self.web_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("doozer_leader_changes_total"):
                        seen.append(float(line.rsplit(" ", 1)[1]))
        return int(max(seen))

    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    def stop(self) -> None:
        """Stop every node (SIGTERM, reaped) and remove their scratch directory."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.reap(timeout=10)
        for directory in {node.directory for node in self.nodes}:
            shutil.rmtree(directory, ignore_errors=True)


def watch_worker(address: str, watchers: int, limit: float, ready, stop, results) -> None:
    """``watchers`` connections chaining WAITs on ``/bench/watch/*`` from
    the revision after REV (``doozertw.bench.WaitChain``); tells ``ready``
    once every chain is started (no later write is missed), ends once
    ``stop`` (an Event) is set or after ``limit`` seconds; puts (events,
    errors, latencies, seconds watched, CPU seconds used meanwhile,
    seconds watched)."""
    async def run(reactor):
        from twisted.internet.task import deferLater
        protos = await bench._connect_all(reactor, [address] * watchers)
        start_rev = await protos[0].send(call("REV")) + 1
        stats = bench.Stats()
        for proto in protos:
            bench.WaitChain(proto, "/bench/watch/*", start_rev, time.perf_counter, stats).start()
        ready.put(watchers)
        start, cpu0 = time.perf_counter(), time.process_time()
        while not stop.is_set() and time.perf_counter() < start + limit:
            await deferLater(reactor, 0.05, lambda: None)
        window, cpu = time.perf_counter() - start, time.process_time() - cpu0
        for proto in protos:
            proto.close()
        return len(stats.latencies), stats.errors + stats.lost, stats.latencies, window, cpu, window

    bench._in_reactor(bench._as_deferred(run), results)


def stamped_writer(address: str, seconds: float, rate: float, results) -> None:
    results.put(bench._stamped_writer(address, "/bench/watch/stamp", seconds, rate))
