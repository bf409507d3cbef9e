"""kvlab on doozertw, end to end, on loopback; see README.md here.

    .venv/bin/python examples/kvlab/run_demo.py [--dir DIR] [--keep] [--bound 20]

Starts a 3-node doozertw cluster (``twistd doozer``), 2 coordinators, 2
groups of 2 data nodes and a client doing puts and gets; then SIGKILLs the
master and a primary, and shows the takeover: a new master elected, a new
primary chosen, the client still working and every acknowledged write still
there. Exit status 0 on success, 1 if the takeover did not complete within
``--bound`` seconds (or the data did not survive it), 2 if the system did
not start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

if __package__ in (None, ""):      # run as a script: make ``examples`` importable
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

from twisted.internet import defer, task  # noqa: E402

from doozertw.client import DoozerClient, DoozerError  # noqa: E402
from doozertw.client.recipes import Registry  # noqa: E402
from doozertw.testing.node_process import free_ports  # noqa: E402
from doozertw.testing.spawn import Twistd  # noqa: E402
from examples.kvlab import layout  # noqa: E402
from examples.kvlab.kvclient import KVClient, KVError  # noqa: E402
from examples.kvlab.procs import Proc, doozer_node, write_cluster  # noqa: E402

GROUPS = {"g1": ("d1", "d2"), "g2": ("d3", "d4")}
COORDINATORS = ("c1", "c2")
PORTS = 10          # 3 doozer client ports, 3 peer ports, 4 data nodes


class Failed(Exception):
    """The demo did not get where it should (exit status ``status``)."""

    def __init__(self, what: str, status: int = 1) -> None:
        super().__init__(what)
        self.status = status


class Demo:
    """The demo's state: its processes, its client, and its narrative."""

    def __init__(self, reactor: Any, directory: str, ports: Sequence[int], ttl: int,
                 bound: float, say: Callable[[str], object]) -> None:
        self.reactor = reactor
        self.directory = directory
        self.ports = list(ports)
        self.ttl = ttl
        self.bound = bound
        self.say = say
        self.doozer: list[Twistd] = []
        self.procs: dict[str, Proc] = {}
        self.target = "doozer:?" + "&".join(f"ca=127.0.0.1:{p}" for p in self.ports[:3])
        self.client: KVClient | None = None

    # -- helpers -----------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        await task.deferLater(self.reactor, seconds, lambda: None)

    async def until(self, what: str, check: Callable[[], bool], bound: float,
                    status: int = 1) -> float:
        """Seconds until ``check()`` holds; Failed(status) after ``bound``."""
        start = self.reactor.seconds()
        while not check():
            if self.reactor.seconds() - start > bound:
                raise Failed(f"{what}: not within {bound:.0f}s", status)
            await self.sleep(0.05)
        took: float = self.reactor.seconds() - start
        return took

    def spawn(self, name: str, *args: str) -> Proc:
        proc = Proc(name, (args[0], "--doozer", self.target, "--name", name,
                           "--ttl", str(self.ttl), *args[1:]),
                    os.path.join(self.directory, f"{name}.log")).launch()
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        for node in self.doozer:
            node.stop()

    # -- the story -----------------------------------------------------------------

    async def start_cluster(self) -> None:
        clients, peers = self.ports[:3], self.ports[3:6]
        config = write_cluster(self.directory, clients, peers)
        self.say(f"starting doozertw: 3 nodes (twistd doozer --config {config} --name nK)")
        for i in range(3):
            self.doozer.append(doozer_node(self.directory, config, f"n{i + 1}").launch())
        probe = DoozerClient(self.target, reactor=self.reactor, suspend_timeout=60)
        start = self.reactor.seconds()
        while True:
            try:
                await probe.set("/kvlab/ready", -1, b"1")
                break
            except DoozerError as e:
                for node in self.doozer:
                    if not node.running():
                        raise Failed(f"doozertw node {node.name} exited:\n"
                                     f"{node.log_text()[-2000:]}", 2) from e
                if self.reactor.seconds() - start > 45:
                    raise Failed(f"the doozertw cluster took no write: {e}", 2) from e
                await self.sleep(0.2)
        probe.close()
        self.say(f"doozertw is up (a write committed) after {self.reactor.seconds() - start:.1f}s")

    async def start_kvlab(self) -> KVClient:
        doozer = DoozerClient(self.target, reactor=self.reactor)
        client = self.client = KVClient(self.reactor, doozer, deadline=self.bound,
                                        on_change=self.client_saw)
        await client.start()
        for name in COORDINATORS:
            self.spawn(name, "coordinator")
        self.say("started coordinators c1 and c2: both campaign, one becomes master")
        await self.until("a master", lambda: client.master is not None, 30, 2)
        port = iter(self.ports[6:])
        for group, nodes in GROUPS.items():
            for node in nodes:
                self.spawn(node, "datanode", "--group", group, "--port", str(next(port)))
        self.say("started data nodes d1, d2 (group g1) and d3, d4 (group g2)")
        await self.until("a primary in every group",
                         lambda: set(client.primaries) == set(GROUPS), 30, 2)
        await self.all_registered(client, 30)
        return client

    async def all_registered(self, client: KVClient, bound: float) -> None:
        """Wait until every data node's registration is in doozertw."""
        want = sum(len(nodes) for nodes in GROUPS.values())
        registries = [Registry(client.doozer, layout.nodes_dir(g)) for g in GROUPS]
        start = self.reactor.seconds()
        while sum([len(await r.members()) for r in registries]) < want:
            if self.reactor.seconds() - start > bound:
                raise Failed("not every data node registered", 2)
            await self.sleep(0.1)
        self.say(f"all {want} data nodes registered under {layout.GROUPS}/<g>/nodes/")

    def client_saw(self, kind: str, what: str) -> None:
        assert self.client is not None
        if kind == "master":
            self.say(f"  client sees: master is {what or 'nobody'}")
            return
        primary = self.client.primaries.get(what)
        self.say(f"  client sees: primary of {what} is "
                 + (f"{primary.node} at {primary.addr} (epoch {primary.epoch})"
                    if primary else "nobody"))

    async def put_replicated(self, client: KVClient, key: str, value: bytes) -> str:
        """Put until a secondary acknowledged it (a new primary learns its
        secondaries through a watch, a moment after they register)."""
        for _ in range(50):
            group, node, acks = await client.put(key, value)
            if acks >= 1:
                self.say(f"put {key}={value.decode()} -> {group} on {node}, "
                         f"replicated to {acks} secondary")
                return group
            await self.sleep(0.1)
        raise Failed(f"{key} was never replicated", 2)

    async def takeover(self, client: KVClient, written: dict[str, bytes]) -> None:
        master = client.master
        victim_group = "g1"
        primary = client.primaries[victim_group]
        assert master is not None
        self.say(f"SIGKILL master {master} (pid {self.procs[master].pid}) and "
                 f"{primary.node} (pid {self.procs[primary.node].pid}), primary of "
                 f"{victim_group}")
        self.procs[master].kill()
        self.procs[primary.node].kill()
        start = self.reactor.seconds()
        key = next(k for k in (f"after-{i}" for i in range(1000))
                   if client.ring.route(k) == victim_group)
        self.say(f"client: put {key} (owned by {victim_group}) right away ...")
        try:
            group, node, acks = await client.put(key, b"still-working")
        except KVError as e:
            raise Failed(f"the client could not write after the kill: {e}") from e
        took = self.reactor.seconds() - start
        self.say(f"client: put {key} -> {group} on {node} succeeded {took:.1f}s after the kill")
        written[key] = b"still-working"
        await self.until("a new master", lambda: client.master not in (None, master),
                         self.bound)
        new_primary = client.primaries.get(victim_group)
        if new_primary is None or new_primary.node == primary.node:
            raise Failed(f"{victim_group} has no new primary")
        self.say(f"takeover: master {master} -> {client.master}, primary of {victim_group} "
                 f"{primary.node} -> {new_primary.node} (epoch {primary.epoch} -> "
                 f"{new_primary.epoch}) within {self.reactor.seconds() - start:.1f}s")

    async def check_data(self, client: KVClient, written: dict[str, bytes],
                         note: str = "") -> None:
        for key, value in sorted(written.items()):
            group, node, got = await client.get(key)
            if got != value:
                raise Failed(f"{key} reads {got!r} on {node}, not {value!r}")
        self.say(f"client: all {len(written)} keys read back with their values{note}")

    async def run(self) -> int:
        await self.start_cluster()
        client = await self.start_kvlab()
        written: dict[str, bytes] = {}
        for i in range(8):
            key = f"user-{i}"
            written[key] = f"v{i}".encode()
            await self.put_replicated(client, key, written[key])
        await self.check_data(client, written)
        await self.takeover(client, written)
        for i in range(4):
            key, value = f"later-{i}", f"w{i}".encode()
            group, node, acks = await client.put(key, value)
            written[key] = value
            self.say(f"put {key}={value.decode()} -> {group} on {node}, replicated to {acks}"
                     + (" (no secondary left in g1)" if group == "g1" else ""))
        await self.check_data(client, written,
                              " (the new primary had the old ones: replication)")
        client.stop()
        self.excerpts()
        return 0

    def excerpts(self) -> None:
        """What the kvlab processes said about elections and primaries."""
        self.say("from the processes' logs:")
        marks = ("ELECTED", "MASTER ", "PRIMARY", "LOST", "no longer")
        for name, proc in sorted(self.procs.items()):
            for line in proc.log_text().splitlines():
                if any(mark in line for mark in marks):
                    self.say(f"  {name}: {line.split('] ', 1)[-1]}")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="where logs go (default: a temporary directory, "
                                      "removed on success unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    parser.add_argument("--ports", help=f"{PORTS} comma-separated free loopback ports")
    parser.add_argument("--ttl", type=int, default=3, help="session lease ttl (s)")
    parser.add_argument("--bound", type=float, default=20.0,
                        help="seconds the takeover may take")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    ports = [int(p) for p in args.ports.split(",")] if args.ports else free_ports(PORTS)
    if len(ports) != PORTS:
        raise SystemExit(f"--ports needs {PORTS} ports")
    directory = args.dir or tempfile.mkdtemp(prefix="kvlab-")
    os.makedirs(directory, exist_ok=True)
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {line}", flush=True)

    async def go(reactor: Any) -> None:
        demo = Demo(reactor, directory, ports, args.ttl, args.bound, say)
        reactor.addSystemEventTrigger("before", "shutdown", demo.stop_all)  # Ctrl-C too
        try:
            status = await demo.run()
            say("SUCCESS: new master elected, new primary chosen, client kept working")
        except Failed as e:
            say(f"FAILED: {e}")
            status = e.status
        finally:
            demo.stop_all()
        if status == 0 and not args.dir and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            say(f"logs in {directory}")
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(go(reactor)), [])
    return 0      # not reached: react exits with go's status


if __name__ == "__main__":
    sys.exit(main())
