"""Real ``twistd doozer`` node processes on loopback, for fault tests.

``Cluster(size)`` writes one cluster YAML file into a scratch directory and
runs each node as ``twistd -n --pidfile= --logfile - doozer --config
cluster.yaml --name nK``, its log (stdout and stderr, appended across
restarts) in ``<dir>/nK/node.log``. Ports are free loopback ports picked at
construction. The nodes run the doozertw found next to this module (its
directory goes first on PYTHONPATH), so the harness tests the code it is
imported with.

With ``proxy=True`` (default) every node's peer address in the file is a
listener of a ``doozertw.testing.proxy`` process and the node listens on a
private port (``--peer-listen``) while advertising the proxy's;
``isolate``/``partition``/``heal`` cut and restore links there.

Faults: ``pause`` (SIGSTOP), ``resume`` (SIGCONT), ``kill`` (SIGKILL),
``restart`` (the same command again: the node resumes from its data
directory ``<dir>/nK/doozer-data/nK`` under its own member id; with
``--in-memory`` in ``extra_args`` it comes back under a new Raft member id
as a learner; ``promote`` makes sure its name holds a ``/ctl/cal`` slot,
doozer's way, and waits until it votes), ``kill_all``/``restart_all``
(every node at once, data directories kept),
``isolate``/``partition``/``heal``; ``add_node`` (``--attach``) and
``remove`` for replacing nodes.

Observation: ``view(name)`` is a node's (role, leader): from ``GET
/v1/cluster`` when the web port reports a replicated cluster, else from the
role changes the node logs. ``leader()`` is the node that says it leads and
that a majority confirms; ``wait_for_leader``, ``wait_voter``,
``wait_formed`` and ``wait_writable`` poll.

The per-node record and log parsing live in ``doozertw.testing.node_process``;
this module re-exports its names (``NodeProcess``, ``LogWatcher``,
``name_of``, ``describe_exit``, ``HarnessError``, the states, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

from doozertw.testing.node_process import (
    DEAD, PAUSED, RUNNING, START_LINE, HarnessError, LogWatcher, NodeProcess,
    describe_exit, endpoint, free_ports, name_of, twistd_path)
from doozertw.testing.proxy import (
    BLACKHOLE, ProxyProcess, Route, child_env, tap_has_option)
from doozertw.testing.workload import (
    Timeout, WireClient, WireError, claim_voter_slot, remove_member)


def write_peer_secret(directory: str) -> str:
    """A fresh random cluster secret in ``directory``/peer-secret (mode
    0600), for ``peer_secret_file`` (docs/security.md); returns its path."""
    import secrets as _secrets
    path = os.path.join(directory, "peer-secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(_secrets.token_hex(32) + "\n")
    return path


class Cluster:
    """N node processes from one generated YAML file (with a generated
    peer secret file, ``peer_secret_file``)."""

    def __init__(self, size: int = 3, name: str = "drill",
                 directory: str | None = None, proxy: bool = True,
                 proxy_mode: str = BLACKHOLE, web: bool = True,
                 extra_args: tuple = (), env: dict | None = None,
                 settings: dict | None = None):
        self.size = size
        self.cluster_name = name
        self.owns_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="doozertw-cluster-")
        self.use_proxy = proxy
        self.extra_args = tuple(extra_args)
        self.settings = dict(settings or {})  # more top-level YAML keys
        self.env = child_env(env)
        self.env["PYTHONUNBUFFERED"] = "1"  # node logs readable as they happen
        self.env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every stack to the log
        self.nodes: dict[str, NodeProcess] = {}
        ports = free_ports(4 * size)
        for i in range(size):
            node = f"n{i + 1}"
            client, web_port, peer, proxied = ports[4 * i:4 * i + 4]
            path = os.path.join(self.directory, node)
            os.makedirs(path, exist_ok=True)
            self.nodes[node] = NodeProcess(
                name=node, client_port=client, web_port=web_port if web else 0,
                peer_port=peer, peer_address=proxied if proxy else peer,
                directory=path, watcher=LogWatcher(os.path.join(path, "node.log")))
        self.config_path = os.path.join(self.directory, "cluster.yaml")
        self.peer_secret_file = write_peer_secret(self.directory)
        self._write_config()
        self.proxy = None
        self.control = None
        if proxy:
            self.proxy = ProxyProcess(
                [Route(n.name, n.peer_address, n.peer_port)
                 for n in self.nodes.values()],
                self.directory, mode=proxy_mode, env=self.env)

    # --- configuration --------------------------------------------------

    def _write_config(self) -> None:
        nodes = {}
        for n in self.nodes.values():
            nodes[n.name] = {
                "listen": endpoint(n.client_port),
                "web": endpoint(n.web_port) if n.web_port else "none",
                "peer_listen": endpoint(n.peer_address),
            }
        with open(self.config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump({"cluster": self.cluster_name,
                            "peer_secret_file": self.peer_secret_file, **self.settings,
                            "nodes": nodes}, f)

    def command(self, name: str, extra: tuple = ()) -> list[str]:
        """The twistd command line that runs node ``name``.

        Behind the proxy a node listens on its private peer port but must
        advertise the proxy's address (the one in the file) in
        /ctl/node/<name>/peer, or its peers would learn the private port and
        bypass the proxy. ``twistd doozer`` has no option for that yet, so
        the node then runs under ``proxy.peer_advertise_twistd``."""
        node = self.nodes[name]
        head = [twistd_path()]
        if self.use_proxy and not tap_has_option("peer-advertise"):
            head = [sys.executable, "-m", "doozertw.testing.proxy",
                    "--peer-advertise", endpoint(node.peer_address)]
        args = head + ["--nodaemon", "--pidfile=", "--logfile", "-",
                       "doozer", "--config", self.config_path, "--name", name]
        if self.use_proxy:
            args += ["--peer-listen", endpoint(node.peer_port)]
            if tap_has_option("peer-advertise"):
                args += ["--peer-advertise", endpoint(node.peer_address)]
        return args + list(self.extra_args) + list(extra)

    # --- lifecycle --------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Cluster:
        """Start the proxy and every node; wait until all client ports answer."""
        if self.proxy is not None and self.control is None:
            self.control = self.proxy.start()
        for name in self.nodes:
            self.spawn(name)
        for name in self.nodes:
            self.wait_listening(name, timeout)
        return self

    def spawn(self, name: str, extra: tuple = ()) -> NodeProcess:
        """Start node ``name``'s process (not waiting for it)."""
        return self._launch(self.nodes[name], self.command(name, extra))

    def _launch(self, node: NodeProcess, command: list[str]) -> NodeProcess:
        if node.state != DEAD:
            raise HarnessError(f"{node.name} is already {node.state}")
        with open(node.log_path, "ab") as log:
            log.write(f"{START_LINE}{node.starts + 1} of {node.name}: "
                      f"{' '.join(command)}\n".encode())
            log.flush()
            node.process = subprocess.Popen(
                command, cwd=node.directory, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        node.state = RUNNING
        node.starts += 1
        return node

    def wait_listening(self, name: str, timeout: float = 30.0) -> None:
        node = self.nodes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                node.state = DEAD
                raise HarnessError(f"{name} exited with {node.process.returncode}:"
                                   f"\n{node.log_text()[-4000:]}")
            try:
                socket.create_connection(("127.0.0.1", node.client_port),
                                         timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise HarnessError(f"{name} never listened on {node.client_port}:\n"
                           f"{node.log_text()[-4000:]}")

    def stop(self) -> None:
        """Stop every node and the proxy (paused nodes are resumed first).
        A node whose process had already ended gets a line saying how in
        its log (see ``unexpected_exits``)."""
        self.unexpected_exits()
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                if node.state == PAUSED:
                    node.process.send_signal(signal.SIGCONT)
                node.process.terminate()
        for node in self.nodes.values():
            self._reap(node, graceful=True)
        if self.proxy is not None:
            self.proxy.stop()
            self.control = None

    def cleanup(self) -> None:
        """Remove the scratch directory (only one the harness created)."""
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _reap(self, node: NodeProcess, graceful: bool) -> None:
        """Wait for the process to end. One that ignores SIGTERM is hung:
        SIGABRT makes it write every thread's stack into its log (the
        harness sets PYTHONFAULTHANDLER) before it is killed."""
        if node.process is None:
            return
        try:
            node.process.wait(timeout=5 if graceful else 10)
        except subprocess.TimeoutExpired:
            if graceful:
                self._note(node, f"{node.name} ignored SIGTERM for 5s: SIGABRT "
                                 "(its Python stacks follow)")
                node.process.send_signal(signal.SIGABRT)
                try:
                    node.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
            node.process.kill()
            node.process.wait(timeout=10)
        node.state = DEAD

    def unexpected_exits(self) -> dict[str, str]:
        """Nodes the harness holds running or paused whose process has
        ended anyway: {name: how, e.g. "killed by SIGKILL"}. Each is marked
        dead and the line ``--- harness: <name> ended on its own: <how>``
        goes into its log, so a report tells a crashed (or externally
        killed) node from a hung one."""
        ended = {}
        for node in self.nodes.values():
            if node.state == DEAD or node.process is None:
                continue
            code = node.process.poll()
            if code is None:
                continue
            how = describe_exit(code)
            node.state = DEAD
            self._note(node, f"{node.name} ended on its own: {how}")
            ended[node.name] = how
        return ended

    @staticmethod
    def _note(node: NodeProcess, text: str) -> None:
        with open(node.log_path, "ab") as log:
            log.write(f"--- harness: {text}\n".encode())

    # --- faults -------------------------------------------------------------

    def pause(self, name: str) -> None:
        node = self._running(name)
        node.process.send_signal(signal.SIGSTOP)
        node.state = PAUSED

    def resume(self, name: str) -> None:
        node = self.nodes[name]
        if node.state != PAUSED:
            raise HarnessError(f"{name} is {node.state}, not paused")
        node.process.send_signal(signal.SIGCONT)
        node.state = RUNNING

    def kill(self, name: str) -> None:
        node = self.nodes[name]
        if node.state == DEAD:
            raise HarnessError(f"{name} is already dead")
        node.process.kill()
        if node.state == PAUSED:
            node.process.send_signal(signal.SIGCONT)
        self._reap(node, graceful=False)

    def restart(self, name: str, promote: bool = True,
                timeout: float = 30.0) -> None:
        """Start a killed node again with the same command. A durable node
        resumes from its data directory under its own member id (still a
        voter: ``promote`` finds its slot held and returns once it votes and
        a write commits). An ``--in-memory`` node rejoins as a learner under
        a new id and (by default) is promoted back to voter. With no other
        node alive nothing is promoted: the node is only started (a durable
        one resumes and waits for a quorum of its peers)."""
        live = [n for n in self.running() if n != name]
        self.spawn(name)
        self.wait_listening(name, timeout)
        if promote and live:
            self.promote(name, timeout)

    def kill_all(self) -> list[str]:
        """``kill -9`` every live node at once (every SIGKILL is sent
        before any is reaped); returns their names."""
        victims = [n for n in self.nodes.values() if n.state != DEAD]
        for node in victims:
            node.process.kill()
        for node in victims:
            if node.state == PAUSED:
                node.process.send_signal(signal.SIGCONT)
            self._reap(node, graceful=False)
        return [node.name for node in victims]

    def restart_all(self, names=None, timeout: float = 30.0) -> None:
        """Start every dead node (or ``names``) again with its command,
        all at once, and wait until each listens. Nothing is promoted:
        durable nodes resume under their own ids and elect a leader."""
        names = [n for n in (names or self.nodes) if self.nodes[n].state == DEAD]
        for name in names:
            self.spawn(name)
        for name in names:
            self.wait_listening(name, timeout)

    def promote(self, name: str, timeout: float = 30.0) -> None:
        """Make learner ``name`` a voter: write its id into an empty
        ``/ctl/cal/N`` (through a live node), then wait until the node
        itself reports a voting role."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._claim_slot(name):
                break
            time.sleep(0.2)
        else:
            raise HarnessError(f"no empty /ctl/cal slot for {name} "
                               f"within {timeout}s")
        self.wait_voter(name, max(1.0, deadline - time.monotonic()))
        # a write committed after the promotion proves it committed too
        self.wait_writable(max(1.0, deadline - time.monotonic()))

    def _claim_slot(self, name: str) -> bool:
        for port in self._live_ports(exclude=name):
            try:
                client = WireClient(port, timeout=2.0)
            except OSError:
                continue
            try:
                return claim_voter_slot(client, name)
            except (WireError, Timeout, OSError):
                continue
            finally:
                client.close()
        return False

    def remove(self, name: str, timeout: float = 10.0) -> None:
        """Take ``name`` out of the cluster (through a live node): delete
        its /ctl/cal slot and its member key; the leader then removes it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for port in self._live_ports(exclude=name):
                try:
                    client = WireClient(port, timeout=2.0)
                except OSError:
                    continue
                try:
                    if remove_member(client, name):
                        return
                except (WireError, Timeout, OSError):
                    pass
                finally:
                    client.close()
            time.sleep(0.2)
        raise HarnessError(f"could not remove {name} from /ctl")

    def add_node(self, name: str, timeout: float = 30.0,
                 promote: bool = True) -> NodeProcess:
        """Start a brand-new node (not in the cluster file) that attaches
        to a live member as a learner; by default promote it. Its peer
        traffic does not pass through the proxy."""
        live = self.running()
        if name in self.nodes or not live:
            raise HarnessError(f"cannot add {name}: exists, or no live node")
        client, web_port, peer = free_ports(3)
        path = os.path.join(self.directory, name)
        os.makedirs(path, exist_ok=True)
        node = NodeProcess(name=name, client_port=client, web_port=web_port,
                           peer_port=peer, peer_address=peer, directory=path)
        node.watcher = LogWatcher(node.log_path)
        self.nodes[name] = node
        self._launch(node, [
            twistd_path(), "--nodaemon", "--pidfile=", "--logfile", "-",
            "doozer", "--name", name, "--cluster", self.cluster_name,
            "--listen", endpoint(client), "--web", endpoint(web_port),
            "--peer-listen", endpoint(peer),
            "--peer-secret-file", self.peer_secret_file,
            "--attach", f"127.0.0.1:{self.nodes[live[0]].client_port}"])
        self.wait_listening(name, timeout)
        self.wait_member(name, timeout)
        if promote:
            self.promote(name, timeout)
        return node

    def isolate(self, name: str) -> None:
        """Cut every link to and from ``name`` (peer traffic only)."""
        self._require_proxy()
        self.control.block(name, "*")
        self.control.block("*", name)

    def partition(self, *groups) -> None:
        """Cut every link between nodes of different groups."""
        self._require_proxy()
        where = {n: i for i, g in enumerate(groups) for n in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and where.get(a, -1) != where.get(b, -2):
                    self.control.block(a, b)

    def heal(self) -> None:
        self._require_proxy()
        self.control.heal()

    def _require_proxy(self) -> None:
        if self.control is None:
            raise HarnessError("partitions need the cluster started with proxy=True")

    # --- observation ----------------------------------------------------------

    def running(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.state == RUNNING]

    def client_ports(self, names=None) -> list[int]:
        names = self.running() if names is None else names
        return [self.nodes[n].client_port for n in names]

    def all_client_ports(self) -> list[int]:
        """Every node's client port, whatever its state: what a client
        configured with the cluster's addresses would try."""
        return [n.client_port for n in self.nodes.values()]

    def _live_ports(self, exclude: str | None = None) -> list[int]:
        return [self.nodes[n].client_port for n in self.running() if n != exclude]

    def _running(self, name: str) -> NodeProcess:
        node = self.nodes[name]
        if node.state != RUNNING:
            raise HarnessError(f"{name} is {node.state}, not running")
        return node

    def status(self, name: str, timeout: float = 1.0) -> dict | None:
        """The node's ``/v1/cluster`` view, or None if it does not answer."""
        node = self.nodes[name]
        if node.state != RUNNING or not node.web_port:
            return None
        url = f"http://127.0.0.1:{node.web_port}/v1/cluster"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def view(self, name: str) -> tuple[str | None, str | None]:
        """(role, leader's name) as running node ``name`` sees them: from
        ``/v1/cluster`` when it describes a replicated cluster, else from
        the role changes the node logs."""
        node = self.nodes[name]
        if node.state != RUNNING:
            return None, None
        status = self.status(name) if node.web_port else None
        if status and (status.get("term", 0) > 0 or self.size == 1):
            me = next((m for m in status.get("nodes", ()) if m.get("name") == name), {})
            return me.get("role"), name_of(status.get("leader"))
        watcher = node.watcher.poll()
        return watcher.role, watcher.leader

    def leader(self, among=None) -> str | None:
        """The running node that says it leads and whose leadership a
        majority of the configured voters confirm."""
        names = self.running() if among is None else [
            n for n in among if self.nodes[n].state == RUNNING]
        views = {n: self.view(n) for n in names}
        for n, (role, leader) in views.items():
            if role != "leader" or leader != n:
                continue
            confirms = sum(1 for _, seen in views.values() if seen == n)
            if confirms > self.size // 2:
                return n
        return None

    def wait_for_leader(self, timeout: float = 10.0, among=None,
                        exclude=()) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader(among)
            if leader is not None and leader not in exclude:
                return leader
            time.sleep(0.05)
        raise HarnessError(f"no leader within {timeout}s; views: "
                           f"{ {n: self.view(n) for n in self.running()} }")

    def member_id(self, name: str) -> str | None:
        """The Raft member id of node ``name``'s current life."""
        return self.nodes[name].watcher.poll().member

    def wait_member(self, name: str, timeout: float = 10.0) -> str:
        """Wait until node ``name`` has started Raft; returns its member id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            member = self.member_id(name)
            if member is not None:
                return member
            time.sleep(0.05)
        raise HarnessError(f"{name} never started Raft within {timeout}s:\n"
                           f"{self.nodes[name].log_text()[-3000:]}")

    def is_voter(self, name: str) -> bool:
        """True once ``name``'s current life votes: founders do from the
        start; a node that joined once some leader proposed it as voter."""
        member = self.member_id(name)
        if member is None:
            return False
        if "~" not in member:
            return True
        return any(member in n.watcher.poll().voters_proposed
                   for n in self.nodes.values())

    def wait_formed(self, timeout: float = 30.0) -> str:
        """Wait until every running node votes, a leader is confirmed and a
        write commits (a node that started late joins as a learner and is
        promoted: until then the cluster is smaller than configured).
        Returns the leader."""
        deadline = time.monotonic() + timeout
        for name in self.running() if self.size > 1 else ():
            self.wait_voter(name, max(0.5, deadline - time.monotonic()))
        leader = self.wait_for_leader(max(0.5, deadline - time.monotonic()))
        self.wait_writable(max(0.5, deadline - time.monotonic()))
        return leader

    def wait_voter(self, name: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_voter(name):
                return
            time.sleep(0.05)
        raise HarnessError(f"{name} ({self.member_id(name)}) not a voter "
                           f"within {timeout}s")

    def write(self, name: str, path: str, value: bytes,
              timeout: float = 2.0) -> int:
        """SET (clobber) through node ``name``; raises on failure."""
        client = WireClient(self.nodes[name].client_port, timeout=timeout)
        try:
            return client.set(path, -1, value)
        finally:
            client.close()

    def read(self, name: str, path: str, timeout: float = 2.0) -> tuple:
        client = WireClient(self.nodes[name].client_port, timeout=timeout)
        try:
            return client.get(path)
        finally:
            client.close()

    def wait_writable(self, timeout: float = 10.0, via=None,
                      path: str = "/harness/probe") -> float:
        """Poll with writes until one succeeds; returns when (monotonic)."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while time.monotonic() < deadline:
            names = [via] if via else self.running()
            for name in names:
                attempt += 1
                try:
                    left = max(0.2, min(1.0, deadline - time.monotonic()))
                    self.write(name, path, f"probe-{attempt}".encode(), left)
                    return time.monotonic()
                except (WireError, Timeout, OSError):
                    pass
            time.sleep(0.02)
        raise HarnessError(f"no write succeeded within {timeout}s")

    def wait_serving(self, timeout: float = 10.0,
                     path: str = "/harness/probe") -> None:
        """Wait until every running node answers a (linearizable) read."""
        deadline = time.monotonic() + timeout
        for name in self.running():
            while True:
                try:
                    self.read(name, path, timeout=max(0.2, min(
                        2.0, deadline - time.monotonic())))
                    break
                except (WireError, Timeout, OSError) as e:
                    if time.monotonic() >= deadline:
                        raise HarnessError(f"{name} serves no read: {e!r}") from None
                    time.sleep(0.05)

    def collect_logs(self, target: str) -> None:
        """Copy every node log (and the proxy's) into ``target``."""
        os.makedirs(target, exist_ok=True)
        for node in self.nodes.values():
            if os.path.exists(node.log_path):
                shutil.copy(node.log_path, os.path.join(target, f"{node.name}.log"))
        for extra in ("proxy.log", "cluster.yaml"):
            path = os.path.join(self.directory, extra)
            if os.path.exists(path):
                shutil.copy(path, os.path.join(target, extra))
