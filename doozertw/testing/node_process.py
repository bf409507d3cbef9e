"""One harness node process and what its log says.

``NodeProcess`` records a node's ports, scratch directory, process and the
state the harness put it in (``RUNNING``, ``PAUSED``, ``DEAD``).
``LogWatcher`` follows the node's log for its Raft member id, its latest
role and leader, and the members it proposed as voters; ``START_LINE``
begins the marker the harness writes before each start. Also: loopback
port picking, the ``twistd`` path, endpoint strings and ``describe_exit``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import attrs

RUNNING, PAUSED, DEAD = "running", "paused", "dead"


class HarnessError(AssertionError):
    """The cluster did not reach the state a test waited for."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together while picking)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def twistd_path() -> str:
    path = shutil.which("twistd", path=os.path.dirname(sys.executable))
    if path is None:
        raise HarnessError(f"twistd not found next to {sys.executable}")
    return path


def endpoint(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1"


@attrs.define
class NodeProcess:
    """One node: its ports, its process and what the harness did to it."""

    name: str
    client_port: int
    web_port: int
    peer_port: int        # where the node listens for peers
    peer_address: int     # where other nodes dial it (the proxy, or peer_port)
    directory: str
    process: subprocess.Popen | None = None
    state: str = DEAD
    starts: int = 0
    watcher: LogWatcher | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "node.log")

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


_ROLE_LINE = re.compile(r"\] (\S+) is (leader|follower|candidate|pre-candidate), "
                        r"leader (\S+)\s*$")
_MEMBER_LINE = re.compile(r"raft member (\S+) started")
_VOTER_LINE = re.compile(r"proposed ADD_VOTER (\S+)")
START_LINE = "--- harness: start #"


def describe_exit(returncode: int) -> str:
    """How a process ended, from its Popen return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def name_of(member: str | None) -> str | None:
    """The node name of a Raft member id (``n2`` or ``n2~incarnation``)."""
    if member in (None, "None", ""):
        return None
    return member.split("~", 1)[0]


class LogWatcher:
    """Follows one node's log: its Raft member id, its latest role and
    leader (the driver logs ``<member> is <role>, leader <member>`` on every
    change), and the members it proposed as voters. A harness start marker
    resets what the node's earlier life said."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.member = None
        self.role = None
        self.leader = None
        self.voters_proposed: set[str] = set()

    def poll(self) -> LogWatcher:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            self._line(raw.decode("utf-8", "replace"))
        return self

    def _line(self, line: str) -> None:
        if line.startswith(START_LINE):  # a new life: proposals made stay true
            self.member = self.role = self.leader = None
        elif m := _ROLE_LINE.search(line):
            self.member, self.role, self.leader = m.group(1), m.group(2), name_of(m.group(3))
        elif m := _MEMBER_LINE.search(line):
            self.member = m.group(1)
        elif m := _VOTER_LINE.search(line):
            self.voters_proposed.add(m.group(1))

