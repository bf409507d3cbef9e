"""One harness node process.

``NodeProcess`` records a node's ports, scratch directory, its process
(a ``doozertw.testing.spawn.Twistd``, which owns it), the
state the harness put it in (``RUNNING``, ``PAUSED``, ``DEAD``) and the
``EventWatcher`` following its JSON log events
(``doozertw.testing.node_events``); ``START_LINE`` begins the marker the
harness writes into its text log before each start. Also: loopback
port picking (the one free-port helper of the test suite), the ``twistd``
path, endpoint strings and ``describe_exit``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from typing import TYPE_CHECKING

import attrs

from doozertw.testing.node_events import EventWatcher

if TYPE_CHECKING:  # spawn imports this module
    from doozertw.testing.spawn import Twistd

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


def free_port() -> int:
    """One free loopback port (free when picked: bind it soon)."""
    return free_ports(1)[0]


def twistd_path() -> str:
    """The ``twistd`` installed next to this Python (the venv's)."""
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
    twistd: Twistd        # owns the process (every start of it) and its log
    state: str = DEAD
    starts: int = 0
    watcher: EventWatcher | None = None

    def events(self) -> EventWatcher:
        """The watcher of the node's event file; HarnessError if it has none."""
        if self.watcher is None:
            raise HarnessError(f"{self.name} has no event watcher")
        return self.watcher

    @property
    def log_path(self) -> str:
        return self.twistd.log_path

    def log_text(self) -> str:
        """Everything the node printed, over all its starts."""
        return self.twistd.log_text()


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
