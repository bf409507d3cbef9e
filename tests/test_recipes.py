"""The recipes (doozertw.client.recipes) against a real Node, in process.

- Twisted flavour in memory: iosim pumps on a task.Clock, real
  DoozerProtocols, a real Node whose lease clock is the same Clock (so a
  lease can expire deterministically and lock_delay is exact);
- blocking flavour over TCP against an in-process server
  (doozertw.testing.servers), with threads contending;
- docs/client.md has an example per recipe (run by test_client_docs.py).
"""

import pathlib
import re
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from doozertw.client import (
    BlockingClient, Compare, DoozerClient, DoozerError, ErrCode, SetFile, WaitTimeout, call)
from doozertw.client.recipes import (
    Barrier, BlockingSession, Counter, DoubleBarrier, Election, Lock, LockTimeout, Member,
    Queue, Registry, RWLock, Semaphore, Session, SessionLost, SessionState)
from doozertw.client.recipes import _steps
from doozertw.client.recipes.base import predecessor
from doozertw.node import Node
from doozertw.store import SET, Event, Store
from doozertw.testing.memclient import MemNet, settle
from doozertw.testing.memclient import outcomes as watch
from doozertw.testing.servers import in_thread, start_servers, stop_all

A, B = "10.0.0.1:8046", "10.0.0.2:8046"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def node(clock):
    return Node("a", store=Store(history=10000), reactor=clock)


@pytest.fixture
def net(clock, node):
    net = MemNet(clock)
    net.servers[A] = net.servers[B] = node
    return net


def new_session(net, clock, ttl=6, addresses=(A, B)):
    client = DoozerClient(list(addresses), reactor=clock, connector=net.connector,
                          suspend_timeout=60.0, retry_delay=0.1)
    return settle(net, Session(client, ttl=ttl, reactor=clock).start())


# -- pure pieces ---------------------------------------------------------------------------


def test_lock_blocker_is_only_the_predecessor():
    entries = [Event(r, f"/l/{r}-1", b"", SET) for r in (3, 5, 9)]
    assert predecessor(entries, 0) is None
    assert predecessor(entries, 2) == "/l/5-1"


def test_blocking_driver_throws_errors_into_the_recipe():
    class Fake:
        def request(self, call):
            raise DoozerError(ErrCode.NOENT, call.path)

    def recipe():
        try:
            yield call("GET", path="/x")
        except DoozerError as e:
            now = yield _steps.NOW
            yield _steps.Sleep(2.0)
            return e.code, now

    slept = []
    got = _steps.run_blocking(Fake(), recipe(), sleep=slept.append, monotonic=lambda: 42.0)
    assert got == (ErrCode.NOENT, 42.0) and slept == [2.0]


def test_blocking_driver_takes_up_a_timed_out_wait_again():
    class FakeWatch:
        def __init__(self):
            self.calls, self.closed = 0, False

        def next(self, timeout):
            self.calls += 1
            if self.calls < 3:
                raise WaitTimeout()
            return Event(9, "/l/p", b"", SET)

        def close(self):
            self.closed = True

    class Fake:
        def __init__(self):
            self.watches = []

        def watch(self, glob, rev):
            self.watches.append(FakeWatch())
            return self.watches[-1]

    def recipe():
        for _ in range(5):
            try:
                return (yield _steps.Wait("/l/p", 5, 1.0))
            except WaitTimeout:
                continue

    fake = Fake()
    assert _steps.run_blocking(fake, recipe()).rev == 9
    assert len(fake.watches) == 1 and fake.watches[0].calls == 3


# -- locks (Twisted, in memory) ------------------------------------------------------------


def test_lock_is_exclusive_fair_and_fenced(net, clock, node):
    sessions = [new_session(net, clock) for _ in range(4)]
    locks = [Lock(s, "/locks/job", value=f"c{i}") for i, s in enumerate(sessions)]
    outs = []
    for lock in locks:
        outs.append(watch(lock.acquire()))
        net.flush()
    assert [bool(o) for o in outs] == [True, False, False, False]
    assert settle(net, locks[0].contenders()) == [b"c0", b"c1", b"c2", b"c3"]
    tokens = [outs[0][0]]
    for i in range(1, 4):
        net.run(1)
        settle(net, locks[i - 1].release())
        assert [bool(o) for o in outs] == [True] * (i + 1) + [False] * (3 - i), i
        tokens.append(outs[i][0])
        assert locks[i].token == tokens[-1]
    assert tokens == sorted(tokens) and len(set(tokens)) == 4
    settle(net, locks[3].release())
    assert settle(net, locks[0].contenders()) == []


def test_a_closed_or_revoked_holder_frees_the_lock(net, clock, node):
    s1, s2, s3 = (new_session(net, clock) for _ in range(3))
    l1, l2, l3 = (Lock(s, "/locks/x") for s in (s1, s2, s3))
    t1 = settle(net, l1.acquire())
    w2, w3 = watch(l2.acquire()), watch(l3.acquire())
    net.flush()
    assert not w2 and not w3
    settle(net, s1.close())                 # the holder's session ends
    assert w2 and w2[0] > t1 and not w3
    settle(net, s3.client.revoke_lease(s2.lease))  # the holder's lease is revoked
    net.run(0.5)
    assert w3 and w3[0] > w2[0]
    net.run(3)
    assert s2.state == SessionState.LOST


def test_an_expired_holder_frees_the_lock_after_the_lock_delay(net, clock, node):
    holder = new_session(net, clock, ttl=3, addresses=(A,))
    waiter = new_session(net, clock, ttl=3, addresses=(B,))
    t1 = settle(net, Lock(holder, "/locks/d").acquire())
    got = watch(Lock(waiter, "/locks/d", lock_delay=2.0).acquire())
    holder_states = []
    holder.add_listener(holder_states.append)
    net.kill(A)                            # the holder can no longer keep its lease alive
    net.run(3.5)                           # ttl + the lessor's interval: it expired
    assert holder_states[-1] == SessionState.LOST
    assert holder.lease not in node.store.leases
    assert not got                         # waiting out the lock delay
    net.run(2.0)
    assert got and got[0] > t1


def test_a_release_on_a_live_session_does_not_delay(net, clock):
    s1, s2 = new_session(net, clock), new_session(net, clock)
    l1 = Lock(s1, "/locks/r")
    settle(net, l1.acquire())
    got = watch(Lock(s2, "/locks/r", lock_delay=5.0).acquire())
    settle(net, l1.release())
    assert got


def test_acquire_times_out_or_is_cancelled_and_leaves_the_queue(net, clock):
    s1, s2, s3 = (new_session(net, clock) for _ in range(3))
    l1 = Lock(s1, "/locks/t")
    settle(net, l1.acquire())
    failed = watch(Lock(s2, "/locks/t").acquire(timeout=2.0))
    net.run(2.5)
    assert failed and failed[0].check(LockTimeout)
    pending = Lock(s3, "/locks/t").acquire()
    net.flush()
    pending.addErrback(lambda f: f.trap(defer.CancelledError))
    pending.cancel()
    net.run(0.5)
    assert settle(net, l1.contenders()) == [b""]      # only the holder is left


def test_a_lost_session_cannot_acquire(net, clock):
    s = new_session(net, clock)
    settle(net, s.client.revoke_lease(s.lease))
    net.run(3)
    with pytest.raises(SessionLost):
        settle(net, Lock(s, "/locks/z").acquire())


def test_a_waiter_whose_session_is_lost_fails_at_once(net, clock):
    s1, s2 = new_session(net, clock), new_session(net, clock)
    l1 = Lock(s1, "/locks/w")
    settle(net, l1.acquire())
    waiting = watch(Lock(s2, "/locks/w").acquire())
    net.flush()
    settle(net, s1.client.revoke_lease(s2.lease))
    assert not waiting
    net.run(2.5)                            # s2's next keep-alive: NOENT, LOST
    assert s2.state == SessionState.LOST
    assert waiting and waiting[0].check(SessionLost)
    assert settle(net, l1.contenders()) == [b""]
    s3 = new_session(net, clock)            # a lease gone before the create
    settle(net, s1.client.revoke_lease(s3.lease))
    with pytest.raises(SessionLost):
        settle(net, Lock(s3, "/locks/w").acquire())


def test_rwlock_shares_reads_and_excludes_writes(net, clock):
    r1, r2, w, r3 = (RWLock(new_session(net, clock), "/locks/rw") for _ in range(4))
    got_r1, got_r2 = watch(r1.read_lock.acquire()), watch(r2.read_lock.acquire())
    net.flush()
    got_w = watch(w.write_lock.acquire())
    net.flush()
    got_r3 = watch(r3.read_lock.acquire())
    net.flush()
    assert got_r1 and got_r2 and not got_w and not got_r3   # r3 queues behind the writer
    settle(net, r1.read_lock.release())
    assert not got_w
    settle(net, r2.read_lock.release())
    assert got_w and not got_r3
    settle(net, w.write_lock.release())
    assert got_r3


def test_semaphore_admits_n_holders(net, clock):
    sems = [Semaphore(new_session(net, clock), "/sem", 2, value=f"h{i}") for i in range(4)]
    got = [watch(s.acquire()) for s in sems]
    net.flush()
    assert [bool(g) for g in got] == [True, True, False, False]
    assert settle(net, sems[0].holders()) == [b"h0", b"h1"]
    settle(net, sems[1].release())
    assert [bool(g) for g in got] == [True, True, True, False]
    settle(net, sems[0].release())
    assert all(got)
    with pytest.raises(ValueError):
        Semaphore(sems[0].session, "/sem", 0)


# -- election, registry, barriers (Twisted, in memory) --------------------------------------


def test_election_passes_on_resign_and_on_session_end(net, clock):
    sa, sb, sc = (new_session(net, clock) for _ in range(3))
    ea, eb, ec = (Election(s, "/election/svc") for s in (sa, sb, sc))
    seen = []
    observer = Election(sa.client, "/election/svc").observe(seen.append)
    net.flush()
    ta = settle(net, ea.campaign("a"))
    wb, wc = watch(eb.campaign("b")), watch(ec.campaign("c"))
    net.flush()
    assert ea.is_leader and not wb and settle(net, eb.leader()) == b"a"
    settle(net, ea.resign())
    assert wb and wb[0] > ta and not wc and settle(net, ec.leader()) == b"b"
    settle(net, sb.close())
    assert wc and wc[0] > wb[0]
    settle(net, ec.resign())
    assert settle(net, ea.leader()) is None
    assert seen == [None, b"a", b"b", b"c", None]
    stopped = watch(observer)
    observer.cancel()                  # stopping an observer is not a failure
    assert stopped == [None]
    with pytest.raises(TypeError):
        Election(sa.client, "/election/svc").campaign("x")


def test_election_fence_guards_transactions_while_leading(net, clock, node):
    sa, sb = new_session(net, clock), new_session(net, clock)
    ea, eb = Election(sa, "/election/f"), Election(sb, "/election/f")
    with pytest.raises(RuntimeError):
        ea.fence()                      # not campaigning
    settle(net, ea.campaign("a"))
    wb = watch(eb.campaign("b"))
    net.flush()
    with pytest.raises(RuntimeError):
        eb.fence()                      # a waiting candidate has no fence
    fence = ea.fence()
    path, rev = fence.path, fence.rev
    assert path.startswith("/election/f/") and node.store.get(path) == (b"a", rev)

    def guarded(client, fence, value):
        return settle(net, client.txn([fence], [SetFile("/guarded", -1, value)], []))

    assert guarded(sa.client, fence, b"from a").succeeded
    settle(net, sa.close())             # a is deposed (its file goes with its lease)
    assert wb and eb.is_leader
    assert not guarded(sb.client, fence, b"stale a").succeeded
    assert guarded(sb.client, eb.fence(), b"from b").succeeded
    assert node.store.get("/guarded")[0] == b"from b"
    settle(net, eb.resign())
    with pytest.raises(RuntimeError):
        eb.fence()


def test_registry_members_with_revs_and_member_fences(net, clock, node):
    s1, s2 = new_session(net, clock), new_session(net, clock)
    viewer = Registry(s1.client, "/svc/db")
    r2 = settle(net, Registry(s2, "/svc/db").register("zz", "10.0.0.2"))
    r1 = settle(net, Registry(s1, "/svc/db").register("aa", "10.0.0.1"))
    got = settle(net, viewer.members_with_revs())
    assert list(got) == ["zz", "aa"]    # oldest registration first
    assert got == {"zz": Member("zz", b"10.0.0.2", r2), "aa": Member("aa", b"10.0.0.1", r1)}
    assert settle(net, viewer.members_with_revs(rev=r2)) == {"zz": got["zz"]}
    fence = viewer.fence(got["aa"])
    assert fence == Compare("/svc/db/aa", rev=r1)
    assert settle(net, s1.client.txn([fence], [], [])).succeeded
    settle(net, s1.close())             # aa's registration goes with s1's lease
    assert not settle(net, s2.client.txn([fence], [], [])).succeeded
    assert settle(net, viewer.members_with_revs()) == {"zz": got["zz"]}
    # Re-registering the same name is a new registration: the old fence fails.
    s3 = new_session(net, clock)
    settle(net, Registry(s3, "/svc/db").register("aa", "10.0.0.1"))
    assert not settle(net, s3.client.txn([fence], [], [])).succeeded


def test_cancelling_a_registry_watch_stops_it_quietly(net, clock):
    s1 = new_session(net, clock)
    seen = []
    watching = Registry(s1.client, "/svc/c").watch(seen.append)
    done = watch(watching)
    net.flush()
    settle(net, Registry(s1, "/svc/c").register("n", "v"))
    assert seen == [{}, {"n": b"v"}] and not done
    watching.cancel()
    assert done == [None]
    settle(net, Registry(s1, "/svc/c").register("m", "w"))
    assert seen == [{}, {"n": b"v"}]    # stopped: no more calls


def test_registry_members_come_and_go_with_sessions(net, clock):
    s1, s2 = new_session(net, clock), new_session(net, clock)
    viewer = Registry(s1.client, "/svc/web")
    seen = []
    done = viewer.watch(lambda m: seen.append(m) or len(seen) < 4)
    net.flush()
    settle(net, Registry(s1, "/svc/web").register("n1", "10.0.0.1:80"))
    settle(net, Registry(s2, "/svc/web").register("n2", "10.0.0.2:80"))
    with pytest.raises(DoozerError) as taken:
        settle(net, Registry(s2, "/svc/web").register("n1", "x"))
    assert taken.value.code == ErrCode.REV_MISMATCH
    assert settle(net, viewer.members()) == {"n1": b"10.0.0.1:80", "n2": b"10.0.0.2:80"}
    settle(net, s1.close())
    assert settle(net, viewer.members()) == {"n2": b"10.0.0.2:80"}
    assert seen == [{}, {"n1": b"10.0.0.1:80"}, {"n1": b"10.0.0.1:80", "n2": b"10.0.0.2:80"},
                    {"n2": b"10.0.0.2:80"}]
    assert settle(net, done) is None        # the callback said stop


def test_barrier_releases_waiters(net, clock):
    client = DoozerClient([A], reactor=clock, connector=net.connector)
    barrier = Barrier(client, "/barrier/go")
    settle(net, barrier.set())
    settle(net, barrier.set())              # already up: fine
    waiting = watch(barrier.wait())
    timed = watch(barrier.wait(timeout=1.0))
    net.run(1.5)
    assert not waiting and timed and timed[0].check(LockTimeout)
    settle(net, barrier.remove())
    assert waiting == [None]
    assert settle(net, barrier.wait()) is None


def test_double_barrier_enters_and_leaves_together(net, clock, node):
    parts = [DoubleBarrier(new_session(net, clock), "/dbar", 3) for _ in range(3)]
    entered = [watch(parts[0].enter()), watch(parts[1].enter())]
    net.flush()
    assert not any(entered)
    entered.append(watch(parts[2].enter()))
    net.flush()
    assert all(entered)
    left = [watch(parts[0].leave()), watch(parts[1].leave())]
    net.flush()
    assert not any(left)
    left.append(watch(parts[2].leave()))
    net.flush()
    assert all(left) and node.store.get("/dbar/ready")[1] == 0


# -- counter and queue (Twisted, in memory) -------------------------------------------------


def test_counter_adds_under_contention(net, clock):
    clients = [DoozerClient([A], reactor=clock, connector=net.connector) for _ in range(5)]
    counters = [Counter(c, "/count") for c in clients]
    results = [watch(counter.add(2)) for counter in counters for _ in range(4)]
    net.flush()
    values = [r[0] for r in results]
    assert sorted(values) == list(range(2, 41, 2))
    assert settle(net, counters[0].value()) == 40
    settle(net, clients[0].set("/count", -1, b"nonsense"))
    with pytest.raises(DoozerError):
        settle(net, counters[0].add())


def test_queue_is_fifo_and_each_item_is_taken_once(net, clock):
    clients = [DoozerClient([A], reactor=clock, connector=net.connector) for _ in range(3)]
    queue = Queue(clients[0], "/q")
    assert [settle(net, queue.put(f"item{i}")) for i in range(5)] == list(range(5))
    assert settle(net, queue.size()) == 5
    assert [settle(net, queue.get()) for _ in range(2)] == [b"item0", b"item1"]
    takers = [watch(Queue(c, "/q").get()) for c in clients]
    net.flush()
    assert sorted(t[0] for t in takers) == [b"item2", b"item3", b"item4"]
    assert settle(net, queue.get(block=False)) is None
    waiting = watch(queue.get())
    net.flush()
    assert not waiting
    puts = [watch(Queue(c, "/q").put(f"late{i}")) for i, c in enumerate(clients)]
    net.flush()
    assert sorted(p[0] for p in puts) == [5, 6, 7] and waiting == [b"late0"]
    assert settle(net, Queue(clients[1], "/q").get(timeout=1.0)) == b"late1"
    assert settle(net, queue.get()) == b"late2"
    timed = watch(queue.get(timeout=1.0))
    net.run(1.5)
    assert timed and timed[0].check(LockTimeout)
    assert settle(net, queue.size()) == 0


def test_hostile_counter_and_queue_values_are_refused(net, clock):
    client = DoozerClient([A], reactor=clock, connector=net.connector)
    settle(net, client.set("/count", -1, b"9" * 100_000))
    with pytest.raises(DoozerError) as huge:
        settle(net, Counter(client, "/count").add())
    assert "does not hold a number" in str(huge.value)
    settle(net, client.set("/q/seq", -1, b"12; rm -rf"))
    with pytest.raises(DoozerError):
        settle(net, Queue(client, "/q").put("x"))
    assert settle(net, client.get("/q/seq"))[0] == b"12; rm -rf"     # nothing written


# -- blocking flavour over TCP, with threads -------------------------------------------------


@pytest.fixture
def server():
    servers = start_servers(1, history=100000)
    yield servers[0]
    stop_all(servers)


@pytest_twisted.inlineCallbacks
def test_blocking_lock_excludes_threads_and_tokens_grow(server):
    holds = []          # (token, start, end) of every hold
    errors = []
    inside = [0]

    def contender(n):
        try:
            client = BlockingClient(server.address, suspend_timeout=5.0)
            with BlockingSession(client, ttl=5) as session:
                lock = Lock(session, "/locks/threads", value=f"t{n}")
                for _ in range(5):
                    token = lock.acquire(timeout=30)
                    inside[0] += 1
                    assert inside[0] == 1, "two holders at once"
                    start = time.monotonic()
                    time.sleep(0.005)
                    holds.append((token, start, time.monotonic()))
                    inside[0] -= 1
                    lock.release()
            client.close()
        except BaseException as e:
            errors.append(e)

    def script():
        threads = [threading.Thread(target=contender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    yield in_thread(script)
    assert not errors, errors
    assert len(holds) == 20
    by_start = sorted(holds, key=lambda h: h[1])
    tokens = [h[0] for h in by_start]
    assert tokens == sorted(tokens) and len(set(tokens)) == 20
    for earlier, later in zip(by_start, by_start[1:]):
        assert earlier[2] <= later[1]


@pytest_twisted.inlineCallbacks
def test_blocking_counter_and_queue_under_threads(server):
    taken = []
    errors = []

    def worker(n):
        try:
            with BlockingClient(server.address) as client:
                counter, queue = Counter(client, "/c"), Queue(client, "/jobs")
                for i in range(10):
                    counter.add()
                    queue.put(f"{n}-{i}")
                for _ in range(10):
                    taken.append(queue.get(timeout=10))
        except BaseException as e:
            errors.append(e)

    def script():
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with BlockingClient(server.address) as client:
            return Counter(client, "/c").value(), Queue(client, "/jobs").size()

    value, left = yield in_thread(script)
    assert not errors, errors
    assert value == 40 and left == 0
    assert sorted(taken) == sorted(f"{n}-{i}".encode() for n in range(4) for i in range(10))


@pytest_twisted.inlineCallbacks
def test_blocking_session_close_frees_the_lock_to_a_waiter(server):
    def script():
        c1, c2 = BlockingClient(server.address), BlockingClient(server.address)
        s1, s2 = BlockingSession(c1, ttl=5).start(), BlockingSession(c2, ttl=5).start()
        t1 = Lock(s1, "/locks/b").acquire()
        got = []
        waiter = threading.Thread(target=lambda: got.append(Lock(s2, "/locks/b").acquire()))
        waiter.start()
        time.sleep(0.3)
        before = list(got)
        s1.close()
        waiter.join(10)
        s2.close()
        c1.close()
        c2.close()
        return t1, before, got

    t1, before, got = yield in_thread(script)
    assert before == [] and len(got) == 1 and got[0] > t1


# -- docs: every recipe's example is in docs/client.md ----------------------------------------


DOCS = pathlib.Path(__file__).parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def client_md_recipes():
    """The python examples of docs/client.md's "Recipes" section (they run,
    like every example there, in tests/test_client_docs.py)."""
    text = (DOCS / "client.md").read_text()
    section = text.split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    return BLOCK.findall(section)


def test_client_md_has_an_example_per_recipe():
    text = "".join(client_md_recipes())
    for name in ("Lock(", "RWLock(", "Semaphore(", "Election(", "Registry(", "DoubleBarrier(",
                 "Barrier(", "Counter(", "Queue(", "BlockingSession(", "Session(",
                 ".fence(", ".members_with_revs(", ".observe("):
        assert name in text, name


def test_recipes_md_keeps_the_design_notes_and_links_to_the_examples():
    text = (DOCS / "recipes.md").read_text()
    assert not BLOCK.findall(text)      # examples live (and run) in docs/client.md only
    assert "client.md#recipes" in text and "fencing token" in text
    assert "recipes.md" in (DOCS / "client.md").read_text()
