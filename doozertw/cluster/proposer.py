"""ReplicatedProposer: commits Node mutations through the Raft log.

``propose(mutation)`` returns a Deferred[Outcome] that fires when this
node applies the entry carrying the proposal (every node applies every
entry; the origin recognises its own by member id and proposal id).

Proposals made in one reactor turn go out together: the leader appends
them with one ``propose_batch``; a follower forwards them to the leader in
one ``Forward`` envelope and learns their (index, term) from the
``ForwardAck``. A proposal is proposed again only once it is certainly
lost, so it can never be applied twice: when its index holds an entry of
another term, or, appended (or forwarded) in term T, when an entry of a
term above T is applied before it (the leader accepts a Forward only in
the term it names, and terms never decrease along a log, so the proposal
can no longer appear after that point). One that is not
committed within ``timeout`` seconds fails with DoozerError(OTHER,
"no quorum: ..."); its outcome is then unknown to the client.
"""

from __future__ import annotations

import itertools

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.cluster import envelope as env
from doozertw.consensus import NotLeader, RaftNode
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import encode as encode_mutation

RETRY_DELAY = 0.05


class _Pending:
    """One proposal of this node, from propose() until applied or failed."""

    def __init__(self, pid, mutation, deferred):
        self.pid = pid
        self.mutation = mutation
        self.data = None  # the entry data, fixed once this node has a member id
        self.deferred = deferred
        self.index = None
        self.term = None
        self.forward_term = None
        self.timer = None


def _term_of(p):
    """The term a proposal was (or would have been) appended in, if known."""
    return p.term if p.index is not None else p.forward_term


class ReplicatedProposer:
    """The Node's proposer in a cluster; see the module docstring."""

    log = Logger()

    def __init__(self, driver, reactor, timeout=None):
        self.driver = driver
        self.reactor = reactor
        self.timeout = timeout if timeout is not None else driver.timing.quorum_timeout
        # Proposal ids must not repeat across the member's lives (the
        # applied-proposals table would take a new proposal for a copy of an
        # old one): each life numbers its proposals under its own prefix.
        self._ids = itertools.count((driver.life << 32) + 1)
        self._pending = {}
        self._by_index = {}
        self._applied_term = 0
        self._queued = []
        self._flush_call = None
        driver.on_apply.append(self._applied)
        driver.on_envelope[env.Forward] = self._forwarded
        driver.on_envelope[env.ForwardAck] = self._acked
        driver.on_envelope[env.ForwardReject] = self._rejected

    @property
    def pending_count(self):
        return len(self._pending)

    def propose(self, mutation):
        refusal = self.driver.write_refusal()
        if refusal is not None:
            return defer.fail(DoozerError(ErrCode.OTHER, refusal))
        pid = next(self._ids)
        d = defer.Deferred()
        p = _Pending(pid, encode_mutation(mutation), d)
        p.timer = self.reactor.callLater(self.timeout, self._expire, pid)
        self._pending[pid] = p
        self._queued.append(p)
        self._schedule(0)
        return d

    # -- sending ----------------------------------------------------------------

    def _schedule(self, delay):
        if self._queued and self._flush_call is None:
            self._flush_call = self.reactor.callLater(delay, self._flush)

    def _flush(self):
        self._flush_call = None
        batch = [p for p in self._queued if p.pid in self._pending]
        self._queued = []
        if not batch:
            return
        driver = self.driver
        if not driver.started:
            self._requeue(batch)
            return
        for p in batch:
            if p.data is None:
                p.data = env.Proposal(driver.member_id, p.pid, p.mutation).encode()
        if driver.is_leader:
            self._append_here(batch)
        elif driver.leader is not None:
            self._forward(batch, driver.leader)
        else:
            self._requeue(batch)

    def _requeue(self, batch):
        self._queued.extend(batch)
        self._schedule(RETRY_DELAY)

    def _append_here(self, batch):
        try:
            placed = self.driver.call(RaftNode.propose_batch, [p.data for p in batch])
        except NotLeader:
            self._requeue(batch)
            return
        for p, (index, term) in zip(batch, placed):
            self._place(p, index, term)

    def _place(self, p, index, term):
        p.index, p.term = index, term
        self._by_index[index] = p

    def _unplace(self, p):
        if self._by_index.get(p.index) is p:
            del self._by_index[p.index]
        p.index = p.term = None

    def _forward(self, batch, leader):
        term = self.driver.raft.term
        for p in batch:
            p.forward_term = term
        items = [(p.pid, p.data) for p in batch]
        forward = env.Forward(self.driver.member_id, term, items)
        if not self.driver.send_envelope(env.name_of(leader), forward):
            self._forget_forward(batch)
            self._requeue(batch)

    # -- the leader's side of forwarding -----------------------------------------

    def _forwarded(self, from_name, message):
        if env.name_of(message.origin) != from_name:
            return
        ids = [pid for pid, _ in message.items]
        raft = self.driver.raft
        if raft is None or raft.term != message.term or not self.driver.is_leader:
            hint = self.driver.leader or ""
            self.driver.send_envelope(from_name, env.ForwardReject(message.term, ids, hint))
            return
        try:
            placed = self.driver.call(RaftNode.propose_batch,
                                      [data for _, data in message.items])
        except NotLeader as exc:
            self.driver.send_envelope(
                from_name, env.ForwardReject(message.term, ids, exc.leader or ""))
            return
        acks = [(pid, index, term) for pid, (index, term) in zip(ids, placed)]
        self.driver.send_envelope(from_name, env.ForwardAck(acks))

    def _acked(self, from_name, message):
        for pid, index, term in message.items:
            p = self._pending.get(pid)
            if p is None or p.index is not None or p.forward_term != term:
                continue  # resolved, or an answer to an earlier forward
            if index <= self.driver.applied:
                self._forget_forward([p])
                self._requeue([p])  # that index already holds another entry
            else:
                self._place(p, index, term)

    def _rejected(self, from_name, message):
        batch = [self._pending[pid] for pid in message.ids
                 if pid in self._pending and self._pending[pid].index is None
                 and self._pending[pid].forward_term == message.term]
        self._forget_forward(batch)
        self._requeue(batch)

    @staticmethod
    def _forget_forward(batch):
        for p in batch:
            p.forward_term = None

    # -- outcomes -------------------------------------------------------------------

    def _applied(self, index, term, proposal, outcome):
        if proposal is not None and proposal.origin == self.driver.member_id:
            p = self._pending.pop(proposal.pid, None)
            if p is not None:
                p.timer.cancel()
                p.deferred.callback(outcome)
        lost = []
        placed = self._by_index.pop(index, None)
        if placed is not None and placed.pid in self._pending and placed.term != term:
            lost.append(placed)
        if term > self._applied_term:
            self._applied_term = term
            lost += [p for p in self._pending.values() if p is not placed
                     and _term_of(p) is not None and _term_of(p) < term]
        for p in lost:
            self.log.info("proposal {pid} lost before index {index}; proposing again",
                          pid=p.pid, index=index)
            self._unplace(p)
            self._forget_forward([p])
        self._requeue(lost)

    def _expire(self, pid):
        p = self._pending.pop(pid)  # its timer is cancelled whenever it leaves _pending
        self._unplace(p)
        leader = self.driver.leader
        where = f"leader {leader}" if leader else "no leader"
        p.deferred.errback(DoozerError(
            ErrCode.OTHER,
            f"no quorum: write not committed within {self.timeout:g}s ({where}); "
            "its outcome is unknown"))

    def fail_all(self, reason):
        """Fail every pending proposal (the node is shutting down)."""
        pending, self._pending = self._pending, {}
        self._by_index = {}
        for p in pending.values():
            if p.timer.active():
                p.timer.cancel()
            p.deferred.errback(DoozerError(ErrCode.OTHER, reason))


__all__ = ["ReplicatedProposer"]
