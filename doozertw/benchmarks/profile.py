"""``python -m doozertw.benchmarks.profile``: where a node's CPU goes.

Starts a local 3-node durable cluster (as ``python -m doozertw.bench
--cluster`` does) with every node's reactor thread under cProfile, timed
by that thread's CPU time (``time.thread_time``: waiting for a core on a
busy machine does not count), runs one workload of the cluster benchmark
(``write``, ``read``: 64 clients; ``seq``: one client writing) and prints,
per node, the CPU of the reactor thread, the node's total CPU per
acknowledged operation (all threads, from /proc, without the profiler's
own cost in a second, unprofiled run) and the share of the reactor
thread's CPU in each stage of the path. ``--save DIR`` keeps the pstats
files (``pstats``/``snakeviz`` read them).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pstats
import sys
import tempfile
import urllib.request

from doozertw import bench
from doozertw.benchmarks import doozer
from doozertw.testing import spawn

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("client port: parse, call the node, answer", ("frontends/doozer.py:dataReceived",)),
    ("peer links: frames, HMAC, decode, Raft step", ("peer/protocol.py:dataReceived",)),
    ("  of it: the driver (Raft step and Ready)", ("cluster/driver.py:receive",)),
    ("timers and writer-thread callbacks", ("twisted/internet/base.py:runUntilCurrent",)),
    ("  of it: a persisted Ready (send, apply, advance)", ("cluster/driver.py:_persisted",)),
    ("apply: proposal decode, dedup, store", ("cluster/dedup.py:apply",)),
    ("proposer: propose, forward, resolve",
     ("cluster/proposer.py:propose", "cluster/proposer.py:_forwarded",
      "cluster/proposer.py:_applied")),
    ("reads: ReadIndex rounds and release", ("cluster/reads.py:_start",
                                            "cluster/reads.py:_release")),
    ("Raft message encoding", ("consensus/codec.py:encode",)),
    ("frame HMAC tags", ("peer/auth.py:_tag",)),
    ("socket writes", ("twisted/internet/abstract.py:doWrite",)),
)

_WRAPPER = """import cProfile, sys, time, atexit
prof, out = cProfile.Profile(time.thread_time), sys.argv[1]
atexit.register(lambda: (prof.disable(), prof.dump_stats(out)))
sys.argv = ["twistd"] + sys.argv[2:]
from twisted.scripts.twistd import run
prof.enable()
run()
"""


def stage_shares(stats: dict) -> tuple[float, list[tuple[str, float]]]:
    """(CPU seconds of the main loop, [(stage, share of it)]) from a
    pstats ``stats`` mapping ((file, line, name) -> (cc, nc, tt, ct, callers))."""
    def cumulative(patterns: tuple[str, ...]) -> float:
        return sum(v[3] for (path, _line, name), v in stats.items()
                   if any(_matches(path, name, p) for p in patterns))
    loop = cumulative(("twisted/internet/base.py:mainLoop",))
    if loop <= 0:
        return 0.0, [(label, 0.0) for label, _ in STAGES]
    return loop, [(label, cumulative(patterns) / loop) for label, patterns in STAGES]


def _matches(path: str, name: str, pattern: str) -> bool:
    file_part, _, function = pattern.partition(":")
    return path.endswith(file_part) and name == function


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_workload(kind: str, seconds: float, options: tuple[str, ...],
                 profile_dir: str | None) -> dict:
    """One cluster, one workload; returns ops, per-node CPU and leaders."""
    original = spawn.twistd_command
    if profile_dir is not None:
        wrapper = os.path.join(profile_dir, "cprofiled.py")
        with open(wrapper, "w", encoding="utf-8") as f:
            f.write(_WRAPPER)

        def profiled(opts, logger=None):
            name = opts[list(opts).index("--name") + 1]
            out = os.path.join(profile_dir, f"{kind}-{name}.pstats")
            return [sys.executable, wrapper, out] + original(opts, logger)[1:]
        spawn.twistd_command = profiled
    try:
        nodes, addresses, webs = bench.spawn_cluster(3, options=options)
    finally:
        spawn.twistd_command = original
    try:
        leaders = [i for i, port in enumerate(webs) if _is_leader(port, i)]
        clients = 1 if kind == "seq" else 64
        results: multiprocessing.Queue = multiprocessing.Queue()
        groups = [list(range(w, clients, 3)) for w in range(min(3, clients))]
        procs = [multiprocessing.Process(
            target=doozer.load_worker,
            args=(addresses, ids, "read" if kind == "read" else "write", seconds, 100, 64,
                  results)) for ids in groups]
        before = [_cpu_seconds(n.pid) for n in nodes]
        for p in procs:
            p.start()
        done = [results.get() for _ in procs]
        for p in procs:
            p.join()
        used = [_cpu_seconds(n.pid) - b for n, b in zip(nodes, before)]
    finally:
        bench.stop_nodes(nodes, timeout=30)
    ops = sum(r[0] for r in done)
    return {"ops": ops, "seconds": max(r[3] for r in done), "cpu": used, "leaders": leaders}


def _is_leader(port: int, index: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return f'doozer_is_leader{{node="n{index + 1}"}} 1.0' in r.read().decode()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m doozertw.benchmarks.profile",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=("write", "read", "seq"))
    p.add_argument("-s", "--seconds", type=float, default=8.0)
    p.add_argument("--lease-reads", action="store_true")
    p.add_argument("--save", help="keep the pstats files in this directory")
    args = p.parse_args(argv)
    options = ("--lease-reads",) if args.lease_reads else ()
    plain = run_workload(args.workload, args.seconds, options, None)
    print(f"{args.workload}: {plain['ops'] / plain['seconds']:,.0f} ops/s unprofiled; node CPU "
          f"per op: {1e6 * sum(plain['cpu']) / max(plain['ops'], 1):.0f} us "
          f"({', '.join(f'n{i + 1} {c:.2f} s' for i, c in enumerate(plain['cpu']))}; "
          f"leader n{plain['leaders'][0] + 1 if plain['leaders'] else '?'})")
    directory = args.save or tempfile.mkdtemp(prefix="doozer-profile-")
    os.makedirs(directory, exist_ok=True)
    profiled = run_workload(args.workload, args.seconds, options, directory)
    for i in range(3):
        path = os.path.join(directory, f"{args.workload}-n{i + 1}.pstats")
        if not os.path.exists(path):
            continue
        loop, shares = stage_shares(pstats.Stats(path).stats)  # type: ignore[attr-defined]
        role = "leader" if i in profiled["leaders"] else "follower"
        print(f"n{i + 1} ({role}): reactor thread {loop:.2f} s CPU under the profiler, "
              f"{1e6 * loop / max(profiled['ops'], 1):.0f} us per op")
        for label, share in shares:
            print(f"  {100 * share:5.1f}%  {label}")
    print(f"pstats files: {directory}")


if __name__ == "__main__":
    main()
