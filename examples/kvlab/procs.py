"""The demo's processes: a doozertw cluster under ``twistd`` and kvlab
processes (``python -m examples.kvlab``), each logging to a file.

The doozertw nodes are started the way docs/cluster.md says (one YAML file,
``twistd -n doozer --config cluster.yaml --name nK``), through
``doozertw.testing.spawn.Twistd``, the project's own spawner.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence

import attrs
import yaml

from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import Twistd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def endpoint(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1"


def write_cluster(directory: str, client_ports: Sequence[int],
                  peer_ports: Sequence[int]) -> str:
    """cluster.yaml (and its peer secret) for nodes n1.. in ``directory``; its path."""
    secret = os.path.join(directory, "peer-secret")
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32) + "\n")
    nodes = {f"n{i + 1}": {"listen": endpoint(c), "web": "none", "peer_listen": endpoint(p)}
             for i, (c, p) in enumerate(zip(client_ports, peer_ports))}
    path = os.path.join(directory, "cluster.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"cluster": "kvlab", "peer_secret_file": secret, "nodes": nodes}, f)
    return path


def doozer_node(directory: str, config: str, name: str) -> Twistd:
    """A (not yet started) ``twistd doozer`` node ``name`` of ``config``,
    in memory (a demo keeps nothing), logging to ``directory/<name>.log``."""
    home = os.path.join(directory, name)
    os.makedirs(home, exist_ok=True)
    return Twistd(("--config", config, "--name", name, "--in-memory"), home, name,
                  log_file=os.path.join(directory, f"{name}.log"))


def kvlab_env() -> dict[str, str]:
    """Our environment, with this doozertw and then this checkout (for
    ``examples``) on PYTHONPATH."""
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], ROOT])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@attrs.define
class Proc:
    """One kvlab process (``python -m examples.kvlab ARGS``)."""

    name: str
    args: tuple[str, ...]
    log_path: str
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.kvlab", *self.args], cwd=ROOT,
                env=kvlab_env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, as far as anybody can tell."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""
