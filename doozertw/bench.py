"""Benchmark: drive nodes over the doozer protocol and print figures.

    python -m doozertw.bench --spawn                      # start a node, measure it
    python -m doozertw.bench --spawn-cluster 3            # start 3 durable nodes
    python -m doozertw.bench --spawn-cluster 3 --in-memory
    python -m doozertw.bench -a 127.0.0.1:8046 -a ...     # measure running nodes

N connections (spread over the given addresses) each keep ``--depth``
pipelined requests in flight; load comes from ``--workers`` processes so the
client is not the bottleneck on one core. Phases: ``write`` (SET, clobber),
``read`` (GET), ``watch`` (a writer sets a key ``--watch-rate`` times a second
while ``--watchers`` connections chain WAITs from the next revision;
latency is from the SET being sent to each watcher receiving its event). Prints throughput and p50/p99 latency
per phase; ``--json FILE`` also writes them as JSON. With ``--spawn`` or
``--spawn-cluster`` the nodes' ``/metrics`` give the fsyncs made during the
write phase: ``fsyncs/write`` is fsyncs on all nodes per acknowledged write
(group commit makes it far below the node count).
"""

import argparse
import json
import multiprocessing
import os
import secrets
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from doozertw.frontends.msg import LENGTH, VERBS, Request, Response, frame

_STAMP = struct.Struct(">d")


class Connection:
    """One non-blocking doozer connection keeping ``depth`` requests in flight."""

    def __init__(self, address, next_request, depth):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.next_request = next_request
        self.depth = depth
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.sent_at = {}

    def send(self, tag, now):
        request = self.next_request(tag)
        if request is not None:
            self.sent_at[tag] = now
            self.outbuf += request

    def flush(self):
        if self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                return
            del self.outbuf[:sent]

    def responses(self):
        data = self.sock.recv(1 << 18)
        if not data:
            raise ConnectionError("server closed the connection")
        self.inbuf += data
        buf, pos, out = self.inbuf, 0, []
        while len(buf) - pos >= 4:
            (size,) = LENGTH.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            out.append(Response.FromString(bytes(buf[pos + 4:pos + 4 + size])))
            pos += 4 + size
        del buf[:pos]
        return out


def _request(tag, verb, **fields):
    return frame(Request(tag=tag, verb=VERBS[verb], **fields))


def _load_worker(addresses, conn_ids, phase, depth, seconds, value_size, results):
    """Run one phase on some connections; put (count, errors, latencies, elapsed)."""
    value = b"x" * value_size
    conns = []
    for cid in conn_ids:
        paths = [f"/bench/c{cid}/k{tag}" for tag in range(depth)]
        if phase == "write":
            frames = [_request(t, "SET", path=paths[t], value=value, rev=-1)
                      for t in range(depth)]
        else:
            frames = [_request(t, "GET", path=paths[t]) for t in range(depth)]
        conns.append(Connection(addresses[cid % len(addresses)], frames.__getitem__, depth))
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    latencies, errors = [], 0
    start = time.perf_counter()
    deadline = start + seconds
    for c in conns:
        for tag in range(depth):
            c.send(tag, start)
        c.flush()
    now = start
    while now < deadline:
        for key, _ in sel.select(timeout=0.1):
            c = key.data
            now = time.perf_counter()
            for resp in c.responses():
                latencies.append(now - c.sent_at[resp.tag])
                if resp.HasField("err_code"):
                    errors += 1
                if now < deadline:
                    c.send(resp.tag, now)
            c.flush()
        now = time.perf_counter()
    elapsed = time.perf_counter() - start
    for c in conns:
        c.sock.close()
    results.put((len(latencies), errors, latencies, elapsed))


def _watch_worker(address, pattern, watchers, seconds, results):
    """Watchers chaining WAITs on ``pattern``; latency from the stamp in each value."""
    rev_probe = socket.create_connection(address_tuple(address), timeout=10)
    start_rev = _simple_call(rev_probe, _request(1, "REV")).rev + 1
    rev_probe.close()
    next_rev = {}

    def waiter(cid):
        def next_request(tag):
            return _request(tag, "WAIT", path=pattern, rev=next_rev[cid])
        return next_request

    conns = []
    for cid in range(watchers):
        next_rev[cid] = start_rev
        conns.append(Connection(address, waiter(cid), 1))
    sel = selectors.DefaultSelector()
    for cid, c in enumerate(conns):
        sel.register(c.sock, selectors.EVENT_READ, (cid, c))
        c.send(0, 0.0)
        c.flush()
    latencies = []
    deadline = time.perf_counter() + seconds + 1.0
    while time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=0.1):
            cid, c = key.data
            now = time.perf_counter()
            for resp in c.responses():
                if resp.HasField("err_code"):
                    raise RuntimeError(f"WAIT failed: {resp}")
                latencies.append(now - _STAMP.unpack(resp.value[:8])[0])
                next_rev[cid] = resp.rev + 1
                c.send(0, now)
            c.flush()
    for c in conns:
        c.sock.close()
    results.put((len(latencies), 0, latencies, seconds))


def address_tuple(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _simple_call(sock, request):
    sock.sendall(request)
    header = _recv_exactly(sock, 4)
    return Response.FromString(_recv_exactly(sock, LENGTH.unpack(header)[0]))


def _recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _stamped_writer(address, path, seconds, rate):
    """Write perf_counter stamps to ``path`` at ``rate`` writes/s (one in flight at most)."""
    def next_request(tag):
        return _request(tag, "SET", path=path, rev=-1,
                        value=_STAMP.pack(time.perf_counter()) + b"-" * 8)
    conn = Connection(address, next_request, 1)
    sel = selectors.DefaultSelector()
    sel.register(conn.sock, selectors.EVENT_READ)
    start = time.perf_counter()
    deadline = start + seconds
    writes = in_flight = 0
    while (now := time.perf_counter()) < deadline:
        due = start + writes / rate
        if not in_flight and now >= due:
            conn.send(0, now)
            conn.flush()
            in_flight, writes = 1, writes + 1
        if sel.select(timeout=max(0.0, min(0.05, due - now)) if not in_flight else 0.05):
            in_flight -= len(conn.responses())
    conn.sock.close()
    return writes


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
    parts = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return _summary(phase, parts)


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
    parts = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    summary = _summary("watch", parts, unit="events")
    summary.update(writes=writes, watchers=watchers, write_rate=rate)
    return summary


def _twistd():
    return shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"


def spawn_node(port, web_port=None, in_memory=False):
    """Start ``twistd -n doozer`` on ``port``; return the Popen once it accepts."""
    workdir = tempfile.mkdtemp(prefix="doozer-bench-")
    web = f"tcp:{web_port}:interface=127.0.0.1" if web_port else "none"
    proc = subprocess.Popen(
        [_twistd(), "-n", "--pidfile=", "-l", os.path.join(workdir, "node.log"), "doozer",
         "--listen", f"tcp:{port}:interface=127.0.0.1", "--web", web,
         "--peer-listen", f"tcp:{_free_port()}:interface=127.0.0.1"]
        + (["--in-memory"] if in_memory else []),
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_accepting(proc, port, workdir)
    return proc


def spawn_cluster(size, in_memory=False):
    """Start ``size`` nodes of one cluster (a YAML file in a scratch
    directory); returns (procs, client addresses, web ports)."""
    workdir = tempfile.mkdtemp(prefix="doozer-bench-cluster-")
    ports = {f"n{i + 1}": (_free_port(), _free_port(), _free_port()) for i in range(size)}
    config = os.path.join(workdir, "cluster.yaml")
    with open(config, "w", encoding="utf-8") as f:
        secret = os.path.join(workdir, "peer-secret")
        with open(secret, "w", encoding="ascii") as g:
            g.write(secrets.token_hex(32) + "\n")
        f.write(f"cluster: bench\npeer_secret_file: {secret}\nnodes:\n")
        for name, (client, web, peer) in ports.items():
            f.write(f"  {name}:\n    listen: tcp:{client}:interface=127.0.0.1\n"
                    f"    web: tcp:{web}:interface=127.0.0.1\n"
                    f"    peer_listen: tcp:{peer}:interface=127.0.0.1\n")
    procs = []
    for name in ports:
        procs.append(subprocess.Popen(
            [_twistd(), "-n", "--pidfile=", "-l", os.path.join(workdir, f"{name}.log"),
             "doozer", "--config", config, "--name", name]
            + (["--in-memory"] if in_memory else []),
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    for proc, (client, _, _) in zip(procs, ports.values()):
        _wait_accepting(proc, client, workdir)
    addresses = [f"127.0.0.1:{client}" for client, _, _ in ports.values()]
    _wait_writable(addresses[0])
    return procs, addresses, [web for _, web, _ in ports.values()]


def _wait_writable(address, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(address_tuple(address), timeout=5) as sock:
                reply = _simple_call(sock, _request(1, "SET", path="/bench/ready", rev=-1,
                                                    value=b"1"))
                if not reply.HasField("err_code"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the cluster never took a write")


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


def _wait_accepting(proc, port, workdir):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"twistd exited; see {workdir}/node.log")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("node did not start listening")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    args = parse_args(argv)
    procs, web_ports = [], []
    if args.spawn:
        port, web = _free_port(), _free_port()
        procs = [spawn_node(port, web, args.in_memory)]
        args.addr, web_ports = [f"127.0.0.1:{port}"], [web]
    elif args.spawn_cluster:
        procs, args.addr, web_ports = spawn_cluster(args.spawn_cluster, args.in_memory)
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
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
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
