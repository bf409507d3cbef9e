"""ReplicatedProposer on a fake driver and task.Clock: appending on the
leader, forwarding to it (acks, rejections, lost sends), proposals lost to a
later term proposed again exactly once, expiry, and bookkeeping that empties
out (a pending entry never forgotten is a memory leak)."""

import random

from twisted.internet import task
from twisted.logger import capturedLogs, formatEvent

from doozertw.cluster import envelope as env
from doozertw.cluster.driver import Timing
from doozertw.cluster.proposer import RETRY_DELAY, ReplicatedProposer
from doozertw.consensus import NotLeader
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import CLOBBER, SetFile

ME, LEADER, OTHER = "n1~a", "n2~b", "n3~c"


class FakeRaft:
    def __init__(self, term=1):
        self.term = term
        self.next_index = 10
        self.batches = []      # the proposals of each propose_batch
        self.refuse = None     # a NotLeader to raise

    def propose_batch(self, datas):
        if self.refuse is not None:
            raise self.refuse
        self.batches.append([env.Proposal.decode(d) for d in datas])
        placed = [(self.next_index + i, self.term) for i in range(len(datas))]
        self.next_index += len(datas)
        return placed


class FakeDriver:
    """What ReplicatedProposer uses of ClusterDriver."""

    def __init__(self, leader=None, seed=7):
        self.timing = Timing(quorum_timeout=10.0)
        self.rng = random.Random(seed)
        self.life = self.rng.getrandbits(32)
        self.member_id = ME
        self.raft = FakeRaft()
        self.leader = leader
        self.applied = 0
        self.refusal = None
        self.send_ok = True
        self.sent = []
        self.on_apply, self.on_envelope = [], {}

    @property
    def started(self):
        return self.raft is not None

    @property
    def is_leader(self):
        return self.raft is not None and self.leader == self.member_id

    def write_refusal(self):
        return self.refusal

    def call(self, fn, *args):
        return getattr(self.raft, fn.__name__)(*args)

    def send_envelope(self, name, envelope):
        self.sent.append((name, envelope))
        return self.send_ok

    def deliver(self, from_name, message):
        self.on_envelope[type(message)](from_name, message)

    def apply(self, index, term, proposal=None, outcome=None):
        self.applied = max(self.applied, index)
        for f in self.on_apply:
            f(index, term, proposal, outcome)


def make(leader=None, **kw):
    clock = task.Clock()
    driver = FakeDriver(leader)
    return driver, clock, ReplicatedProposer(driver, clock, **kw)


def write(proposer, path="/a"):
    d = proposer.propose(SetFile(path, CLOBBER, b"x"))
    results = []
    d.addBoth(results.append)
    return results


def forwards(driver):
    return [(name, e) for name, e in driver.sent if isinstance(e, env.Forward)]


def placed(proposer):
    return {index: p.pid for index, p in proposer._by_index.items()}


def failure_detail(results):
    [f] = results
    f.trap(DoozerError)
    assert f.value.code == ErrCode.OTHER
    return f.value.detail


# -- the leader appends ---------------------------------------------------------------


def test_a_refused_write_fails_at_once_with_the_reason():
    driver, clock, proposer = make(ME)
    driver.refusal = "disk full: no space left"
    results = write(proposer)
    assert failure_detail(results) == "disk full: no space left"
    assert proposer.pending_count == 0 and clock.getDelayedCalls() == []


def test_proposal_ids_carry_this_lifes_random_prefix():
    driver, clock, proposer = make(ME)
    life = random.Random(7).getrandbits(32)
    write(proposer), write(proposer)
    clock.advance(0)
    [batch] = driver.raft.batches
    assert [p.pid >> 32 for p in batch] == [life, life]
    assert batch[0].pid < batch[1].pid and {p.origin for p in batch} == {ME}


def test_a_committed_proposal_leaves_nothing_behind():
    driver, clock, proposer = make(ME)
    results = write(proposer)
    clock.advance(0)
    [[proposal]] = driver.raft.batches
    driver.apply(9, 1)  # an entry without a proposal (a no-op, a conf change)
    assert results == []
    driver.apply(10, 1, proposal, "done")
    assert results == ["done"]
    assert proposer.pending_count == 0 and placed(proposer) == {}
    assert clock.getDelayedCalls() == []  # no expiry timer, no idle retry


def test_an_append_refused_by_raft_is_tried_again():
    driver, clock, proposer = make(ME)
    driver.raft.refuse = NotLeader(None)
    write(proposer)
    clock.advance(0)
    driver.raft.refuse = None
    clock.advance(RETRY_DELAY)
    assert len(driver.raft.batches) == 1 and placed(proposer) == {10: driver.raft.batches[0][0].pid}


def test_a_leader_append_lost_to_a_later_term_is_proposed_again_once():
    driver, clock, proposer = make(ME)
    results = write(proposer)
    clock.advance(0)
    [[proposal]] = driver.raft.batches  # at index 10, term 1
    driver.raft.term = 2
    with capturedLogs() as events:
        driver.apply(9, 2)  # a new leader's entry of term 2 comes before index 10
    assert [formatEvent(e) for e in events] == [
        f"proposal {proposal.pid} lost before index 9; proposing again"]
    assert placed(proposer) == {}
    clock.advance(RETRY_DELAY)
    assert [[p.pid for p in b] for b in driver.raft.batches] == [[proposal.pid]] * 2
    assert placed(proposer) == {11: proposal.pid}
    driver.apply(10, 2)
    driver.apply(11, 2, proposal, "done")
    assert results == ["done"] and placed(proposer) == {} and proposer.pending_count == 0


# -- expiry and shutdown ------------------------------------------------------------------


def test_a_write_not_committed_in_time_fails_naming_the_leader():
    driver, clock, proposer = make(LEADER, timeout=2.0)  # the driver's own: 10 s
    results = write(proposer)
    clock.advance(1.9)
    assert results == []
    clock.advance(0.1)
    assert failure_detail(results) == (
        f"no quorum: write not committed within 2s (leader {LEADER}); its outcome is unknown")
    driver.leader = None
    results = write(proposer)
    clock.advance(2.0)
    assert failure_detail(results) == (
        "no quorum: write not committed within 2s (no leader); its outcome is unknown")
    assert proposer.pending_count == 0


def test_an_expired_append_is_forgotten_and_its_late_commit_ignored():
    driver, clock, proposer = make(ME)
    results = write(proposer)
    clock.advance(0)
    [[proposal]] = driver.raft.batches
    assert placed(proposer) == {10: proposal.pid}
    clock.advance(10.0)
    failure_detail(results)
    assert placed(proposer) == {} and proposer.pending_count == 0
    driver.apply(10, 1, proposal, "late")  # committed after all: nothing left to tell
    assert len(results) == 1 and clock.getDelayedCalls() == []


def test_fail_all_fails_every_proposal_and_forgets_them():
    driver, clock, proposer = make(ME)
    first, second = write(proposer), write(proposer, "/b")
    clock.advance(0)
    assert len(placed(proposer)) == 2
    proposer.fail_all("node stopping")
    assert failure_detail(first) == failure_detail(second) == "node stopping"
    assert placed(proposer) == {} and proposer.pending_count == 0
    assert clock.getDelayedCalls() == []


# -- a follower forwards -----------------------------------------------------------------


def test_a_proposal_waits_for_a_leader_across_a_term_change():
    driver, clock, proposer = make(None)
    write(proposer)
    clock.advance(0)
    assert driver.sent == []
    driver.raft.term = 2
    driver.apply(5, 2)  # an entry of a new term while the proposal was never sent
    driver.leader = LEADER
    clock.advance(RETRY_DELAY)
    [(name, forward)] = forwards(driver)
    assert (name, forward.origin, forward.term) == ("n2", ME, 2)


def test_a_forward_that_cannot_be_sent_is_sent_again():
    driver, clock, proposer = make(LEADER)
    driver.send_ok = False
    write(proposer)
    clock.advance(0)
    driver.send_ok = True
    clock.advance(RETRY_DELAY)
    assert len(forwards(driver)) == 2
    clock.advance(RETRY_DELAY * 4)
    assert len(forwards(driver)) == 2  # sent: it waits for the leader's answer


def test_an_ack_places_the_forwarded_proposal():
    driver, clock, proposer = make(LEADER)
    write(proposer)
    clock.advance(0)
    [(_, forward)] = forwards(driver)
    [(pid, _)] = forward.items
    driver.deliver("n2", env.ForwardAck([(424242, 11, 1), (pid, 12, 1)]))  # unknown first
    assert placed(proposer) == {12: pid}
    driver.raft.term = 2
    driver.apply(11, 2)  # index 12 can no longer hold an entry of term 1
    assert placed(proposer) == {}
    clock.advance(RETRY_DELAY)
    assert [f.term for _, f in forwards(driver)] == [1, 2]
    driver.deliver("n2", env.ForwardAck([(pid, 14, 2)]))  # the second forward is placed
    assert placed(proposer) == {14: pid}


def test_an_ack_for_an_index_already_applied_means_the_proposal_is_lost():
    driver, clock, proposer = make(LEADER)
    write(proposer)
    clock.advance(0)
    [(_, forward)] = forwards(driver)
    [(pid, _)] = forward.items
    driver.apply(12, 1)
    driver.deliver("n2", env.ForwardAck([(pid, 12, 1)]))
    assert placed(proposer) == {}
    clock.advance(RETRY_DELAY)
    assert len(forwards(driver)) == 2


def test_an_entry_of_the_forwards_own_term_does_not_lose_it():
    driver, clock, proposer = make(LEADER)
    driver.raft.term = 2
    write(proposer)
    clock.advance(0)
    [(_, forward)] = forwards(driver)
    [(pid, _)] = forward.items
    driver.apply(11, 2)  # the first entry of term 2 this node applies
    driver.deliver("n2", env.ForwardAck([(pid, 12, 2)]))
    clock.advance(RETRY_DELAY * 4)
    assert len(forwards(driver)) == 1  # not proposed again: it could be applied twice
    assert placed(proposer) == {12: pid}


def test_a_rejected_forward_is_sent_again_and_a_stale_rejection_ignored():
    driver, clock, proposer = make(LEADER)
    write(proposer)
    clock.advance(0)
    [(_, forward)] = forwards(driver)
    [(pid, _)] = forward.items
    driver.deliver("n2", env.ForwardReject(0, (pid,), ""))  # for a forward of term 0
    clock.advance(RETRY_DELAY * 4)
    assert len(forwards(driver)) == 1
    driver.deliver("n2", env.ForwardReject(1, (424242, pid), ""))
    clock.advance(RETRY_DELAY)
    assert len(forwards(driver)) == 2


def test_a_rejected_forward_survives_a_term_change_and_a_late_ack():
    driver, clock, proposer = make(LEADER)
    write(proposer)
    clock.advance(0)
    [(_, forward)] = forwards(driver)
    [(pid, _)] = forward.items
    driver.leader = None
    driver.deliver("n2", env.ForwardReject(1, (pid,), ""))
    driver.deliver("n2", env.ForwardAck([(pid, 12, 1)]))  # late: answers the rejected forward
    assert placed(proposer) == {}
    driver.raft.term = 2
    driver.apply(7, 2)
    driver.leader = OTHER
    clock.advance(RETRY_DELAY)
    assert [(name, f.term) for name, f in forwards(driver)] == [("n2", 1), ("n3", 2)]


# -- the leader's side of forwarding ----------------------------------------------------


def forward_from_n2(term=1, pid=5):
    data = env.Proposal(LEADER, pid, b"m").encode()
    return env.Forward(LEADER, term, [(pid, data)])


def test_the_leader_appends_a_forward_and_acks_it():
    driver, clock, proposer = make(ME)
    driver.deliver("n2", forward_from_n2())
    assert driver.sent == [("n2", env.ForwardAck([(5, 10, 1)]))]


def test_a_forward_is_rejected_with_a_hint_by_a_follower():
    driver, clock, proposer = make(OTHER)
    driver.deliver("n2", forward_from_n2())
    assert driver.sent == [("n2", env.ForwardReject(1, (5,), OTHER))]


def test_a_forward_is_rejected_without_a_hint_when_no_leader_is_known():
    driver, clock, proposer = make(None)
    driver.deliver("n2", forward_from_n2())
    driver.raft = None  # not started
    driver.deliver("n2", forward_from_n2())
    assert driver.sent == [("n2", env.ForwardReject(1, (5,), ""))] * 2


def test_a_forward_for_another_term_is_rejected_by_the_leader():
    driver, clock, proposer = make(ME)
    driver.raft.term = 3
    driver.deliver("n2", forward_from_n2(term=2))
    assert driver.sent == [("n2", env.ForwardReject(2, (5,), ME))]
    assert driver.raft.batches == []


def test_a_forward_raft_refuses_is_rejected_with_its_hint():
    driver, clock, proposer = make(ME)
    driver.raft.refuse = NotLeader(OTHER)
    driver.deliver("n2", forward_from_n2())
    driver.raft.refuse = NotLeader(None)
    driver.deliver("n2", forward_from_n2())
    assert driver.sent == [("n2", env.ForwardReject(1, (5,), OTHER)),
                           ("n2", env.ForwardReject(1, (5,), ""))]
