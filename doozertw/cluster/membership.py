"""Membership from the /ctl tree: joins, promotion, removal, --silent-voter-timeout.

The store describes the cluster as doozer does, plus two keys of ours:

    /ctl/cal/<n>               voter slot n: a node name, or empty
    /ctl/node/<name>/member    the Raft member id of the node's current life
    /ctl/node/<name>/peer      the node's peer endpoint (client endpoint string)

Every node, every ``interval``: dials the peer endpoint of every node in
/ctl/node (the replicated address book); a learner whose name is in no slot
claims an empty /ctl/cal/<n> (doozer's way: an operator creates the empty
slot) with a compare-and-set, so only one learner gets each slot.

The leader, every ``interval``, makes the Raft configuration follow the
tree, one change at a time (Raft's single-server changes):

1. no slot exists yet: write one slot per voter and their member ids;
2. a member whose name maps to another member id (an earlier life of
   that node) or to none (the operator deleted /ctl/node/<name>/member):
   remove it;
3. a registered member id not in the configuration: add it as a learner;
4. a learner whose name is in a slot and who has caught up: promote it;
5. a voter whose name is in no slot: remove it (step 3 then adds it back
   as a learner, so deleting a slot demotes a node);
6. with ``timeout``: a voter silent for ``timeout`` seconds loses its slot.

A ``JoinRequest`` reaching the leader registers the joiner: the leader
dials it and writes its ``peer`` and ``member`` keys; step 3 does the rest.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.logger import Logger

from doozertw.cluster import envelope as env
from doozertw.consensus import (
    ConfChange, ConfChangeOp, RaftError, RaftNode, Role,
)
from doozertw.store import CLOBBER, DeleteFile, Glob, SetFile

CAL = "/ctl/cal"
_CAL_GLOB = Glob("/ctl/cal/*")
_MEMBER_GLOB = Glob("/ctl/node/*/member")
_PEER_GLOB = Glob("/ctl/node/*/peer")


def member_path(name):
    return f"/ctl/node/{name}/member"


def peer_path(name):
    return f"/ctl/node/{name}/peer"


def _name_in(path):
    return path.split("/")[3]


class Membership:
    """Keeps transport peers and the Raft configuration in line with /ctl.

    ``propose(mutation)`` is the node's proposer; ``add_peer(name, endpoint)``
    dials a peer (PeerTransport.add_peer).
    """

    log = Logger()

    def __init__(self, driver, propose, add_peer, reactor, interval=0.25,
                 timeout=None, catch_up_slack=0):
        self.driver = driver
        self.store = driver.store
        self.propose = propose
        self.add_peer = add_peer
        self.reactor = reactor
        self.interval = interval
        self.timeout = timeout
        self.catch_up_slack = catch_up_slack
        self.known_peers = {}
        self.changes = []
        self._leader_since = None
        self._in_flight = set()
        self._loop = None
        driver.on_envelope[env.JoinRequest] = self._join_requested
        driver.on_role.append(self._role_changed)

    def start(self):
        self._loop = task.LoopingCall(self.run_once)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    # -- reading the tree -------------------------------------------------------------

    def slots(self):
        """{slot path: (name or "", file rev)}"""
        return {e.path: (e.value.decode("utf-8", "replace"), e.rev)
                for e in self.store.files(_CAL_GLOB)}

    def registered(self):
        """{node name: current member id}"""
        return {_name_in(e.path): e.value.decode("utf-8", "replace")
                for e in self.store.files(_MEMBER_GLOB)}

    # -- every node -------------------------------------------------------------------

    def run_once(self):
        if not self.driver.started:
            return
        try:
            self._dial_known_peers()
            if self.driver.is_leader:
                self._reconcile()
            else:
                self._claim_empty_slot()
        except Exception:
            self.log.failure("membership pass failed")

    def _dial_known_peers(self):
        for event in self.store.files(_PEER_GLOB):
            name = _name_in(event.path)
            endpoint = event.value.decode("utf-8", "replace")
            if name != self.driver.name and self.known_peers.get(name) != endpoint:
                self.dial(name, endpoint)

    def remember(self, name, endpoint):
        """Peer ``name`` is already dialed at ``endpoint`` by someone else:
        do not dial it again unless /ctl says it moved."""
        self.known_peers.setdefault(name, endpoint)

    def dial(self, name, endpoint):
        """Connect to peer ``name`` at ``endpoint`` (through ``add_peer``)
        and remember it in ``known_peers``; an unusable endpoint is logged,
        not raised."""
        try:
            self.add_peer(name, endpoint)
        except (ValueError, RuntimeError) as exc:
            self.log.warn("cannot dial {peer} at {endpoint}: {error}", peer=name,
                          endpoint=endpoint, error=str(exc))
            return
        self.known_peers[name] = endpoint

    def _claim_empty_slot(self):
        me = self.driver.member_id
        if me not in self.driver.conf.learners or self.registered().get(self.driver.name) != me:
            return
        slots = self.slots()
        if any(name == self.driver.name for name, _ in slots.values()):
            return
        empty = sorted(path for path, (name, _) in slots.items() if not name)
        if empty:
            path = empty[0]
            self._write(SetFile(path, slots[path][1], self.driver.name.encode("utf-8")))

    def _write(self, mutation):
        key = (type(mutation).__name__, mutation.path)
        if key in self._in_flight:
            return
        self._in_flight.add(key)

        def done(result):
            self._in_flight.discard(key)
            return None
        self.propose(mutation).addBoth(done)

    # -- joins --------------------------------------------------------------------------

    def _join_requested(self, from_name, request):
        if not self.driver.is_leader or env.name_of(request.member) != from_name:
            return
        if from_name == self.driver.name:
            return
        if self.known_peers.get(from_name) != request.peer_addr:
            self.dial(from_name, request.peer_addr)
        registered = self.registered().get(from_name)
        if registered == request.member:
            return
        self.log.info("registering {member} at {endpoint}", member=request.member,
                      endpoint=request.peer_addr)
        self._write(SetFile(peer_path(from_name), CLOBBER, request.peer_addr.encode("utf-8")))
        self._write(SetFile(member_path(from_name), CLOBBER, request.member.encode("utf-8")))

    # -- the leader -------------------------------------------------------------------

    def _role_changed(self, soft):
        if soft.role == Role.LEADER:
            self._leader_since = self.reactor.seconds()

    def _reconcile(self):
        st = self.driver.raft.status()
        if not st.committed_in_term or self._in_flight:
            return
        slots = self.slots()
        if not slots:
            self._initialise(st.conf)
            return
        change = self._next_change(st, slots, self.registered())
        if change is not None:
            self._change(change)
        elif self.timeout is not None:
            self._expire_silent(st, slots)

    def _initialise(self, conf):
        for n, member in enumerate(sorted(conf.voters)):
            name = env.name_of(member)
            self._write(SetFile(f"{CAL}/{n}", 0, name.encode("utf-8")))
            self._write(SetFile(member_path(name), 0, member.encode("utf-8")))

    def _next_change(self, st, slots, registered):
        """The next ConfChange that brings the configuration of Status
        ``st`` closer to the calendar and registrations, or None."""
        conf = st.conf
        cal_names = {name for name, _ in slots.values() if name}
        for member in sorted(conf.members()):
            if registered.get(env.name_of(member)) != member and len(conf.voters - {member}):
                return ConfChange(ConfChangeOp.REMOVE_NODE, member)
        for _name, member in sorted(registered.items()):
            if member not in conf.members():
                return ConfChange(ConfChangeOp.ADD_LEARNER, member)
        for name in sorted(cal_names):
            member = registered.get(name)
            if member in conf.learners and self._caught_up(st, member):
                return ConfChange(ConfChangeOp.ADD_VOTER, member)
        for member in sorted(conf.voters):
            if env.name_of(member) not in cal_names and len(conf.voters) > 1:
                return ConfChange(ConfChangeOp.REMOVE_NODE, member)
        return None

    def _caught_up(self, st, member):
        progress = st.progress.get(member)
        return progress is not None and progress.match + self.catch_up_slack >= st.commit

    def _change(self, change):
        try:
            self.driver.call(RaftNode.propose_conf_change, change)
        except RaftError as exc:
            self.log.debug("conf change {change} deferred: {error}", change=change,
                           error=str(exc))
            return
        self.log.info("proposed {op} {member}", op=change.op.name, member=change.node_id)
        self.changes.append(change)

    def _expire_silent(self, st, slots):
        now = self.reactor.seconds()
        for member in sorted(st.conf.voters - {self.driver.member_id}):
            heard = max(self.driver.last_heard.get(member, 0), self._leader_since or now)
            if now - heard < self.timeout:
                continue
            name = env.name_of(member)
            for path, (slot_name, rev) in sorted(slots.items()):
                if slot_name == name:
                    self.log.warn("{member} silent for {seconds:.1f}s: freeing {slot}",
                                  member=member, seconds=now - heard, slot=path)
                    self._write(DeleteFile(path, rev))
            return


__all__ = ["Membership", "member_path", "peer_path"]
