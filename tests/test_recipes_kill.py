"""Every recipe against a real 3-node cluster with a participant process
killed by SIGKILL mid-hold (tests/test_recipes_cluster.py does the Lock).

Each participant runs in a process of its own
(``python -m doozertw.testing.recipe_holders``) and reports what it did as
JSON lines; a second participant in this process (a BlockingClient, in a
thread when it blocks) observes the takeover within the ttl plus one
election:

- Election: the leader is killed; the waiting candidate leads (with a
  larger token) and ``observe()`` reports its value.
- Semaphore(2): one of two holders is killed; the first waiter gets in, the
  one behind it does not, so there are never more than 2 holders.
- RWLock: a killed writer lets a waiting reader in; a writer waits for
  every reader before it and gets in when the last of them is killed.
- Registry: a killed member leaves ``members()``; a watch reports the new set.
- Queue: a consumer killed while blocked in ``get()`` takes nothing: the
  next consumer gets every later item exactly once, in order.
- DoubleBarrier: "a participant whose session ends counts as having left"
  (docs/recipes.md): the others, blocked in ``leave()``, get out once the
  killed participant's entry vanishes with its session.
- Counter (no holder): a process killed in an increment loop leaves a
  count in which every committed increment counts once (at most one more:
  the one in flight). Barrier (no holder): it is a plain file, so a setter
  or a waiter being killed changes nothing; removing it frees the others.

One cluster serves the whole module (about 40-60 s on 2 cores).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from doozertw.client import BlockingClient
from doozertw.client.recipes import (
    Barrier, BlockingSession, Counter, DoubleBarrier, Election, LockTimeout, Queue, Registry,
    RWLock, Semaphore)
from doozertw.store.mutation import SetFile
from doozertw.testing.recipe_holders import Holders
from doozertw.testing.tcpcluster import NAMES, Cluster, until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TTL = 3
"""Session ttl (the cluster's minimum is 2 s)."""
ELECTION = 2.0
"""About one election (the minimum ttl, 2 s, is 1.5 elections); lease expiry
is also checked every 0.5 s."""
TAKEOVER = TTL + ELECTION + 1.0
"""Seconds after a kill within which the takeover must be seen (1 s of
slack for a loaded 2-core machine)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def holders(cluster, tmp_path):
    h = Holders(cluster.uri(*NAMES), TTL, tmp_path)
    try:
        yield h
    finally:
        h.kill_all()


class Local:
    """This process's participants: a client (and session) each, closed at the end."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.opened: list[Any] = []

    def client(self) -> BlockingClient:
        client = BlockingClient(self.uri, suspend_timeout=30.0)
        self.opened.append(client)
        return client

    def session(self) -> BlockingSession:
        session = BlockingSession(self.client(), ttl=TTL).start()
        self.opened.append(session)
        return session

    def close(self) -> None:
        for closable in reversed(self.opened):
            try:
                closable.close()
            except Exception:       # closing after a failed test: best effort
                pass


@pytest.fixture
def local(cluster):
    here = Local(cluster.uri(*reversed(NAMES)))
    try:
        yield here
    finally:
        here.close()


class Background:
    """``fn()`` in a daemon thread; its answer and when it came."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.answers: list[tuple[Any, float]] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.answers.append((fn(), time.monotonic()))
        except BaseException as e:
            self.errors.append(e)

    @property
    def done(self) -> bool:
        return bool(self.answers or self.errors)

    def result(self, timeout: float) -> tuple[Any, float]:
        """(answer, when); AssertionError if none within ``timeout``."""
        self.thread.join(timeout)
        if self.errors:
            raise self.errors[0]
        assert self.answers, f"no answer within {timeout} s"
        return self.answers[0]


def still_waiting(*waiters: Background, for_seconds: float = 1.0) -> None:
    time.sleep(for_seconds)
    for waiter in waiters:
        assert not waiter.done, (waiter.answers, waiter.errors)


def test_election_passes_to_the_waiting_candidate(holders, local):
    path = "/kill/election"
    leader = holders.start("election", path, "first")
    _, old_token, _, _ = leader.wait_for("leading")
    seen: list[Any] = []
    observer = Election(local.client(), path)

    def note(value):
        seen.append(value)
        return value != b"second"

    watching = Background(lambda: observer.observe(note))
    candidate = Election(local.session(), path)
    campaign = Background(lambda: candidate.campaign("second"))
    until(lambda: seen == [b"first"], 10.0, "the observer to see the first leader")
    still_waiting(campaign)
    killed = leader.kill()
    token, at = campaign.result(TAKEOVER + 5.0)
    assert token > old_token
    assert at - killed < TAKEOVER
    watching.result(5.0)
    assert seen == [b"first", b"second"]
    assert observer.leader() == b"second" and candidate.is_leader
    client = local.client()                     # its fence holds: a guarded write applies
    assert client.txn([candidate.fence()], [SetFile(path + "-data", 0, b"x")]).succeeded
    assert client.get(path + "-data")[0] == b"x"


def test_semaphore_admits_one_waiter_per_killed_holder(holders, local):
    path = "/kill/semaphore"
    first = holders.start("semaphore", path, 2, "h1")
    first.wait_for("holding")
    second = holders.start("semaphore", path, 2, "h2")
    second.wait_for("holding")
    mine = Semaphore(local.session(), path, 2, value="local")
    view = Semaphore(local.session(), path, 2)  # a client is for one thread: look on another
    waiter = Background(mine.acquire)
    until(lambda: len(view.contenders()) == 3, 10.0, "the local waiter to queue")
    third = holders.start("semaphore", path, 2, "h3")          # queued behind us
    until(lambda: len(view.contenders()) == 4, 10.0, "h3 to queue")
    still_waiting(waiter)
    assert not third.records("holding")
    assert view.holders() == [b"h1", b"h2"]

    killed = first.kill()
    _, at = waiter.result(TAKEOVER + 5.0)
    assert at - killed < TAKEOVER
    assert view.holders() == [b"h2", b"local"]
    time.sleep(1.0)                                             # h3 must not get in
    assert not third.records("holding"), "a third holder got in"
    assert view.contenders() == [b"h2", b"local", b"h3"]

    mine.release()
    third.wait_for("holding", 10.0)
    assert view.holders() == [b"h2", b"h3"]


def test_rwlock_killed_writer_and_killed_readers(holders, local):
    path = "/kill/rwlock"
    writer = holders.start("rwlock", path, "write")
    writer.wait_for("holding")
    rw = RWLock(local.session(), path)
    view = RWLock(local.session(), path).read_lock      # a client is for one thread
    reading = Background(rw.read_lock.acquire)
    until(lambda: len(view.contenders()) == 2, 10.0, "the reader to queue")
    still_waiting(reading)
    killed = writer.kill()
    _, at = reading.result(TAKEOVER + 5.0)
    assert at - killed < TAKEOVER
    rw.read_lock.release()

    readers = [holders.start("rwlock", path, "read") for _ in range(2)]
    tokens = [r.wait_for("holding")[1] for r in readers]        # they share
    writing = Background(rw.write_lock.acquire)
    until(lambda: len(view.contenders()) == 3, 10.0, "the writer to queue")
    still_waiting(writing)
    # the later reader (the one the writer watches) first: the writer must
    # list again and wait for the earlier one
    readers[1].kill()
    until(lambda: len(view.contenders()) == 2, TAKEOVER + 5.0,
          "the killed reader's entry to vanish")
    still_waiting(writing, for_seconds=0.5)
    killed = readers[0].kill()
    token, at = writing.result(TAKEOVER + 5.0)
    assert at - killed < TAKEOVER
    assert token > max(tokens)


def test_registry_forgets_a_killed_member(holders, local):
    path = "/kill/registry"
    member = holders.start("register", path, "remote", "r")
    member.wait_for("registered")
    registry = Registry(local.session(), path)
    registry.register("local", "l")
    seen: list[dict[str, bytes]] = []

    def note(members):
        seen.append(members)
        return "remote" in members

    watching = Background(lambda: Registry(local.client(), path).watch(note))
    until(lambda: seen, 10.0, "the watch to start")
    assert seen[0] == {"remote": b"r", "local": b"l"}
    killed = member.kill()
    _, at = watching.result(TAKEOVER + 5.0)
    assert at - killed < TAKEOVER
    assert seen[-1] == {"local": b"l"}
    assert registry.members() == {"local": b"l"}


def test_queue_consumer_killed_in_get_takes_nothing(holders, local):
    path = "/kill/queue"
    queue = Queue(local.client(), path)
    for i in range(3):
        queue.put(f"early-{i}")
    consumer = holders.start("consume", path)
    consumer.wait_for("getting", count=4)       # took three, now blocked on an empty queue
    assert [r[1] for r in consumer.records("got")] == ["early-0", "early-1", "early-2"]
    time.sleep(0.5)                             # well inside its WAIT
    consumer.kill()
    items = [f"late-{i}" for i in range(6)]
    for item in items:
        queue.put(item)
    assert len(consumer.records("got")) == 3
    assert queue.size() == len(items)
    taken = [queue.get(timeout=5.0).decode() for _ in items]
    assert taken == items
    assert queue.get(block=False) is None


def test_double_barrier_counts_a_killed_participant_as_left(holders, local):
    path = "/kill/double"
    remote = holders.start("enter", path, 3, "remote")
    barriers = [DoubleBarrier(local.session(), path, 3, name) for name in ("a", "b")]
    entering = [Background(b.enter) for b in barriers]
    remote.wait_for("entered")
    for waiter in entering:
        waiter.result(10.0)
    leaving = [Background(b.leave) for b in barriers]
    still_waiting(*leaving, for_seconds=1.5)    # the remote participant is still in
    killed = remote.kill()
    for waiter in leaving:
        _, at = waiter.result(TAKEOVER + 5.0)
        assert at - killed < TAKEOVER
    client = local.client()
    assert client.get(path + "/ready")[1] == 0, "the last to leave deletes ready"
    assert client.walk_all(path + "/members/*") == []


def test_counter_killed_mid_increment_counts_each_commit_once(holders, local):
    path = "/kill/counter"
    counter = Counter(local.client(), path)
    counter.add(0)
    counting = holders.start("count", path)
    counting.wait_for("committed", count=20)
    ours: list[int] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:          # contend with it for a while
        ours.append(counter.add())
    counting.kill()
    theirs = [r[1] for r in counting.records("committed")]
    final = counter.value()
    committed = sorted(ours + theirs)
    assert len(set(committed)) == len(committed), "an increment was counted twice"
    assert theirs == sorted(theirs)
    assert committed[0] >= 1 and committed[-1] <= final
    missing = sorted(set(range(1, final + 1)) - set(committed))
    # at most one increment committed unreported: the killed one's last, in flight
    assert len(missing) <= 1 and all(m > theirs[-1] for m in missing), (final, missing)


def test_barrier_outlives_killed_setter_and_waiter(holders, local):
    path = "/kill/barrier"
    setter = holders.start("barrier-set", path)
    setter.wait_for("set")
    waiter = holders.start("barrier-wait", path)
    waiter.wait_for("waiting")
    setter.kill()
    barrier = Barrier(local.client(), path)
    with pytest.raises(LockTimeout):            # still up: it is not ephemeral
        barrier.wait(timeout=TAKEOVER)
    assert not waiter.records("passed")
    waiter.kill()
    other = holders.start("barrier-wait", path)
    other.wait_for("waiting")
    time.sleep(0.5)
    assert not other.records("passed")
    Barrier(local.client(), path).remove()
    other.wait_for("passed", 10.0)
    barrier.wait(timeout=5.0)
