"""The recipes (doozertw.client.recipes) against a real Node, in process.

- Twisted flavour in memory: iosim pumps on a task.Clock, real
  DoozerProtocols, a real Node whose lease clock is the same Clock (so a
  lease can expire deterministically and lock_delay is exact);
- blocking flavour over TCP against an in-process server
  (doozertw.testing.servers), with threads contending;
- every example of docs/recipes.md runs against a fresh server.
"""

import inspect
import pathlib
import re
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.test import iosim

from doozertw.client import (
    BlockingClient, DoozerClient, DoozerError, ErrCode, WaitTimeout, call)
from doozertw.client.protocol import DoozerClientProtocol
from doozertw.client.recipes import (
    Barrier, BlockingSession, Counter, DoubleBarrier, Election, Lock, LockTimeout, Queue,
    Registry, RWLock, Semaphore, Session, SessionLost, SessionState)
from doozertw.client.recipes import _steps
from doozertw.client.recipes.base import predecessor
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import SET, Event, Store
from doozertw.testing.servers import in_thread, start_servers, stop_all

A, B = "10.0.0.1:8046", "10.0.0.2:8046"


class Net:
    """In-memory servers by address; ``flush()`` moves bytes until quiet."""

    def __init__(self, clock):
        self.clock = clock
        self.servers = {}
        self.down = set()
        self.pumps = []

    def connector(self, address):
        key = str(address)
        if key in self.down or key not in self.servers:
            return defer.fail(ConnectionRefusedError(key))
        server = DoozerProtocol(self.servers[key], Secrets(), Limits(), self.clock)
        client = DoozerClientProtocol()
        pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                             iosim.makeFakeClient(client), greet=False, clock=self.clock)
        pump.address = key
        self.pumps.append(pump)
        return defer.succeed(client)

    def flush(self):
        while any([pump.flush() for pump in list(self.pumps)]):
            pass

    def kill(self, address):
        self.down.add(address)
        for pump in self.pumps:
            if pump.address == address:
                pump.clientIO.stream = []
                pump.serverIO.stream = []
                pump.serverIO.loseConnection()
        self.flush()
        self.pumps = [p for p in self.pumps if p.address != address]

    def run(self, seconds, step=0.1):
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.flush()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def node(clock):
    return Node("a", store=Store(history=10000), reactor=clock)


@pytest.fixture
def net(clock, node):
    net = Net(clock)
    net.servers[A] = net.servers[B] = node
    return net


def watch(d):
    """A list that gets the outcome of ``d`` (a result or a Failure)."""
    out = []
    d.addBoth(out.append)
    return out


def settle(net, d):
    out = watch(d)
    net.flush()
    assert out, "deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


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
    observer.addErrback(lambda f: f.trap(defer.CancelledError))
    observer.cancel()
    with pytest.raises(TypeError):
        Election(sa.client, "/election/svc").campaign("x")


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


# -- docs/recipes.md examples ----------------------------------------------------------------


DOC = pathlib.Path(__file__).parent.parent / "docs" / "recipes.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples():
    return BLOCK.findall(DOC.read_text()) if DOC.exists() else []


def test_the_doc_has_an_example_per_recipe():
    text = "".join(examples())
    for name in ("Lock(", "RWLock(", "Semaphore(", "Election(", "Registry(", "DoubleBarrier(",
                 "Barrier(", "Counter(", "Queue(", "BlockingSession(", "Session("):
        assert name in text, name


@pytest.mark.parametrize("index", range(len(examples())))
@pytest_twisted.inlineCallbacks
def test_doc_example(index, server):
    source = examples()[index].replace("127.0.0.1:8046", server.address)
    namespace = {"__name__": "doc_example"}
    exec(compile(source, f"{DOC}:python[{index}]", "exec"), namespace)
    main = namespace["main"]
    if inspect.iscoroutinefunction(main):
        yield defer.ensureDeferred(main(reactor))
    else:
        yield in_thread(main)
