"""An in-memory network of ClusterMembers on one fake clock, for tests.

``MemoryNetwork(clock)`` delivers payloads after ``latency`` seconds of the
clock, in order per link, unless the link is cut (``partition``/``isolate``)
or the receiving node is down (``crash``); with ``duplicate`` set, every
payload is delivered a second time a little later. A member dials peers the way
PeerTransport does: ``send`` to a name it has not been given (configured
voter or ``add_peer``) returns False. A ``durable`` member keeps a data
directory on its own LazyFileSystem (``disks[name]``), which survives
``crash`` (losing what was not fsynced) and is found again by the next
``add`` of that name. No sockets, no files, no global reactor.
"""

from __future__ import annotations

import random

from doozertw.cluster.driver import Timing
from doozertw.cluster.member import ClusterMember
from doozertw.cluster.storage import DiskProvider
from doozertw.store import Store


class MemoryNetwork:
    def __init__(self, clock, latency=0.002, cluster_name="mem"):
        self.clock = clock
        self.latency = latency
        self.cluster_name = cluster_name
        self.members = {}
        self.dialed = {}
        self.cut = set()
        self.duplicate = False
        self.delivered = 0
        self.disks = {}

    def endpoint(self, name):
        return f"mem:{name}"

    def add(self, name, voters=(), *, seed=0, incarnation=None, timeout=None,
            timing=Timing(), start=True, durable=False, **kwargs):
        """Create (or replace, as a restart) node ``name``: with no state,
        or, ``durable``, with whatever its data directory holds."""
        if durable:
            kwargs.setdefault("storage_provider", self.disk_provider(name))
        member = ClusterMember(
            name, voters, store=Store(), reactor=self.clock, rng=random.Random(seed),
            send=lambda to, payload: self._send(name, to, payload),
            add_peer=lambda peer, endpoint: self._dial(name, peer, endpoint),
            peer_addr=self.endpoint(name), client_addr=f"{name}:8046",
            cluster_name=self.cluster_name, timing=timing, timeout=timeout,
            incarnation=incarnation, hostname=f"host-{name}", **kwargs)
        old = self.members.get(name)
        if old is not None:
            old.stop()
        self.members[name] = member
        self.dialed[name] = set(voters) - {name}
        if start:
            member.start()
        return member

    def disk_provider(self, name, **kwargs):
        """A DiskProvider on ``name``'s own LazyFileSystem (inline writes)."""
        from doozertw.persist.fs import LazyFileSystem
        fs = self.disks.setdefault(name, LazyFileSystem())
        return DiskProvider(f"/data/{name}", self.cluster_name, name, self.clock,
                            fs=fs, threaded=False, free_bytes=lambda: 1 << 40, **kwargs)

    def crash(self, name, lose_unsynced=True):
        """Stop ``name``: its memory is gone; a durable node's disk keeps
        only what was fsynced (with ``lose_unsynced``)."""
        member = self.members.pop(name)
        member.stop()
        disk = self.disks.get(name)
        if disk is not None and lose_unsynced:
            disk.crash()
        return member

    def _dial(self, src, peer, endpoint):
        if peer == src:
            raise ValueError("own name")
        self.dialed[src].add(peer)

    def _send(self, src, dst, payload):
        if dst not in self.dialed.get(src, ()):
            return False
        if (src, dst) in self.cut:
            return True
        self.clock.callLater(self.latency, self._deliver, src, dst, payload)
        if self.duplicate:
            self.clock.callLater(self.latency * 2, self._deliver, src, dst, payload)
        return True

    def _deliver(self, src, dst, payload):
        member = self.members.get(dst)
        if member is None or (src, dst) in self.cut or src not in self.members:
            return
        self.delivered += 1
        member.receive(src, payload)

    def partition(self, *groups):
        """Cut every link between different groups of names."""
        self.cut = {(a, b) for g1 in groups for g2 in groups if g1 is not g2
                    for a in g1 for b in g2}

    def isolate(self, name):
        others = set(self.members) - {name}
        self.partition({name}, others)

    def heal(self):
        self.cut = set()

    def run(self, seconds, step=0.01):
        """Advance the clock by ``seconds`` in small steps."""
        for _ in range(int(round(seconds / step))):
            self.clock.advance(step)

    def leader(self):
        leaders = [m for m in self.members.values() if m.driver.is_leader]
        return leaders[0] if len(leaders) == 1 else None


__all__ = ["MemoryNetwork"]
