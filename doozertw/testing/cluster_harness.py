"""Real ``twistd doozer`` node processes on loopback, for fault tests.

``Cluster(size)`` writes one cluster YAML file into a scratch directory and
runs each node as ``twistd ... doozer --config cluster.yaml --name nK``
through a ``doozertw.testing.spawn.Twistd`` (in its own process group),
its log (stdout and stderr, appended across restarts) in
``<dir>/nK/node.log``. Ports are free loopback ports picked at
construction. The nodes run the doozertw found next to this module (its
directory goes first on PYTHONPATH), so the harness tests the code it is
imported with.

With ``proxy=True`` (default) every node's peer address in the file is a
listener of a ``doozertw.testing.proxy`` process and the node listens on a
private port (``--peer-listen``) while advertising the proxy's;
``isolate``/``cut``/``partition``/``heal`` cut and restore links there.

Faults: ``pause`` (SIGSTOP), ``resume`` (SIGCONT), ``kill`` (SIGKILL),
``restart`` (the same command again: the node resumes from its data
directory ``<dir>/nK/doozer-data/nK`` under its own member id; with
``--in-memory`` in ``extra_args`` it comes back under a new Raft member id
as a learner; ``promote`` makes sure its name holds a ``/ctl/cal`` slot,
doozer's way, and waits until it votes), ``kill_all``/``restart_all``
(every node at once, data directories kept),
``isolate``/``partition``/``heal``; ``add_node`` (``--attach``) and
``remove`` for replacing nodes.

Observation (``doozertw.testing.observation``, mixed in): ``view(name)``
is a node's (role, leader) from its ``GET /v1/cluster``; ``leader()`` is
the node that says it leads and that a majority confirms; ``is_voter``,
``member_id`` (from the node's JSON log events, ``node_events``),
``wait_for_leader``, ``wait_voter``, ``wait_formed`` and ``wait_writable``
poll. Each node runs with ``--logger doozertw.testing.node_events.observer``:
text into ``node.log``, JSON events into ``<dir>/nK/events.jsonl``.

The per-node record lives in ``doozertw.testing.node_process``; this module
re-exports its names (``NodeProcess``, ``describe_exit``, ``HarnessError``,
the states, ...).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

import yaml

from doozertw.testing.node_process import (
    DEAD, PAUSED, RUNNING, START_LINE, HarnessError, NodeProcess,
    describe_exit, endpoint, free_ports)
from doozertw.testing.node_events import EVENTS_FILE, EventWatcher, start_marker
from doozertw.testing.observation import ClusterObservation
from doozertw.testing.proxy import (
    BLACKHOLE, ProxyControl, ProxyProcess, Route, child_env)
from doozertw.testing.spawn import Twistd, listening, twistd_command
from doozertw.testing.workload import (
    Timeout, WireClient, WireError, claim_voter_slot, remove_member)


# the harness log observer (text on stdout, JSON events in the node directory)
NODE_LOGGER = "doozertw.testing.node_events.observer"
NODE_LOG = "node.log"


def write_peer_secret(directory: str) -> str:
    """A fresh random cluster secret in ``directory``/peer-secret (mode
    0600), for ``peer_secret_file`` (docs/security.md); returns its path."""
    import secrets as _secrets
    path = os.path.join(directory, "peer-secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(_secrets.token_hex(32) + "\n")
    return path


class Cluster(ClusterObservation):
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
            self.nodes[node] = self._new_node(
                node, client, web_port if web else 0, peer, proxied if proxy else peer)
        self.config_path = os.path.join(self.directory, "cluster.yaml")
        self.peer_secret_file = write_peer_secret(self.directory)
        self._write_config()
        self.proxy: ProxyProcess | None = None
        self.control: ProxyControl | None = None
        if proxy:
            self.proxy = ProxyProcess(
                [Route(n.name, n.peer_address, n.peer_port)
                 for n in self.nodes.values()],
                self.directory, mode=proxy_mode, env=self.env)

    # --- configuration --------------------------------------------------

    def _new_node(self, name: str, client_port: int, web_port: int,
                  peer_port: int, peer_address: int) -> NodeProcess:
        """A node record with its scratch directory, event watcher and
        (not yet started) process: ``twistd`` with the harness log
        observer, in its own process group; options are set at each start."""
        path = os.path.join(self.directory, name)
        os.makedirs(path, exist_ok=True)
        twistd = Twistd((), path, name, env=self.env, logger=NODE_LOGGER,
                        log_file=NODE_LOG, detach=True)
        return NodeProcess(
            name=name, client_port=client_port, web_port=web_port,
            peer_port=peer_port, peer_address=peer_address, directory=path,
            twistd=twistd, watcher=EventWatcher(os.path.join(path, EVENTS_FILE)))

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
        """The twistd command line that runs node ``name``."""
        return twistd_command(self.node_options(name, extra), NODE_LOGGER)

    def node_options(self, name: str, extra: tuple = ()) -> list[str]:
        """The ``doozer`` options that run node ``name`` from the file.

        Behind the proxy a node listens on its private peer port but must
        advertise the proxy's address (the one in the file) in
        /ctl/node/<name>/peer, or its peers would learn the private port and
        bypass the proxy (``--peer-advertise``)."""
        node = self.nodes[name]
        args = ["--config", self.config_path, "--name", name]
        if self.use_proxy:
            args += ["--peer-listen", endpoint(node.peer_port),
                     "--peer-advertise", endpoint(node.peer_address)]
        return args + list(self.extra_args) + list(extra)

    # --- lifecycle --------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Cluster:
        """Start the proxy and every node; wait until all client ports
        answer. If one does not, every node and the proxy are stopped
        before the HarnessError goes up: a failed start leaves nothing
        running."""
        try:
            if self.proxy is not None and self.control is None:
                self.control = self.proxy.start()
            for name in self.nodes:
                self.spawn(name)
            for name in self.nodes:
                self.wait_listening(name, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def spawn(self, name: str, extra: tuple = ()) -> NodeProcess:
        """Start node ``name``'s process (not waiting for it)."""
        return self._launch(self.nodes[name], self.node_options(name, extra))

    def _launch(self, node: NodeProcess, options: list[str]) -> NodeProcess:
        """Start ``node`` with ``options``, after marking the start in its
        text log (``START_LINE``) and its events file."""
        if node.state != DEAD:
            raise HarnessError(f"{node.name} is already {node.state}")
        node.twistd.options = tuple(options)
        node.twistd.note(f"{START_LINE}{node.starts + 1} of {node.name}: "
                         f"{' '.join(node.twistd.command())}")
        with open(node.events().path, "a", encoding="utf-8") as events:
            events.write(start_marker(node.starts + 1))
        node.twistd.launch()
        node.state = RUNNING
        node.starts += 1
        return node

    def wait_listening(self, name: str, timeout: float = 30.0) -> None:
        """Wait until node ``name`` accepts on its client port; HarnessError
        (the node stopped and dead) if it exits or ``timeout`` passes."""
        node = self.nodes[name]
        try:
            node.twistd.wait_ready(listening(node.client_port), timeout=timeout)
        except HarnessError:
            node.twistd.stop()
            node.state = DEAD
            raise

    def stop(self) -> None:
        """Stop every node and the proxy (paused nodes are resumed first).
        A node whose process had already ended gets a line saying how in
        its log (see ``unexpected_exits``)."""
        self.unexpected_exits()
        for node in self.nodes.values():
            node.twistd.terminate()
        for node in self.nodes.values():
            node.twistd.reap(timeout=5)
            node.state = DEAD
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

    def unexpected_exits(self) -> dict[str, str]:
        """Nodes the harness holds running or paused whose process has
        ended anyway: {name: how, e.g. "killed by SIGKILL"}. Each is marked
        dead and the line ``--- harness: <name> ended on its own: <how>``
        goes into its log, so a report tells a crashed (or externally
        killed) node from a hung one."""
        ended = {}
        for node in self.nodes.values():
            code = node.twistd.exit_code()
            if node.state == DEAD or code is None:
                continue
            how = describe_exit(code)
            node.state = DEAD
            node.twistd.note(f"--- harness: {node.name} ended on its own: {how}")
            ended[node.name] = how
        return ended

    # --- faults -------------------------------------------------------------

    def pause(self, name: str) -> None:
        """SIGSTOP running node ``name``."""
        node = self._running(name)
        node.twistd.pause()
        node.state = PAUSED

    def resume(self, name: str) -> None:
        node = self.nodes[name]
        if node.state != PAUSED:
            raise HarnessError(f"{name} is {node.state}, not paused")
        node.twistd.resume()
        node.state = RUNNING

    def kill(self, name: str) -> None:
        """SIGKILL node ``name`` (running or paused) and reap it."""
        node = self.nodes[name]
        if node.state == DEAD:
            raise HarnessError(f"{name} is already dead")
        node.twistd.kill()
        node.state = DEAD

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
            node.twistd.send(signal.SIGKILL)
        for node in victims:
            node.twistd.kill()
            node.state = DEAD
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
        node = self.nodes[name] = self._new_node(name, client, web_port, peer, peer)
        self._launch(node, [
            "--name", name, "--cluster", self.cluster_name,
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
        control = self._require_proxy()
        control.block(name, "*")
        control.block("*", name)

    def cut(self, src: str, dst: str) -> None:
        """Cut the directed link ``src -> dst`` (``*`` is any node): what
        ``src`` sends its peer ``dst`` is lost; the reverse link works."""
        self._require_proxy().block(src, dst)

    def partition(self, *groups) -> None:
        """Cut every link between nodes of different groups."""
        control = self._require_proxy()
        where = {n: i for i, g in enumerate(groups) for n in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and where.get(a, -1) != where.get(b, -2):
                    control.block(a, b)

    def heal(self) -> None:
        self._require_proxy().heal()

    def _require_proxy(self) -> ProxyControl:
        """The proxy's control client; HarnessError without a proxy."""
        if self.control is None:
            raise HarnessError("partitions need the cluster started with proxy=True")
        return self.control

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
        """Copy every node log and JSON events file (and the proxy's log)
        into ``target``."""
        os.makedirs(target, exist_ok=True)
        for node in self.nodes.values():
            for path, copy in ((node.log_path, f"{node.name}.log"),
                               (node.events().path, f"{node.name}.{EVENTS_FILE}")):
                if os.path.exists(path):
                    shutil.copy(path, os.path.join(target, copy))
        for extra in ("proxy.log", "cluster.yaml"):
            path = os.path.join(self.directory, extra)
            if os.path.exists(path):
                shutil.copy(path, os.path.join(target, extra))
