"""A deterministic simulated Raft cluster for fault-injection tests.

Time is counted in ticks; one ``SimCluster.tick()`` ticks every running node
once and then delivers every message due at that tick. The network, faults
and client load all draw from one seeded ``random.Random``, so a seed
reproduces a run exactly.

The network can lose, duplicate and delay (hence reorder) messages and
block any directed pair of nodes (partitions into arbitrary groups,
symmetric or one-way). Nodes crash and restart keeping their durable
``MemoryStorage`` (or, with ``lose_state=True``, losing everything).

Every Ready is checked as it is handled; an ``InvariantViolation`` is raised
at once if election safety, log matching, leader completeness or state
machine safety is broken.
"""

from __future__ import annotations

import heapq
import random
import struct

from doozertw.consensus import codec
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, EntryKind,
)
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.ready import RaftError, Role


class InvariantViolation(AssertionError):
    """A Raft safety property was broken."""


class LivenessFailure(AssertionError):
    """The cluster did not make progress within the allowed ticks."""


# -- the replicated state machine of the simulation ----------------------


def encode_state(applied):
    """Snapshot data: every applied (index, term, data) of normal entries."""
    parts = [struct.pack(">I", len(applied))]
    for index, term, data in applied:
        parts.append(struct.pack(">QQI", index, term, len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_state(blob):
    if not blob:
        return []
    (count,), pos, out = struct.unpack_from(">I", blob), 4, []
    for _ in range(count):
        index, term, n = struct.unpack_from(">QQI", blob, pos)
        pos += 20
        out.append((index, term, bytes(blob[pos:pos + n])))
        pos += n
    return out


class SimNode:
    """One simulated server: durable storage, its RaftNode when up, and the
    application state (the list of applied normal entries)."""

    def __init__(self, node_id, founding_conf):
        self.id = node_id
        self.founding_conf = founding_conf
        self.storage = MemoryStorage()
        self.raft = None
        self.applied = []
        self.applied_index = 0
        self.read_states = []

    @property
    def up(self):
        return self.raft is not None


class Checker:
    """Global views used to check Raft's safety properties."""

    def __init__(self):
        self.leaders = {}          # term -> leader id
        self.entries = {}          # (index, term) -> (kind, data, prev_term)
        self.committed = {}        # index -> (term, kind, data), applied anywhere
        self.read_floors = {}      # ctx -> highest commit index at issue time
        self.reads_answered = 0

    def on_leader(self, node):
        raft = node.raft
        other = self.leaders.setdefault(raft.term, node.id)
        if other != node.id:
            raise InvariantViolation(
                f"election safety: {other} and {node.id} lead term {raft.term}")
        for index, (term, _k, _d) in self.committed.items():
            if index > raft.log.snapshot.index and raft.log.term(index) != term:
                raise InvariantViolation(
                    f"leader completeness: {node.id} (term {raft.term}) lacks "
                    f"committed entry {index}@{term}")

    def on_persist(self, node, entries):
        log = node.raft.log
        for e in entries:
            prev_term = log.term(e.index - 1)
            key = (e.index, e.term)
            seen = self.entries.setdefault(key, (e.kind, e.data, prev_term))
            if seen != (e.kind, e.data, prev_term):
                raise InvariantViolation(
                    f"log matching: {node.id} has {e.index}@{e.term} differing "
                    f"from another log ({seen!r})")

    def on_apply(self, node, entry):
        if entry.index != node.applied_index + 1:
            raise InvariantViolation(
                f"{node.id} applied {entry.index} after {node.applied_index}")
        self.check_committed(node, entry.index, entry.term, entry.kind, entry.data)

    def on_read_state(self, node, rs):
        """Linearizable reads: a ReadIndex answer may not precede anything
        committed before the read was issued."""
        floor = self.read_floors.get(rs.ctx)
        if floor is None:
            raise InvariantViolation(f"{node.id} got unknown read {rs.ctx!r}")
        if rs.index < floor:
            raise InvariantViolation(
                f"stale read: {node.id} read {rs.ctx!r} at {rs.index} but "
                f"{floor} was committed when it was issued")
        self.reads_answered += 1

    def check_committed(self, node, index, term, kind, data):
        seen = self.committed.setdefault(index, (term, kind, data))
        if seen != (term, kind, data):
            raise InvariantViolation(
                f"state machine safety: {node.id} applied {index}@{term} "
                f"{data!r}, another node applied {seen!r}")


class SimNetwork:
    """Seeded lossy network with per-pair blocking."""

    def __init__(self, rng, loss=0.0, dup=0.0, min_delay=1, max_delay=1,
                 use_codec=True):
        self.rng = rng
        self.loss = loss
        self.dup = dup
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.use_codec = use_codec
        self.blocked = set()
        self.queue = []
        self.seq = 0
        self.sent = 0

    def send(self, now, m):
        self.sent += 1
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        payload = codec.encode(m) if self.use_codec else m
        for _ in range(copies):
            delay = self.rng.randint(self.min_delay, self.max_delay)
            self.seq += 1
            heapq.heappush(self.queue, (now + delay, self.seq, payload))

    def due(self, now):
        while self.queue and self.queue[0][0] <= now:
            payload = heapq.heappop(self.queue)[2]
            m = codec.decode(payload) if self.use_codec else payload
            if (m.src, m.dst) not in self.blocked:
                yield m

    def partition(self, *groups):
        """Block all traffic between different groups (nodes not named are
        isolated from everyone)."""
        group_of = {n: i for i, g in enumerate(groups) for n in g}
        everyone = set(group_of)
        self.blocked = {(a, b) for a in everyone for b in everyone
                        if group_of[a] != group_of[b]}

    def block(self, src, dst):
        self.blocked.add((src, dst))

    def heal(self):
        self.blocked = set()


class SimCluster:
    """Deterministic cluster of ``n`` (or the named) founding voters."""

    def __init__(self, n=3, seed=0, *, ids=None, loss=0.0, dup=0.0,
                 min_delay=1, max_delay=1, compact_every=None,
                 use_codec=True, storages=None, **raft_options):
        self.rng = random.Random(seed)
        self.now = 0
        ids = list(ids) if ids else [f"n{i}" for i in range(1, n + 1)]
        self.founding = ConfState(voters=ids)
        self.net = SimNetwork(self.rng, loss, dup, min_delay, max_delay,
                              use_codec)
        self.compact_every = compact_every
        self.raft_options = raft_options
        self.check = Checker()
        self.proposals = 0
        self.nodes = {}
        for nid in ids:
            self.nodes[nid] = SimNode(nid, self.founding)
            if storages and nid in storages:
                self.nodes[nid].storage = storages[nid]
            self.restart(nid)

    # -- node lifecycle ----------------------------------------------------

    def restart(self, nid, lose_state=False):
        node = self.nodes[nid]
        if lose_state:
            node.storage = MemoryStorage()
        snap = node.storage.snapshot
        node.applied = decode_state(snap.data)
        node.applied_index = snap.index
        node.read_states = []
        node.raft = RaftNode(nid, node.founding_conf, node.storage,
                             random.Random(self.rng.random()),
                             **self.raft_options)
        self.process(node)

    def crash(self, nid):
        self.nodes[nid].raft = None

    def add_node(self, nid):
        """Start a node that will join the cluster (empty configuration)."""
        self.nodes[nid] = SimNode(nid, ConfState())
        self.restart(nid)
        return self.nodes[nid]

    def up_nodes(self):
        return [n for n in self.nodes.values() if n.up]

    # -- driving -----------------------------------------------------------

    def process(self, node):
        """Handle every pending Ready of ``node`` like a real driver."""
        raft = node.raft
        while raft is not None and raft.has_ready():
            rd = raft.ready()
            if rd.snapshot is not None:
                self._restore(node, rd.snapshot)
            node.storage.save(rd)
            self.check.on_persist(node, rd.entries)
            if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
                self.check.on_leader(node)
            for m in rd.messages:
                self.net.send(self.now, m)
            for e in rd.committed_entries:
                self.check.on_apply(node, e)
                node.applied_index = e.index
                if e.kind == EntryKind.NORMAL and e.data:
                    node.applied.append((e.index, e.term, e.data))
            for rs in rd.read_states:
                self.check.on_read_state(node, rs)
            node.read_states.extend(rd.read_states)
            raft.advance(rd)
            self._maybe_compact(node)

    def _restore(self, node, snap):
        node.applied = decode_state(snap.data)
        node.applied_index = snap.index
        for index, term, data in node.applied:
            self.check.check_committed(node, index, term, EntryKind.NORMAL, data)

    def _maybe_compact(self, node):
        raft = node.raft
        if not self.compact_every:
            return
        if node.applied_index - raft.log.snapshot.index >= self.compact_every:
            snap = raft.compact(node.applied_index, encode_state(node.applied))
            node.storage.compact(snap)

    def tick(self):
        self.now += 1
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.up:
                node.raft.tick()
                self.process(node)
        for m in self.net.due(self.now):
            node = self.nodes.get(m.dst)
            if node is not None and node.up:
                node.raft.step(m)
                self.process(node)

    def pump(self, ticks=5):
        """Let time pass delivering messages, without ticking any node (no
        timeouts fire): for tests that script elections themselves."""
        for _ in range(ticks):
            self.now += 1
            for m in self.net.due(self.now):
                node = self.nodes.get(m.dst)
                if node is not None and node.up:
                    node.raft.step(m)
                    self.process(node)

    def run(self, ticks):
        for _ in range(ticks):
            self.tick()

    def run_until(self, predicate, max_ticks, what="condition"):
        for _ in range(max_ticks):
            if predicate():
                return
            self.tick()
        if not predicate():
            raise LivenessFailure(f"{what} not reached in {max_ticks} ticks "
                                  f"(now={self.now})")

    # -- clients -----------------------------------------------------------

    def leader(self):
        """The up node that leads the highest term, or None."""
        leaders = [n for n in self.up_nodes() if n.raft.role == Role.LEADER]
        return max(leaders, key=lambda n: n.raft.term, default=None)

    def propose(self, data):
        """Propose through the current leader; (index, term) or None."""
        node = self.leader()
        if node is None:
            return None
        try:
            result = node.raft.propose(data)
        except RaftError:
            return None
        self.process(node)
        return result

    def propose_conf_change(self, change):
        node = self.leader()
        if node is None:
            return None
        try:
            result = node.raft.propose_conf_change(change)
        except RaftError:
            return None
        self.process(node)
        return result

    def read(self, nid, ctx):
        """Issue a ReadIndex request at node ``nid``; False if refused."""
        node = self.nodes[nid]
        floor = max([n.storage.hard_state.commit for n in self.nodes.values()]
                    + [n.raft.log.committed for n in self.up_nodes()])
        self.check.read_floors[ctx] = floor
        try:
            node.raft.read_index(ctx)
        except RaftError:
            return False
        self.process(node)
        return True

    def applied_by(self, nid, data):
        return any(d == data for _i, _t, d in self.nodes[nid].applied)

    def voters(self):
        """Voters of the newest configuration any up node knows."""
        newest = max(self.up_nodes(), key=lambda n: n.raft.log.last_index())
        return newest.raft.conf.voters

    # -- faults ------------------------------------------------------------

    def heal(self):
        """Remove partitions and faults and restart every crashed node."""
        self.net.heal()
        self.net.loss = 0.0
        self.net.dup = 0.0
        for nid, node in sorted(self.nodes.items()):
            if not node.up:
                self.restart(nid)

    def await_commit(self, data, max_ticks=200):
        """Propose ``data`` (retrying through new leaders) until a quorum of
        voters has applied it; returns the ticks it took."""
        start = self.now

        def done():
            voters = self.voters()
            count = sum(1 for v in voters if v in self.nodes
                        and self.applied_by(v, data))
            return count >= len(voters) // 2 + 1

        proposed_at = None
        for _ in range(max_ticks):
            if done():
                return self.now - start
            if proposed_at is None or self.now - proposed_at > 30:
                if self.propose(data) is not None:
                    proposed_at = self.now
            self.tick()
        raise LivenessFailure(f"{data!r} not committed within {max_ticks} "
                              f"ticks (now={self.now})")


def chaos_step(cluster, rng, *, crash_p=0.01, partition_p=0.01, heal_p=0.02,
               propose_p=0.3, read_p=0.1):
    """One random fault or client action; called once per tick by tests."""
    r = rng.random()
    nodes = sorted(cluster.nodes)
    if r < crash_p:
        victim = rng.choice(nodes)
        if cluster.nodes[victim].up:
            cluster.crash(victim)
        else:
            cluster.restart(victim)
    elif r < crash_p + partition_p:
        rng.shuffle(nodes)
        cut = rng.randint(1, len(nodes) - 1)
        if rng.random() < 0.5:
            cluster.net.partition(nodes[:cut], nodes[cut:])
        else:
            cluster.net.block(nodes[0], nodes[-1])
    elif r < crash_p + partition_p + heal_p:
        cluster.net.heal()
    if rng.random() < propose_p:
        cluster.proposals += 1
        cluster.propose(b"v%d" % cluster.proposals)
    if rng.random() < read_p:
        up = sorted(n.id for n in cluster.up_nodes())
        if up:
            cluster.proposals += 1
            cluster.read(rng.choice(up), b"r%d" % cluster.proposals)


def membership_step(cluster, rng, *, change_p=0.02, min_voters=3):
    """Maybe propose one random membership change through the leader:
    promote a learner, add a new learner node, or remove a voter."""
    if rng.random() >= change_p or cluster.leader() is None:
        return None
    conf = cluster.leader().raft.conf
    if conf.learners and rng.random() < 0.7:
        change = ConfChange(ConfChangeOp.ADD_VOTER, sorted(conf.learners)[0])
    elif rng.random() < 0.5 or len(conf.voters) <= min_voters:
        nid = f"n{len(cluster.nodes) + 1}"
        change = ConfChange(ConfChangeOp.ADD_LEARNER, nid)
        if cluster.propose_conf_change(change) is None:
            return None
        cluster.add_node(nid)
        return change
    else:
        change = ConfChange(ConfChangeOp.REMOVE_NODE,
                            rng.choice(sorted(conf.voters)))
    return change if cluster.propose_conf_change(change) else None
