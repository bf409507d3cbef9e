"""Linearizable reads with batched ReadIndex.

``ReadBarrier.barrier()`` returns a Deferred that fires once this node may
serve a read from its own store and be linearizable: it asked the leader
for a read index *after* the read arrived, the leader confirmed its
leadership with a quorum, and this node has applied up to that index.

One ReadIndex round is in flight at a time; every read arriving meanwhile
waits for the next round, which then serves all of them at once. A round
with no answer within a round timeout (leadership changed, messages lost)
is started again with a new context; a read not served within
``timeout`` seconds fails with DoozerError(OTHER, "no quorum: ...").
"""

from __future__ import annotations

import itertools

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.consensus import NotLeader, RaftNode
from doozertw.errors import DoozerError, ErrCode

RETRY_DELAY = 0.05


class _Round:
    def __init__(self, ctx, waiters, timer):
        self.ctx = ctx
        self.waiters = waiters
        self.timer = timer


class ReadBarrier:
    """Batches linearizable reads of one node; see the module docstring."""

    log = Logger()

    def __init__(self, driver, reactor, timeout=None, round_timeout=None):
        self.driver = driver
        self.reactor = reactor
        t = driver.timing
        self.timeout = timeout if timeout is not None else t.quorum_timeout
        self.round_timeout = (round_timeout if round_timeout is not None
                              else t.tick * t.election_ticks)
        self._seq = itertools.count(1)
        self._next = []
        self._round = None
        self._start_call = None
        self.rounds = 0
        driver.on_read_state.append(self._answered)

    def barrier(self):
        """Deferred that fires (with the read index) when a local read is
        linearizable; fails with DoozerError(OTHER) after ``timeout``."""
        d = defer.Deferred()
        timer = self.reactor.callLater(self.timeout, self._expire, d)
        self._next.append((d, timer))
        self._schedule(0)
        return d

    def _schedule(self, delay):
        if self._round is None and self._next and self._start_call is None:
            self._start_call = self.reactor.callLater(delay, self._start)

    def _start(self):
        self._start_call = None
        waiters = [w for w in self._next if not w[0].called]
        self._next = []
        if not waiters:
            return
        if not self.driver.started:
            self._next = waiters + self._next
            self._schedule(RETRY_DELAY)
            return
        # the life in the context: an answer to a round of an earlier life
        # (still queued at a peer across a restart) matches no round here
        ctx = f"{self.driver.member_id}/{self.driver.life:08x}/{next(self._seq)}".encode("utf-8")
        timer = self.reactor.callLater(self.round_timeout, self._round_timed_out)
        self._round = _Round(ctx, waiters, timer)
        self.rounds += 1
        try:
            self.driver.call(RaftNode.read_index, ctx)
        except NotLeader:
            self._round_timed_out(delay=RETRY_DELAY)

    def _round_timed_out(self, delay=0):
        # only ever for the current round: its timer is cancelled when it ends
        current = self._round
        if current.timer.active():
            current.timer.cancel()
        self._round = None
        self._next = current.waiters + self._next
        self._schedule(delay)

    def _answered(self, state):
        current = self._round
        if current is None or current.ctx != state.ctx:
            return
        current.timer.cancel()
        self._round = None
        waiters = current.waiters
        self.driver.when_applied(state.index).addCallback(self._release, waiters)
        self._schedule(0)

    @staticmethod
    def _release(index, waiters):
        for d, timer in waiters:
            if not d.called:
                timer.cancel()
                d.callback(index)

    def _expire(self, d):
        if not d.called:
            leader = self.driver.leader
            where = f"leader {leader}" if leader else "no leader"
            d.errback(DoozerError(
                ErrCode.OTHER,
                f"no quorum: linearizable read not confirmed within {self.timeout:g}s ({where})"))


__all__ = ["ReadBarrier"]
