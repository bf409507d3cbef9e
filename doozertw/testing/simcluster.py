"""A deterministic simulated Raft cluster for fault-injection tests.

Time is counted in ticks; one ``SimCluster.tick()`` ticks every running node
once and then handles every event due at that tick: message deliveries and
disk-write completions, in the order they were scheduled. The network,
disks, faults and client load all draw from one seeded ``random.Random``, so
a seed reproduces a run exactly.

The network can lose, duplicate and delay (hence reorder) messages and
block any directed pair of nodes (partitions into arbitrary groups,
symmetric or one-way).

Each node drives its RaftNode the way doozertw.consensus.ready's contract
allows a real driver with a writer thread to: a Ready is handed to the
node's SimDisk (doozertw.testing.simdisk) and its persistence completes
after a seeded delay of 0..``disk_delay`` ticks, while the node keeps being
ticked, stepped and proposed to. A leader's replication messages go out at
once when ``early_send_allowed``; every other message waits for the write.
On completion the node sends the held messages, applies the committed
entries, calls ``advance`` and may compact.

Nodes crash and restart under the same id, rebuilt from their durable
storage alone. A crash either keeps the in-flight write (the process died)
or loses it (``lose_unsynced``: power loss); ``crash_many`` takes several
nodes (or all) down at once; ``restart(..., lose_state=True)`` wipes a disk.

Every event is checked as it happens; an ``InvariantViolation`` is raised at
once if election safety, log matching, leader completeness or state machine
safety (across nodes, and per node across its crashes) is broken; if a
ReadIndex answer or a served read is older than what was committed when the
read was issued (linearizable reads: ``read`` issues one, the node serves it
once ``read_servable`` allows); or if a node's storage differs, after any
write, from what its Readys asked for or from the log it holds in memory.
"""

from __future__ import annotations

import heapq
import random

from doozertw.consensus import codec
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, EntryKind,
)
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.ready import (
    RaftError, ReadState, Role, early_send_allowed, is_leader_early_message,
)
from doozertw.testing.simdisk import (
    Checker, InvariantViolation, SimDisk, SimNode, decode_state,
    encode_state,
)

__all__ = [
    "Checker", "InvariantViolation", "LivenessFailure", "SimCluster",
    "applied_to_read_index",
    "SimDisk", "SimNetwork", "SimNode", "chaos_step", "decode_state",
    "encode_state", "membership_step",
]


class LivenessFailure(AssertionError):
    """The cluster did not make progress within the allowed ticks."""


def applied_to_read_index(node: SimNode, read_state: ReadState) -> bool:
    """The driver's rule for answered ReadIndex requests: serve the read
    once the node has applied up to the read index."""
    return node.applied_index >= read_state.index


class SimNetwork:
    """Seeded lossy network with per-pair blocking; ``drop``, if set, is a
    predicate choosing further messages to lose (by kind, sender, ...)."""

    def __init__(self, rng, loss=0.0, dup=0.0, min_delay=1, max_delay=1,
                 use_codec=True):
        self.rng = rng
        self.loss = loss
        self.dup = dup
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.use_codec = use_codec
        self.blocked = set()
        self.drop = None  # optional predicate: lose the messages it selects
        self.queue = []
        self.seq = 0
        self.sent = 0

    def next_seq(self):
        self.seq += 1
        return self.seq

    def send(self, now, m):
        self.sent += 1
        if self.rng.random() < self.loss or (
                self.drop is not None and self.drop(m)):
            return
        copies = 2 if self.rng.random() < self.dup else 1
        payload = codec.encode(m) if self.use_codec else m
        for _ in range(copies):
            delay = self.rng.randint(self.min_delay, self.max_delay)
            heapq.heappush(self.queue, (now + delay, self.next_seq(), payload))

    def pop(self):
        """The next queued message, or None if its link is blocked."""
        payload = heapq.heappop(self.queue)[2]
        m = codec.decode(payload) if self.use_codec else payload
        return None if (m.src, m.dst) in self.blocked else m

    def due(self, now):
        while self.queue and self.queue[0][0] <= now:
            m = self.pop()
            if m is not None:
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
    """Deterministic cluster of ``n`` (or the named) founding voters, plus
    founding ``learners``. ``disk_delay``: each Ready's write completes
    0..disk_delay ticks after it is handed out; the default 0 makes every
    write synchronous (for scripted scenarios that count ticks; the chaos
    runs use asynchronous disks).
    ``early_message(m)`` says which messages may precede the sender's
    write (the contract's ``is_leader_early_message``; tests plant driver
    bugs by replacing it); ``read_servable(node, read_state)`` says when
    an answered read may be served from the node's state (default: once
    applied up to its read index). ``crashes`` and ``stats`` count what a run
    exercised (crashes by kind, writes lost, early and held messages, ticks
    and steps of nodes with a write in flight)."""

    def __init__(self, n=3, seed=0, *, ids=None, learners=(), loss=0.0,
                 dup=0.0, min_delay=1, max_delay=1, compact_every=None,
                 use_codec=True, storages=None, disk_delay=0,
                 early_message=is_leader_early_message,
                 read_servable=applied_to_read_index, **raft_options):
        self.rng = random.Random(seed)
        self.now = 0
        ids = list(ids) if ids else [f"n{i}" for i in range(1, n + 1)]
        self.founding = ConfState(voters=ids, learners=learners)
        self.net = SimNetwork(self.rng, loss, dup, min_delay, max_delay,
                              use_codec)
        self.compact_every = compact_every
        self.disk_delay = disk_delay
        self.early_message = early_message
        self.read_servable = read_servable
        self.raft_options = raft_options
        self.check = Checker()
        self.proposals = 0
        self.crashes = {"kept": 0, "lost": 0, "mass": 0, "all": 0,
                        "writes_lost": 0}
        self.stats = {"early_sent": 0, "held_sent": 0, "busy_steps": 0,
                      "busy_ticks": 0, "writes": 0}
        self.disk_queue = []
        self.nodes = {}
        for nid in sorted(self.founding.members(), key=ids_order(ids)):
            storage = (storages or {}).get(nid)
            self.nodes[nid] = SimNode(nid, self.founding, storage)
            self.restart(nid)

    # -- node lifecycle ----------------------------------------------------

    def restart(self, nid, lose_state=False):
        """Start ``nid`` (same id) from its durable storage alone."""
        node = self.nodes[nid]
        if node.up:
            raise AssertionError(f"{nid} is already up")
        if lose_state:
            node.disk = SimDisk()
        self.check.check_durable(node)
        snap = node.storage.snapshot
        node.applied = decode_state(snap.data)
        node.applied_index = snap.index
        node.read_states = []
        node.pending_reads = []
        node.starts += 1
        self.check.on_restore(node, snap)
        node.raft = RaftNode(nid, node.founding_conf, node.storage,
                             random.Random(self.rng.random()),
                             **self.raft_options)
        self.process(node)

    def crash(self, nid, lose_unsynced=False):
        """Kill ``nid``. Its in-flight write reaches the disk unless
        ``lose_unsynced`` (power loss); nothing held is sent."""
        node = self.nodes[nid]
        if not node.up:
            return
        if node.disk.busy and lose_unsynced:
            self.crashes["writes_lost"] += 1
        kept = node.disk.crash(lose_unsynced)
        if kept is not None:
            self.check.on_persist(node, kept.entries)
        self.crashes["lost" if lose_unsynced else "kept"] += 1
        node.raft = None
        self.check.check_durable(node)

    def crash_many(self, nids, lose_unsynced=True):
        """Several nodes (possibly all) die at the same moment."""
        self.crashes["mass"] += 1
        self.crashes["all"] += set(nids) >= set(self.nodes)
        for nid in sorted(nids):
            self.crash(nid, lose_unsynced)

    def add_node(self, nid):
        """Start a node that will join the cluster (empty configuration)."""
        self.nodes[nid] = SimNode(nid, ConfState())
        self.restart(nid)
        return self.nodes[nid]

    def up_nodes(self):
        return [n for n in self.nodes.values() if n.up]

    # -- driving -----------------------------------------------------------

    def process(self, node):
        """Hand ``node``'s pending Ready to its disk, if the disk is idle;
        a write drawn with delay 0 completes at once."""
        while node.up and not node.disk.busy and node.raft.has_ready():
            rd = node.raft.ready()
            self._begin(node, rd)
            delay = self.rng.randint(0, self.disk_delay) if self.disk_delay else 0
            if delay:
                heapq.heappush(self.disk_queue, (
                    self.now + delay, self.net.next_seq(), node.id,
                    node.disk.token))
                return
            self._complete(node)

    def _begin(self, node, rd):
        if rd.snapshot is not None:
            self._restore(node, rd.snapshot)
        early, held = [], list(rd.messages)
        if early_send_allowed(rd, node.storage.hard_state):
            early = [m for m in held if self.early_message(m)]
            held = [m for m in held if not self.early_message(m)]
        node.disk.begin(rd, held)
        self.stats["early_sent"] += len(early)
        for m in early:
            self.net.send(self.now, m)

    def _complete(self, node):
        rd, held = node.disk.finish()
        self.check.on_persist(node, rd.entries)
        self.stats["writes"] += 1
        self.stats["held_sent"] += len(held)
        for m in held:
            self.net.send(self.now, m)
        for e in rd.committed_entries:
            self.check.on_apply(node, e)
            node.applied_index = e.index
            if e.kind == EntryKind.NORMAL and e.data:
                node.applied.append((e.index, e.term, e.data))
        for rs in rd.read_states:
            self.check.on_read_state(node, rs)
        node.read_states.extend(rd.read_states)
        node.pending_reads.extend(rd.read_states)
        node.raft.advance(rd)
        self._maybe_compact(node)
        self.check.on_saved(node)
        self._serve_reads(node)
        self._observe(node)

    def _serve_reads(self, node: SimNode) -> None:
        """Serve the answered reads that ``read_servable`` allows now, from
        the node's application state (checked by the Checker)."""
        waiting = []
        for rs in node.pending_reads:
            if self.read_servable(node, rs):
                self.check.on_read_release(node, rs)
            else:
                waiting.append(rs)
        node.pending_reads = waiting

    def _restore(self, node, snap):
        node.applied = decode_state(snap.data)
        node.applied_index = snap.index
        self.check.on_restore(node, snap)

    def _maybe_compact(self, node):
        raft = node.raft
        if not self.compact_every:
            return
        if node.applied_index - raft.status().snapshot_index >= self.compact_every:
            snap = raft.compact(node.applied_index, encode_state(node.applied))
            node.disk.compact(snap)

    def _observe(self, node):
        """Check a node that may just have become leader, then drive it."""
        raft = node.raft
        if raft is not None and raft.role == Role.LEADER and \
                self.check.leaders.get(raft.term) != node.id:
            self.check.on_leader(node)
        self.process(node)

    def _events(self):
        """Handle the message deliveries and disk completions due now, in
        the order they were scheduled."""
        q, d = self.net.queue, self.disk_queue
        while True:
            msg_key = q[0][:2] if q and q[0][0] <= self.now else None
            disk_key = d[0][:2] if d and d[0][0] <= self.now else None
            if msg_key is None and disk_key is None:
                return
            if msg_key is None or (disk_key is not None and disk_key < msg_key):
                _due, _seq, nid, token = heapq.heappop(d)
                node = self.nodes[nid]
                if node.up and node.disk.token == token:
                    self._complete(node)
                continue
            m = self.net.pop()
            node = self.nodes.get(m.dst) if m is not None else None
            if node is not None and node.up:
                self.stats["busy_steps"] += node.disk.busy
                node.raft.step(m)
                self._observe(node)

    def tick(self):
        self.now += 1
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.up:
                self.stats["busy_ticks"] += node.disk.busy
                node.raft.tick()
                self._observe(node)
        self._events()

    def pump(self, ticks=5):
        """Let time pass delivering messages and completing writes, without
        ticking any node (no timeouts fire): for tests that script
        elections themselves."""
        for _ in range(ticks):
            self.now += 1
            self._events()

    def settle(self, max_ticks=100):
        """Pump until no write is in flight and no node has a Ready."""
        for _ in range(max_ticks):
            if not any(n.disk.busy or n.raft.has_ready() for n in self.up_nodes()):
                return
            self.pump(1)
        raise LivenessFailure("disks did not settle")

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
        self._observe(node)
        return result

    def propose_conf_change(self, change):
        node = self.leader()
        if node is None:
            return None
        try:
            result = node.raft.propose_conf_change(change)
        except RaftError:
            return None
        self._observe(node)
        return result

    def read(self, nid, ctx):
        """Issue a ReadIndex request at node ``nid``; False if refused."""
        node = self.nodes[nid]
        floor = max([n.storage.hard_state.commit for n in self.nodes.values()]
                    + [n.raft.status().commit for n in self.up_nodes()])
        self.check.on_read_issued(ctx, floor)
        try:
            node.raft.read_index(ctx)
        except RaftError:
            return False
        self._observe(node)
        return True

    def applied_by(self, nid, data):
        return any(d == data for _i, _t, d in self.nodes[nid].applied)

    def voters(self):
        """Voters of the newest configuration any up node knows."""
        newest = max(self.up_nodes(), key=lambda n: n.raft.status().last_index)
        return newest.raft.conf.voters

    # -- faults ------------------------------------------------------------

    def heal(self):
        """Remove partitions and faults and restart every crashed node."""
        self.net.heal()
        self.net.drop = None
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


def ids_order(ids):
    """Sort key keeping the given voter order first, then learners."""
    rank = {nid: i for i, nid in enumerate(ids)}
    return lambda nid: (rank.get(nid, len(rank)), nid)


def chaos_step(cluster, rng, *, crash_p=0.01, partition_p=0.01, heal_p=0.02,
               propose_p=0.3, read_p=0.1, lossy_p=0.0, mass_crash_p=0.0,
               restart_p=0.0):
    """One random fault or client action; called once per tick by tests.

    A crash loses the victim's unsynced write with probability ``lossy_p``;
    ``mass_crash_p`` takes 2..all nodes down at once (losing unsynced data
    with ``lossy_p``); ``restart_p`` brings one crashed node back."""
    r = rng.random()
    nodes = sorted(cluster.nodes)
    if r < crash_p:
        victim = rng.choice(nodes)
        if cluster.nodes[victim].up:
            cluster.crash(victim, lose_unsynced=rng.random() < lossy_p)
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
    _crash_or_restart_many(cluster, rng, lossy_p, mass_crash_p, restart_p)
    if rng.random() < propose_p:
        cluster.proposals += 1
        cluster.propose(b"v%d" % cluster.proposals)
    if rng.random() < read_p:
        up = sorted(n.id for n in cluster.up_nodes())
        if up:
            cluster.proposals += 1
            cluster.read(rng.choice(up), b"r%d" % cluster.proposals)


def _crash_or_restart_many(cluster, rng, lossy_p, mass_crash_p, restart_p):
    if mass_crash_p and rng.random() < mass_crash_p:
        nodes = sorted(cluster.nodes)
        victims = rng.sample(nodes, rng.randint(min(2, len(nodes)), len(nodes)))
        cluster.crash_many(victims, lose_unsynced=rng.random() < lossy_p)
    if restart_p and rng.random() < restart_p:
        down = sorted(nid for nid, n in cluster.nodes.items() if not n.up)
        if down:
            cluster.restart(rng.choice(down))


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
