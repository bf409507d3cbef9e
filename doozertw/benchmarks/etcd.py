"""A local 3-node etcd cluster and the benchmark's workloads on its native
gRPC API (``/etcdserverpb.KV/Put``, ``KV/Range``, ``Watch/Watch``).

The messages are encoded and decoded by hand (the few fields the bench
needs, from etcd's ``rpc.proto`` and ``kv.proto``) and sent with
``grpcio``'s generic calls on bytes, so the bench needs ``grpcio`` only:
no generated stubs and no protobuf runtime version to agree with the
project's. Load processes are started with the ``spawn`` context (gRPC
does not survive ``fork`` once a channel exists) and each runs one
``grpc.aio`` event loop with its share of the clients, each client
spread over the three members like the doozer connections.

etcd runs with its defaults (fsync on every batch); each member gets a
scratch data directory and loopback ports. Range requests are
linearizable (``serializable`` left false), as etcd's default.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

from doozertw import bench
from doozertw.testing.node_process import free_ports

API = "etcd gRPC"
_STAMP = struct.Struct(">d")
PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"


# -- protobuf, by hand (PURE) -------------------------------------------------

def varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _bytes_field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def _int_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def put_request(key: bytes, value: bytes) -> bytes:
    """A PutRequest{key=1, value=2}."""
    return _bytes_field(1, key) + _bytes_field(2, value)


def range_request(key: bytes) -> bytes:
    """A RangeRequest{key=1} (linearizable: serializable=7 left false)."""
    return _bytes_field(1, key)


def watch_create(key: bytes, range_end: bytes = b"", start_revision: int = 0) -> bytes:
    """A WatchRequest{create_request=1: WatchCreateRequest{key=1,
    range_end=2, start_revision=3}}."""
    inner = _bytes_field(1, key)
    if range_end:
        inner += _bytes_field(2, range_end)
    if start_revision:
        inner += _int_field(3, start_revision)
    return _bytes_field(1, inner)


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a message: an int for a
    varint, bytes for a length-delimited field; fixed32/64 as bytes.
    Raises ValueError on a truncated or malformed message."""
    i, end = 0, len(data)
    while i < end:
        tag, i = _read_varint(data, i)
        number, kind = tag >> 3, tag & 7
        if kind == 0:
            value, i = _read_varint(data, i)
            yield number, value
        elif kind == 2:
            size, i = _read_varint(data, i)
            if i + size > end:
                raise ValueError("truncated field")
            yield number, data[i:i + size]
            i += size
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            if i + width > end:
                raise ValueError("truncated field")
            yield number, data[i:i + width]
            i += width
        else:
            raise ValueError(f"unsupported wire type {kind}")


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def watch_event_values(response: bytes) -> list[bytes]:
    """The values of the events (field 11, Event.kv=2, KeyValue.value=5)
    of one WatchResponse."""
    out: list[bytes] = []
    for number, event in fields(response):
        if number != 11 or not isinstance(event, bytes):
            continue
        for enumber, kv in fields(event):
            if enumber == 2 and isinstance(kv, bytes):
                out.extend(v for n, v in fields(kv) if n == 5 and isinstance(v, bytes))
    return out


def response_revision(response: bytes) -> int:
    """The revision of a response's ResponseHeader (field 1, revision=3)."""
    for number, header in fields(response):
        if number == 1 and isinstance(header, bytes):
            for hnumber, value in fields(header):
                if hnumber == 3 and isinstance(value, int):
                    return value
    raise ValueError("no header revision")


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


# -- the cluster --------------------------------------------------------------

def available() -> str | None:
    """The path of the ``etcd`` binary, or None."""
    return shutil.which("etcd")


class EtcdCluster:
    """Three etcd members with data in a scratch directory (logs
    ``eN.log`` beside them); ``endpoints`` are their client host:ports."""

    def __init__(self, size: int = 3) -> None:
        self.workdir = tempfile.mkdtemp(prefix="doozer-bench-etcd-")
        ports = free_ports(2 * size)
        self.names = [f"e{i + 1}" for i in range(size)]
        self.client = dict(zip(self.names, ports[::2]))
        self.peer = dict(zip(self.names, ports[1::2]))
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{self.client[n]}" for n in self.names]

    def command(self, name: str) -> list[str]:
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer[n]}" for n in self.names)
        client, peer = f"http://127.0.0.1:{self.client[name]}", f"http://127.0.0.1:{self.peer[name]}"
        return [available() or "etcd", "--name", name,
                "--data-dir", os.path.join(self.workdir, name),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-token", "doozer-bench",
                "--initial-cluster-state", "new", "--log-level", "warn"]

    def start(self, timeout: float = 30.0) -> None:
        """Start every member; return once each says it is healthy."""
        for name in self.names:
            self._launch(name)
        deadline = time.monotonic() + timeout
        for name in self.names:
            while not self._healthy(name):
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"etcd {name} did not become healthy; see "
                                       f"{self.workdir}/{name}.log")
                time.sleep(0.1)

    def _launch(self, name: str) -> None:
        """Start member ``name`` (again: its data directory is kept, so the
        ``--initial-cluster`` flags are ignored and it rejoins)."""
        with open(os.path.join(self.workdir, f"{name}.log"), "ab") as log:
            self.procs[name] = subprocess.Popen(
                self.command(name), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)

    # -- failover (doozertw.benchmarks.failover); members by index --

    def leaders(self) -> list[int]:
        """Indexes of the members whose /metrics say ``etcd_server_is_leader``
        1 (a member that does not answer within a second is left out)."""
        out = []
        for i, name in enumerate(self.names):
            url = f"http://127.0.0.1:{self.client[name]}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    text = r.read().decode()
            except OSError:
                continue
            if any(line.startswith("etcd_server_is_leader ")
                   and float(line.rsplit(" ", 1)[1]) == 1 for line in text.splitlines()):
                out.append(i)
        return out

    def kill(self, i: int) -> None:
        proc = self.procs[self.names[i]]
        proc.kill()
        proc.wait(timeout=10)

    def pause(self, i: int) -> None:
        self.procs[self.names[i]].send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.procs[self.names[i]].send_signal(signal.SIGCONT)

    def restart(self, i: int) -> None:
        """Start killed member ``i`` again (``healthy`` tells when it serves)."""
        self._launch(self.names[i])

    def healthy(self) -> bool:
        """Every member says /health true and one of them leads."""
        return all(self._healthy(n) for n in self.names) and len(self.leaders()) == 1

    def _healthy(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client[name]}/health",
                                        timeout=2) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def leader_changes(self) -> int:
        """The largest ``etcd_server_leader_changes_seen_total`` of the members."""
        return max(self.leader_change_counts())

    def leader_change_counts(self) -> list[int]:
        """Each member's ``etcd_server_leader_changes_seen_total`` (0 if none)."""
        counts = []
        for name in self.names:
            seen = [0.0]
            url = f"http://127.0.0.1:{self.client[name]}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("etcd_server_leader_changes_seen_total"):
                        seen.append(float(line.rsplit(" ", 1)[1]))
            counts.append(int(max(seen)))
        return counts

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def stop(self) -> None:
        """SIGTERM every member, reap it (SIGKILL after 10 s); remove the data."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)     # a paused member too
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- load processes (run in spawned children) ---------------------------------

def _guarded(results, coroutine_function, *args) -> None:
    """Put ``asyncio.run(coroutine_function(*args))`` on ``results``, or
    ("error", why) if it raised (the parent never waits in vain)."""
    import asyncio
    try:
        results.put(asyncio.run(coroutine_function(*args)))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        results.put(("error", f"{type(e).__name__}: {e}"))

def _channels(endpoints: list[str]):
    import grpc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    return [grpc.aio.insecure_channel(e) for e in endpoints]


def _unary(channel, method: str):
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def load_worker(endpoints: list[str], client_ids: list[int], kind: str, seconds: float,
                value_size: int, keys: int, results) -> None:
    """Clients ``client_ids``, each one request at a time for ``seconds``
    (``kind`` "write": Put; "read": Range) on key ``/bench/k{id % keys}``,
    on member ``id % len(endpoints)``; puts (count, errors, latencies,
    elapsed) on ``results``."""
    _guarded(results, _load, endpoints, client_ids, kind, seconds, value_size, keys)


async def _load(endpoints, client_ids, kind, seconds, value_size, keys):
    import asyncio
    channels = _channels(endpoints)
    value = b"x" * value_size
    count, errors, latencies = 0, 0, []
    start = time.perf_counter()
    deadline = start + seconds

    async def client(cid: int) -> None:
        nonlocal count, errors
        key = f"/bench/k{cid % keys}".encode()
        method = PUT if kind == "write" else RANGE
        call = _unary(channels[cid % len(channels)], method)
        request = put_request(key, value) if kind == "write" else range_request(key)
        while (sent := time.perf_counter()) < deadline:
            try:
                await call(request, timeout=10)
            except Exception:  # noqa: BLE001 - an RPC error is counted, the client goes on
                errors += 1
                continue
            latencies.append(time.perf_counter() - sent)
            count += 1

    await asyncio.gather(*(client(c) for c in client_ids))
    elapsed = time.perf_counter() - start
    for ch in channels:
        await ch.close()
    return count, errors, latencies, elapsed


def watch_worker(endpoint: str, watchers: int, limit: float, ready, stop, results) -> None:
    """``watchers`` Watch streams on the prefix ``/bench/watch/`` from the
    revision after the current one; each event's value starts with a
    perf_counter stamp. Tells ``ready`` once every stream is created, ends
    once ``stop`` (an Event) is set or after ``limit`` seconds; puts
    (events, errors, latencies, seconds watched, CPU seconds used
    meanwhile, seconds watched) on ``results``."""
    _guarded(results, _watch, endpoint, watchers, limit, ready, stop)


async def _watch(endpoint, watchers, limit, ready, stop):
    import asyncio

    import grpc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    channel = grpc.aio.insecure_channel(endpoint)
    prefix = b"/bench/watch/"
    latencies: list[float] = []
    errors = 0
    streams = []
    header = await _unary(channel, RANGE)(range_request(prefix), timeout=10)
    start = response_revision(header) + 1       # no event after this is missed
    for _ in range(watchers):
        stream = channel.stream_stream(WATCH, request_serializer=None,
                                       response_deserializer=None)()
        await stream.write(watch_create(prefix, prefix_end(prefix), start))
        streams.append(stream)

    async def follow(stream) -> None:
        nonlocal errors
        try:
            async for response in stream:
                now = time.perf_counter()
                for value in watch_event_values(response):
                    latencies.append(now - _STAMP.unpack(value[:8])[0])
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except ValueError:
            errors += 1

    tasks = [asyncio.ensure_future(follow(s)) for s in streams]
    await asyncio.sleep(0.2)     # the create requests reach the server
    ready.put(watchers)
    began, cpu0 = time.perf_counter(), time.process_time()
    while not stop.is_set() and time.perf_counter() < began + limit:
        await asyncio.sleep(0.05)
    window, cpu = time.perf_counter() - began, time.process_time() - cpu0
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    return len(latencies), errors, latencies, window, cpu, window


def stamped_writer(endpoint: str, seconds: float, rate: float, results) -> None:
    """Put perf_counter stamps to ``/bench/watch/stamp`` at ``rate``/s (one
    in flight); puts the number of writes on ``results``."""
    try:
        results.put(_stamped(endpoint, seconds, rate))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        results.put(("error", f"{type(e).__name__}: {e}"))


def _stamped(endpoint: str, seconds: float, rate: float) -> int:
    import grpc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    with grpc.insecure_channel(endpoint) as channel:
        put = channel.unary_unary(PUT, request_serializer=None, response_deserializer=None)
        return bench.paced_stamps(
            seconds, rate, lambda stamp: put(put_request(b"/bench/watch/stamp", stamp),
                                             timeout=10))


def fill_worker(endpoint: str, first: int, count: int, value_size: int, results) -> None:
    """Put ``count`` distinct keys ``/mem/fN`` (N from ``first``), 256 in flight."""
    _guarded(results, _fill, endpoint, first, count, value_size)


async def _fill(endpoint, first, count, value_size):
    import asyncio

    import grpc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    async with grpc.aio.insecure_channel(endpoint) as channel:
        put = _unary(channel, PUT)
        value = b"v" * value_size
        for base in range(first, first + count, 256):
            top = min(base + 256, first + count)
            await asyncio.gather(*(put(put_request(f"/mem/f{i}".encode(), value), timeout=30)
                                   for i in range(base, top)))
    return (count,)


#: A client's writes outstanding at most (one in flight, plus resends).
MAX_OUTSTANDING = 32
#: After an error answer a client waits this long before writing again.
ERROR_PAUSE = 0.02


def failover_worker(endpoints: list[str], client_ids: list[int], retry: float,
                    value_size: int, keys: int, ready, stop, results) -> None:
    """The failover load of ``doozer.failover_worker`` on etcd: Puts of
    ``/bench/k{id % keys}``, client i on member ``i % len(endpoints)``, one
    at a time; a Put unanswered after ``retry`` seconds is sent again
    beside it (its answer still counts), an error answer is followed by a
    new Put after ERROR_PAUSE on the next member. Tells ``ready`` once
    writing, stops once ``stop`` is set; puts (acknowledgement times on
    ``time.monotonic``, errors, writes sent) on ``results``."""
    _guarded(results, _failover, endpoints, client_ids, retry, value_size, keys, ready, stop)


async def _failover(endpoints, client_ids, retry, value_size, keys, ready, stop):
    import asyncio
    channels = _channels(endpoints)
    puts = [_unary(ch, PUT) for ch in channels]
    value = b"x" * value_size
    acks: list[float] = []
    errors = sent = 0

    async def put_once(member: int, request: bytes) -> bool:
        nonlocal errors
        try:
            await puts[member](request, timeout=30)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - an RPC error is counted, the client goes on
            errors += 1
            return False
        acks.append(time.monotonic())
        return True

    async def client(cid: int) -> None:
        nonlocal sent
        member = cid % len(channels)
        request = put_request(f"/bench/k{cid % keys}".encode(), value)
        pending: set = set()
        while not stop.is_set():
            if len(pending) >= MAX_OUTSTANDING:
                await asyncio.wait(pending, timeout=retry, return_when=asyncio.FIRST_COMPLETED)
                pending = {t for t in pending if not t.done()}
                continue
            task = asyncio.ensure_future(put_once(member, request))
            sent += 1
            pending.add(task)
            await asyncio.wait({task}, timeout=retry)
            pending = {t for t in pending if not t.done()}
            if task.done() and not task.result():
                member = (member + 1) % len(channels)
                await asyncio.sleep(ERROR_PAUSE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    tasks = [asyncio.ensure_future(client(c)) for c in client_ids]
    ready.put(len(client_ids))
    await asyncio.gather(*tasks)
    for ch in channels:
        await ch.close()
    return tuple(acks), errors, sent
