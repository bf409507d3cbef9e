"""What the harness knows about its nodes, and waiting for states.

``ClusterObservation`` is mixed into ``doozertw.testing.cluster_harness.
Cluster`` (it uses its ``nodes``, ``size``, ``running()`` and
``wait_writable``). A node's role, leader and whether it votes come from
its ``GET /v1/cluster`` (the web port's ``ClusterView`` JSON); a node
without a web port, or one whose web port does not answer, is described by
its structured log events (``doozertw.testing.node_events``), which are
also the only source of its Raft member id. Nothing here reads log text.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import TYPE_CHECKING

from doozertw.testing.node_process import (
    RUNNING, HarnessError, NodeProcess, name_of)

# /v1/cluster roles of a node that votes in its own configuration
VOTING_ROLES = ("leader", "follower", "candidate")


class ClusterObservation:
    """Status queries and waits of a harness cluster."""

    nodes: dict[str, NodeProcess]
    size: int

    if TYPE_CHECKING:  # Cluster's methods this half calls
        def running(self) -> list[str]: ...
        def wait_writable(self, timeout: float = 10.0, via=None,
                          path: str = "/harness/probe") -> float: ...

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

    def _self_status(self, name: str) -> tuple[dict, dict] | None:
        """(the whole view, this node's own entry), or None."""
        status = self.status(name)
        if not status:
            return None
        me: dict = next((m for m in status.get("nodes", ())
                   if m.get("name") == name), {})
        return status, me

    def view(self, name: str) -> tuple[str | None, str | None]:
        """(role, leader's name) as running node ``name`` sees them."""
        if self.nodes[name].state != RUNNING:
            return None, None
        seen = self._self_status(name)
        if seen is not None:
            status, me = seen
            return me.get("role"), name_of(status.get("leader"))
        events = self.nodes[name].events().poll()
        return events.role, name_of(events.leader)

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
        """Poll until ``leader(among)`` names a node not in ``exclude``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader(among)
            if leader is not None and leader not in exclude:
                return leader
            time.sleep(0.05)
        raise HarnessError(f"no leader within {timeout}s; views: "
                           f"{ {n: self.view(n) for n in self.running()} }")

    def member_id(self, name: str) -> str | None:
        """The Raft member id of node ``name``'s current life (from its
        log events), or None before it started Raft."""
        return self.nodes[name].events().poll().member

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
        """True once ``name``'s current life votes: its ``/v1/cluster``
        lists it as a voter of its own configuration. Without a web port
        only a founder (a member id with no incarnation) counts."""
        seen = self._self_status(name)
        if seen is not None:
            return seen[1].get("role") in VOTING_ROLES
        member = self.member_id(name)
        return member is not None and "~" not in member

    def wait_voter(self, name: str, timeout: float = 10.0) -> None:
        """Poll until ``is_voter(name)``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_voter(name):
                return
            time.sleep(0.05)
        raise HarnessError(f"{name} ({self.member_id(name)}) not a voter "
                           f"within {timeout}s")

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
