"""The benchmark's workloads against a local 3-node doozertw cluster over
the doozer protocol (``doozertw.client``'s DoozerClientProtocol).

The cluster is ``doozertw.bench.spawn_cluster``: three durable
``twistd doozer`` nodes (a data directory each, fsync on) in a scratch
directory, ready once a write commits. Load processes are forked (each
runs its own reactor, as in ``doozertw.bench``); client i talks to node
``i % 3``, so two thirds of the writes are forwarded to the leader and
every GET without a revision is a linearizable read (ReadIndex).

The watch rows use the text protocol's streaming watch (one connection and
one ``watch`` per watcher, ``doozertw.benchmarks.textwatch``), the
counterpart of etcd's streaming Watch. With ``--watch-via wait``
(``watch_worker``'s ``via``) they use the doozer protocol's WAIT chains
instead (a new request per event per watcher), and the rows' label
(WATCH_VIAS) says so.
"""

from __future__ import annotations

import time
import urllib.request

from doozertw import bench
from doozertw.benchmarks.textwatch import TextWatcher
from doozertw.client import ConnectionLost, TCPConnector, call
from doozertw.client.uri import parse_address
from doozertw.testing.spawn import listening, writable

API = "doozer protocol"
WATCH_VIAS = {"stream": "text protocol watch stream", "wait": "doozer protocol WAIT chains"}
"""How the watch rows' watchers follow changes (``--watch-via``) -> the rows' API label."""

WATCH_GLOB = "/bench/watch/*"


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


FILL_TRIES = 5


def fill_worker(address: str, first: int, count: int, value_size: int, results) -> None:
    """SET ``count`` distinct files ``/mem/fN`` (N from ``first``), 256 in
    flight; a batch with a failed SET (e.g. "no quorum" on a loaded
    machine) is sent again, at most FILL_TRIES times (a SET with rev -1 may
    be repeated)."""
    from twisted.internet import defer
    value = b"v" * value_size

    async def run(reactor):
        (proto,) = await bench._connect_all(reactor, [address])
        for base in range(first, first + count, 256):
            top = min(base + 256, first + count)
            for _attempt in range(FILL_TRIES):
                outcomes = await defer.DeferredList(
                    [proto.send(call("SET", path=f"/mem/f{i}", value=value, rev=-1))
                     for i in range(base, top)], consumeErrors=True)
                if all(ok for ok, _ in outcomes):
                    break
            else:
                raise RuntimeError(f"files {base}..{top - 1} not written in {FILL_TRIES} tries")
        proto.close()
        return (count,)

    bench._in_reactor(bench._as_deferred(run), results)


class DoozerCluster:
    """Three spawned durable doozertw nodes, each with the extra ``twistd
    doozer`` ``options``; ``endpoints`` are client host:ports."""

    def __init__(self, options: tuple[str, ...] = ()) -> None:
        self.options = tuple(options)
        self.nodes: list = []
        self.endpoints: list[str] = []
        self.web_ports: list[int] = []

    def start(self) -> None:
        self.nodes, self.endpoints, self.web_ports = bench.spawn_cluster(3, options=self.options)

    def leader_changes(self) -> int:
        """The largest ``doozer_leader_changes_total`` of the nodes."""
        return max(self.leader_change_counts())

    def leader_change_counts(self) -> list[int]:
        """Each node's ``doozer_leader_changes_total`` (0 if it has none)."""
        counts = []
        for port in self.web_ports:
            seen = [0.0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("doozer_leader_changes_total"):
                        seen.append(float(line.rsplit(" ", 1)[1]))
            counts.append(int(max(seen)))
        return counts

    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    # -- failover (doozertw.benchmarks.failover) --

    def leaders(self) -> list[int]:
        """Indexes of the nodes whose /metrics say ``doozer_is_leader`` 1
        (a node that does not answer within a second is left out)."""
        out = []
        for i, port in enumerate(self.web_ports):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    text = r.read().decode()
            except OSError:
                continue
            if any(line.startswith("doozer_is_leader") and float(line.rsplit(" ", 1)[1]) == 1
                   for line in text.splitlines()):
                out.append(i)
        return out

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def pause(self, i: int) -> None:
        self.nodes[i].pause()

    def resume(self, i: int) -> None:
        self.nodes[i].resume()

    def restart(self, i: int) -> None:
        """Start killed node ``i`` again (same options and data); return
        once it accepts connections."""
        port = int(self.endpoints[i].rsplit(":", 1)[1])
        self.nodes[i].launch().wait_ready(listening(port), timeout=30)

    def healthy(self) -> bool:
        """One leader, and a write through every node commits."""
        if len(self.leaders()) != 1:
            return False
        try:
            return all(writable(int(e.rsplit(":", 1)[1]), "/bench/healthy")()
                       for e in self.endpoints)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop every node (SIGTERM, reaped) and remove their scratch directory."""
        bench.stop_nodes(self.nodes)


def watch_worker(address: str, watchers: int, limit: float, ready, stop, results,
                 via: str = "stream") -> None:
    """``watchers`` watchers of ``/bench/watch/*`` from the revision after
    REV: each one text-protocol connection holding one streaming ``watch``
    (``textwatch.TextWatcher``), or with ``via`` "wait" one doozer
    connection chaining WAITs (``doozertw.bench.WaitChain``). Tells
    ``ready`` once every watch is in place (no later write is missed),
    ends once ``stop`` (an Event) is set or after ``limit`` seconds; puts
    (events, errors, latencies, seconds watched, CPU seconds used
    meanwhile, seconds watched) on ``results``."""
    follow = _wait_chains if via == "wait" else _watch_streams

    async def run(reactor):
        from twisted.internet.task import deferLater
        (first,) = await bench._connect_all(reactor, [address])
        start_rev = await first.send(call("REV")) + 1
        stats = bench.Stats()
        closers = await follow(reactor, address, watchers, start_rev, stats, first)
        ready.put(watchers)
        start, cpu0 = time.perf_counter(), time.process_time()
        while not stop.is_set() and time.perf_counter() < start + limit:
            await deferLater(reactor, 0.05, lambda: None)
        window, cpu = time.perf_counter() - start, time.process_time() - cpu0
        for close in closers:
            close()
        return len(stats.latencies), stats.errors + stats.lost, stats.latencies, window, cpu, window

    bench._in_reactor(bench._as_deferred(run), results)


async def _watch_streams(reactor, address, watchers, start_rev, stats, first):
    """One TextWatcher per watcher, each on its own connection; returns
    their closers once every watch is answered (refusals count in stats)."""
    from twisted.internet import defer
    from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
    where = parse_address(address)
    protos = [TextWatcher(WATCH_GLOB.encode("ascii"), start_rev, time.perf_counter, stats)
              for _ in range(watchers)]
    await defer.gatherResults(
        [connectProtocol(HostnameEndpoint(reactor, where.host, where.port, timeout=10), p)
         for p in protos], consumeErrors=True)
    await defer.gatherResults([p.watching for p in protos])
    first.close()
    return [p.close for p in protos]


async def _wait_chains(reactor, address, watchers, start_rev, stats, first):
    """One WaitChain per watcher (``first`` is the first one's connection)."""
    protos = [first] + await bench._connect_all(reactor, [address] * (watchers - 1))
    for proto in protos:
        bench.WaitChain(proto, WATCH_GLOB, start_rev, time.perf_counter, stats).start()
    return [proto.close for proto in protos]


def stamped_writer(address: str, seconds: float, rate: float, results) -> None:
    results.put(bench._stamped_writer(address, "/bench/watch/stamp", seconds, rate))


#: A client's writes outstanding at most (one in flight, plus resends).
MAX_OUTSTANDING = 32
#: After an error answer a client waits this long before writing again.
ERROR_PAUSE = 0.02


def failover_worker(addresses: list[str], client_ids: list[int], retry: float,
                    value_size: int, keys: int, ready, stop, results) -> None:
    """Clients ``client_ids`` on ``addresses`` (client i on ``i % len``),
    each writing ``/bench/k{id % keys}`` one at a time; a write unanswered
    after ``retry`` seconds is sent again beside it (it stays outstanding:
    its answer still counts), an error answer is followed by a new write
    after ERROR_PAUSE, and a lost connection moves the client to the next
    address. Tells ``ready`` once connected and writing, stops once
    ``stop`` (an Event) is set; puts (acknowledgement times on
    ``time.monotonic``, errors, writes sent) on ``results``."""
    value = b"x" * value_size

    async def run(reactor):
        from twisted.internet.task import deferLater
        protos = await bench._connect_all(
            reactor, [addresses[c % len(addresses)] for c in client_ids])
        log = _AckLog()
        writers = [_FailoverWriter(reactor, proto, addresses, c % len(addresses),
                                   call("SET", path=f"/bench/k{c % keys}", value=value, rev=-1),
                                   retry, log)
                   for proto, c in zip(protos, client_ids)]
        for writer in writers:
            writer.send()
        ready.put(len(writers))
        while not stop.is_set():
            await deferLater(reactor, 0.02, lambda: None)
        for writer in writers:
            writer.stop()
        return tuple(log.acks), log.errors, log.sent

    bench._in_reactor(bench._as_deferred(run), results)


class _AckLog:
    def __init__(self) -> None:
        self.acks: list[float] = []
        self.errors = 0
        self.sent = 0


class _FailoverWriter:
    """One failover client on a DoozerClientProtocol (see failover_worker);
    ``seq`` numbers its writes: only the newest one drives it."""

    def __init__(self, reactor, proto, addresses, index, request, retry, log) -> None:
        self.reactor, self.proto, self.addresses, self.index = reactor, proto, addresses, index
        self.request, self.retry, self.log = request, retry, log
        self.seq = self.outstanding = 0
        self.timer = None
        self.stopped = self.reconnecting = False

    def send(self) -> None:
        if self.stopped or self.reconnecting:
            return
        self._cancel_timer()
        if self.outstanding >= MAX_OUTSTANDING:
            self.timer = self.reactor.callLater(self.retry, self.send)
            return
        self.seq += 1
        self.outstanding += 1
        self.log.sent += 1
        d = self.proto.send(self.request)
        d.addCallbacks(self._acked, self._failed, callbackArgs=(self.seq,),
                       errbackArgs=(self.seq,))
        self.timer = self.reactor.callLater(self.retry, self.send)

    def _cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _acked(self, _result, seq: int) -> None:
        self.outstanding -= 1
        if self.stopped:
            return
        self.log.acks.append(time.monotonic())
        if seq == self.seq:
            self.send()

    def _failed(self, failure, seq: int) -> None:
        self.outstanding -= 1
        lost = failure.check(ConnectionLost)
        if self.stopped:
            return
        if not lost:
            self.log.errors += 1
        if seq != self.seq:
            return
        self._cancel_timer()
        if lost:
            self.reconnecting = True
            self._reconnect()
            return
        self.timer = self.reactor.callLater(ERROR_PAUSE, self.send)

    def _reconnect(self) -> None:
        if self.stopped:
            return
        self.index = (self.index + 1) % len(self.addresses)
        d = TCPConnector(self.reactor, timeout=2)(parse_address(self.addresses[self.index]))
        d.addCallbacks(self._connected, lambda _f: self.reactor.callLater(0.1, self._reconnect))

    def _connected(self, proto) -> None:
        self.proto, self.reconnecting = proto, False
        if self.stopped:
            proto.close()
            return
        self.send()

    def stop(self) -> None:
        self.stopped = True
        self._cancel_timer()
        self.proto.close()
