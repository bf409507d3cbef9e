"""A harness node's structured log, and what it says about the node.

The harness runs each node with ``twistd --logger
doozertw.testing.node_events.observer``: every log event goes as text to
standard output (the node's ``node.log``) and as one JSON object per line
(``twisted.logger`` serialisation, every structured field kept) to
``EVENTS_FILE`` in the node's working directory, its scratch directory.

``EventWatcher`` follows that file and keeps what the cluster driver's
events say, by their fields, never by their wording: ``member`` (the Raft
member id of this life, from any event carrying ``member`` together with
``voters`` or ``role``), ``role`` and ``leader`` (from events carrying
``member`` and ``role``). ``start_marker`` is the line the harness appends
before each start: it resets what the previous life said.
``members_started`` reads a whole events file: the member ids of each life.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

from twisted.logger import (
    ILogObserver, jsonFileLogObserver, textFileLogObserver)
from zope.interface import provider

EVENTS_FILE = "events.jsonl"
_MARKER = "harness_start"


def observer() -> Callable[[dict], None]:
    """The log observer of a harness node (``twistd --logger``): text to
    stdout, JSON lines to ``EVENTS_FILE`` in the working directory."""
    text = textFileLogObserver(sys.stdout)
    events = jsonFileLogObserver(open(EVENTS_FILE, "a", encoding="utf-8"),
                                 recordSeparator="")

    @provider(ILogObserver)
    def both(event: dict) -> None:
        text(event)
        events(event)
    return both


def start_marker(start: int) -> str:
    """The line written into the events file before start ``start``."""
    return json.dumps({_MARKER: start}) + "\n"


def members_started(path: str) -> list[list[str]]:
    """The Raft member ids a node started Raft under, one list per start
    marker in its events file ``path`` (events carrying ``member`` and
    ``voters``: the driver's start); [] if the file cannot be read. Events
    before the first marker, and lines cut short by a kill, are skipped."""
    lives: list[list[str]] = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return lives
    for raw in lines:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if _MARKER in event:
            lives.append([])
        elif lives and "member" in event and "voters" in event:
            lives[-1].append(event["member"])
    return lives


class EventWatcher:
    """Follows one node's events file (see the module docstring)."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.member: str | None = None
        self.role: str | None = None
        self.leader: str | None = None

    def poll(self) -> EventWatcher:
        """Read what was appended since the last poll; returns self."""
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
            self._event(raw)
        return self

    def _event(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return  # a line cut short by a kill
        if not isinstance(event, dict):
            return
        if _MARKER in event:
            self.member = self.role = self.leader = None
        elif "member" in event and "role" in event:
            self.member, self.role = event["member"], event["role"]
            self.leader = event.get("leader")
        elif "member" in event and "voters" in event:
            self.member = event["member"]
