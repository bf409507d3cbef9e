"""ReadBarrier on a fake driver and task.Clock: batched ReadIndex rounds,
stale answers, round retries, expiry, and no timers left behind."""

from twisted.internet import defer, task

from doozertw.cluster.driver import Timing
from doozertw.cluster.reads import RETRY_DELAY, ReadBarrier
from doozertw.consensus import NotLeader, ReadState
from doozertw.errors import DoozerError, ErrCode

ME = "n1~a"


class FakeRaft:
    def __init__(self):
        self.ctxs = []       # every read_index accepted
        self.refuse = None   # a NotLeader to raise

    def read_index(self, ctx):
        if self.refuse is not None:
            raise self.refuse
        self.ctxs.append(ctx)


class FakeDriver:
    """What ReadBarrier uses of ClusterDriver (round timeout: 10 ticks of 0.05 s)."""

    def __init__(self, life=0x1234ABCD):
        self.timing = Timing(tick=0.05, election_ticks=10, quorum_timeout=10.0)
        self.member_id = ME
        self.life = life
        self.leader = ME
        self.started = True
        self.raft = FakeRaft()
        self.on_read_state = []
        self.waits = []      # (index, Deferred) of when_applied

    def call(self, fn, *args):
        return getattr(self.raft, fn.__name__)(*args)

    def when_applied(self, index):
        d = defer.Deferred()
        self.waits.append((index, d))
        return d

    def answer(self, ctx, index):
        for f in self.on_read_state:
            f(ReadState(ctx, index))


def make(life=0x1234ABCD, **kw):
    clock = task.Clock()
    driver = FakeDriver(life)
    return driver, clock, ReadBarrier(driver, clock, **kw)


def read(barrier):
    results = []
    barrier.barrier().addBoth(results.append)
    return results


def failure_detail(results):
    [f] = results
    f.trap(DoozerError)
    assert f.value.code == ErrCode.OTHER
    return f.value.detail


def test_a_read_fires_with_the_applied_index_and_leaves_no_timer():
    driver, clock, barrier = make()
    results = read(barrier)
    clock.advance(0)
    [ctx] = driver.raft.ctxs
    assert barrier.rounds == 1
    driver.answer(ctx, 7)
    [(index, applied)] = driver.waits
    assert index == 7 and results == []
    applied.callback(9)  # the driver's applied index once it reached 7
    assert results == [9]
    assert clock.getDelayedCalls() == []


def test_reads_arriving_during_a_round_go_in_the_next_started_at_once():
    driver, clock, barrier = make()
    first = read(barrier)
    clock.advance(0)
    second, third = read(barrier), read(barrier)
    clock.advance(0)
    [ctx1] = driver.raft.ctxs
    driver.answer(ctx1, 5)
    clock.advance(0)
    [_, ctx2] = driver.raft.ctxs
    assert ctx2 != ctx1 and barrier.rounds == 2
    driver.answer(ctx2, 6)
    [(_, d1), (_, d2)] = driver.waits
    d2.callback(6)
    assert (first, second, third) == ([], [6], [6])
    d1.callback(5)
    assert first == [5]


def test_an_answer_to_a_timed_out_round_releases_nothing():
    driver, clock, barrier = make(round_timeout=0.2)
    results = read(barrier)
    clock.advance(0)
    clock.advance(0.2)  # no answer: a new round with a new context
    [ctx1, ctx2] = driver.raft.ctxs
    driver.answer(ctx1, 3)  # the old round's late answer is ignored
    assert driver.waits == []
    driver.answer(ctx2, 4)
    driver.answer(ctx2, 4)  # repeated: there is no round any more
    [(index, applied)] = driver.waits
    applied.callback(4)
    assert index == 4 and results == [4]


def test_a_round_is_retried_after_the_default_round_timeout():
    driver, clock, barrier = make()
    read(barrier)
    clock.advance(0)
    clock.advance(0.49)
    assert len(driver.raft.ctxs) == 1
    clock.advance(0.01)
    assert len(driver.raft.ctxs) == 2


def test_a_read_not_confirmed_in_time_fails_naming_the_leader():
    driver, clock, barrier = make(timeout=1.0)  # the driver's own: 10 s
    results = read(barrier)
    clock.advance(0.99)
    assert results == []
    clock.advance(0.01)
    assert failure_detail(results) == (
        f"no quorum: linearizable read not confirmed within 1s (leader {ME})")
    driver.leader = None
    results = read(barrier)
    clock.advance(1.0)
    assert failure_detail(results) == (
        "no quorum: linearizable read not confirmed within 1s (no leader)")


def test_reads_wait_for_the_driver_to_start():
    driver, clock, barrier = make()
    driver.started = False
    read(barrier)
    clock.advance(0)
    read(barrier)
    clock.advance(RETRY_DELAY)
    assert driver.raft.ctxs == []
    driver.started = True
    clock.advance(RETRY_DELAY)
    [ctx] = driver.raft.ctxs
    driver.answer(ctx, 2)
    assert len(driver.waits) == 1


def test_a_read_index_refused_by_raft_is_retried_soon():
    driver, clock, barrier = make()
    driver.raft.refuse = NotLeader(None)
    read(barrier)
    clock.advance(0)
    driver.raft.refuse = None
    clock.advance(RETRY_DELAY)  # far below the round timeout
    assert len(driver.raft.ctxs) == 1


def test_a_cancelled_read_starts_no_round():
    driver, clock, barrier = make()
    d = barrier.barrier()
    d.addErrback(lambda f: None)
    d.cancel()
    clock.advance(0)
    assert driver.raft.ctxs == [] and barrier.rounds == 0


def test_an_answer_meant_for_an_earlier_life_of_the_member_releases_nothing():
    """A restarted node keeps its member id and numbers its rounds from 1
    again; a ReadIndex answer to its previous life's first round (queued at
    a peer across the restart) carries an old index and must not serve the
    new life's first read."""
    before, clock_before, barrier_before = make(life=1)
    read(barrier_before)
    clock_before.advance(0)
    [old_ctx] = before.raft.ctxs
    driver, clock, barrier = make(life=2)
    results = read(barrier)
    clock.advance(0)
    [ctx] = driver.raft.ctxs
    assert ctx != old_ctx
    driver.answer(old_ctx, 3)
    assert driver.waits == [] and results == []
    driver.answer(ctx, 9)
    [(index, _)] = driver.waits
    assert index == 9
