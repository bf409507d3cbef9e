"""A 3-node ``twistd doozer`` cluster on loopback for end-to-end tests of
clients: one shared cluster file with a peer secret, the nodes started and
killed through doozertw.testing.spawn.Twistd, and ``until`` to poll."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from doozertw.client import BlockingClient
from doozertw.errors import DoozerError
from doozertw.testing.node_process import free_ports
from doozertw.testing.spawn import Twistd

NAMES = ("n1", "n2", "n3")


def until(predicate: Callable[[], Any], timeout: float = 15.0,
          what: str = "condition") -> Any:
    """The first truthy value of ``predicate()``; client errors count as
    falsy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (DoozerError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """Three ``twistd doozer`` processes sharing one cluster file in ``tmp``."""

    def __init__(self, tmp: Path, names: tuple[str, ...] = NAMES) -> None:
        self.tmp = tmp
        self.names = names
        ports = free_ports(2 * len(names))
        self.client_ports = dict(zip(names, ports[::2]))
        peer_ports = dict(zip(names, ports[1::2]))
        self.config = tmp / "cluster.yaml"
        (tmp / "peer-secret").write_text("tcpcluster-test-secret-" * 3)
        self.config.write_text(yaml.safe_dump({"cluster": "demo",
                                               "peer_secret_file": "peer-secret", "nodes": {
            name: {"listen": f"tcp:{self.client_ports[name]}:interface=127.0.0.1",
                   "web": "none",
                   "peer_listen": f"tcp:{peer_ports[name]}:interface=127.0.0.1"}
            for name in names}}))
        self.procs: dict[str, Twistd] = {}
        self.leader = ""

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.client_ports[name]}"

    def uri(self, *names: str) -> str:
        """A doozer URI listing the nodes' client addresses in this order."""
        return "doozer:?" + "&".join(f"ca={self.address(n)}" for n in names)

    def start(self, name: str) -> None:
        self.procs[name] = Twistd(("--config", str(self.config), "--name", name),
                                  str(self.tmp), name).launch()

    def kill(self, name: str) -> None:
        """SIGKILL one node and reap it."""
        self.procs[name].kill()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()

    def survivors(self, dead: str) -> list[str]:
        return [n for n in self.names if n != dead]

    def start_all(self, timeout: float = 30.0) -> str:
        """Start every node and wait until ready; the leader's name."""
        for name in self.names:
            self.start(name)
        self.leader = self.wait_ready(timeout)
        return self.leader

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until every node accepts a write; returns the leader's name."""
        clients = {n: BlockingClient(self.address(n), suspend_timeout=0.5)
                   for n in self.names}
        try:
            for name, client in clients.items():
                until(_writer(client, name), timeout, f"{name} to accept a write")

            def agreed_leader() -> str | None:
                seen = {c.get("/ctl/leader")[0].decode() for c in clients.values()}
                return seen.pop() if len(seen) == 1 and "" not in seen else None

            return str(until(agreed_leader, timeout, "the nodes to agree on a leader"))
        finally:
            for client in clients.values():
                client.close()


@contextmanager
def running(tmp: Path) -> Iterator[Cluster]:
    """A started, ready Cluster in ``tmp``; every node killed on the way out."""
    cluster = Cluster(tmp)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def _writer(client: BlockingClient, name: str) -> Callable[[], int]:
    return lambda: client.set(f"/ready/{name}", -1, b"ok")


__all__ = ["Cluster", "NAMES", "running", "until"]
