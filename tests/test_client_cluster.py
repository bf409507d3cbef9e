"""The Python clients and the ``doozer`` command line against a real 3-node
cluster (three ``twistd doozer`` processes from this checkout, one YAML file):
a node is SIGKILLed while a writer and a watcher are running, and the clients
fail over to the survivors without losing or repeating a change.

The fixture here is deliberately self-contained (free loopback ports, the
YAML in tmp_path, three subprocesses, kill helpers, a teardown that always
kills them), so these tests do not move when the shared harness does.
The module takes about 12-20 s on a 2-core machine: marked e2e, not slow.
"""

import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from doozertw.client import BlockingClient, ConnectionLost, DoozerClient, State, WaitTimeout
from doozertw.errors import DoozerError
from doozertw.testing.proxy import child_env
from doozertw.testing.tcpcluster import NAMES, running, until

pytestmark = pytest.mark.e2e


FAILOVER_BOUND = 10.0
"""Seconds within which a write must succeed again after a node is killed."""


@pytest.fixture
def cluster(tmp_path):
    with running(tmp_path) as c:
        yield c


# -- the blocking client: a writer and a watcher through a failover -----------


class Writer(threading.Thread):
    """Writes unique values to one path until stopped, retrying after a lost write.

    ``acked`` holds (rev, value) of every acknowledged write; ``unknown`` the
    values of writes whose outcome is unknown (ConnectionLost or another
    error), which may or may not have been applied.
    """

    def __init__(self, uri, path):
        super().__init__(daemon=True)
        self.client = BlockingClient(uri, suspend_timeout=20.0).connect()
        self.path = path
        self.acked = []
        self.ack_times = []
        self.unknown = []
        self.applied_unknown = []
        self.errors = []
        self.stopping = threading.Event()
        self.failure = None

    def run(self):
        try:
            for i in range(10**9):
                if self.stopping.is_set():
                    return
                self.write(f"value-{i}".encode())
        except BaseException as e:  # reported by the test
            self.failure = e

    def write(self, value):
        try:
            rev = self.client.set(self.path, -1, value)
        except DoozerError as e:
            # The outcome is unknown: re-read (docs/client.md) and carry on
            # with the next value, which is the retry.
            self.unknown.append(value)
            self.errors.append(e)
            try:
                if self.client.get(self.path)[0] == value:
                    self.applied_unknown.append(value)
            except DoozerError:
                time.sleep(0.05)
            return
        self.acked.append((rev, value))
        self.ack_times.append(time.monotonic())


class Watcher(threading.Thread):
    """Collects every event of a blocking watch until stopped and caught up."""

    def __init__(self, uri, glob, rev):
        super().__init__(daemon=True)
        self.client = BlockingClient(uri, suspend_timeout=20.0)
        self.states = []
        self.client.add_listener(self.states.append)
        self.client.connect()
        self.watch = self.client.watch(glob, rev=rev)
        self.events = []
        self.stop_at = None
        self.failure = None

    def run(self):
        try:
            while self.stop_at is None or not self.events or self.events[-1].rev < self.stop_at:
                try:
                    self.events.append(self.watch.next(timeout=0.5))
                except WaitTimeout:
                    continue
        except BaseException as e:  # reported by the test
            self.failure = e

    def finish(self, last_rev, timeout=15.0):
        self.stop_at = last_rev
        self.join(timeout)
        assert not self.is_alive(), "the watcher did not catch up"


def wait_for(count_fn, target, timeout, what):
    until(lambda: count_fn() >= target, timeout, what)


def test_blocking_writer_and_watcher_survive_killing_their_node(cluster):
    victim = cluster.leader
    uri = cluster.uri(victim, *cluster.survivors(victim))
    path = "/load/key"
    with BlockingClient(cluster.address(victim)) as probe:
        start_rev = probe.rev() + 1
    watcher = Watcher(uri, "/load/**", start_rev)
    writer = Writer(uri, path)
    assert watcher.client.address.port == cluster.client_ports[victim]
    assert writer.client.address.port == cluster.client_ports[victim]
    try:
        watcher.start()
        writer.start()
        wait_for(lambda: len(writer.acked), 30, 15.0, "writes before the kill")
        acked_before = len(writer.acked)
        cluster.kill(victim)
        killed_at = time.monotonic()
        wait_for(lambda: len(writer.acked), acked_before + 30, 20.0, "writes after the kill")
        writer.stopping.set()
        writer.join(15.0)
        assert not writer.is_alive() and writer.failure is None, writer.failure
        first_after = next(t for t in writer.ack_times if t > killed_at)
        resumed = first_after - killed_at
        print(f"\nfailover: next acknowledged write {resumed:.3f}s after SIGKILL of "
              f"{victim} (leader); {len(writer.acked)} acked, "
              f"{len(writer.unknown)} unknown ({[str(e) for e in writer.errors]}), "
              f"{len(writer.applied_unknown)} of them applied")
        assert resumed < FAILOVER_BOUND
        assert all(isinstance(e, ConnectionLost) or "no quorum" in str(e)
                   for e in writer.errors), writer.errors

        last_acked = writer.acked[-1][0]
        watcher.finish(last_acked)
        assert watcher.failure is None, watcher.failure
    finally:
        writer.stopping.set()
        watcher.stop_at = 0
        writer.client.close()

    # The watch moved to a survivor, and went through "suspended" to get there.
    assert watcher.client.address.port != cluster.client_ports[victim]
    assert "suspended" in watcher.states and watcher.states[-1] == "connected"
    watcher.client.close()

    assert_watched_exactly_once(watcher.events, writer.acked, writer.unknown, path)
    assert_history_agrees(cluster.address(cluster.survivors(victim)[0]), "/load/**",
                          start_rev, watcher.events)


def test_one_blocking_client_writes_and_watches_through_a_failover(cluster):
    """A single-threaded program: one client, its watch's WAIT outstanding
    while it writes, and the node under both killed from outside."""
    victim = cluster.leader
    path = "/single/key"
    client = BlockingClient(cluster.uri(victim, *cluster.survivors(victim)),
                            suspend_timeout=20.0).connect()
    acked, unknown, events, killed = [], [], [], []

    def kill_after_some_writes():
        until(lambda: len(acked) >= 20, 15.0, "writes before the kill")
        cluster.kill(victim)
        killed.append(len(acked))

    killer = threading.Thread(target=kill_after_some_writes, daemon=True)
    try:
        watch = client.watch("/single/**")
        start_rev = watch.next_rev
        killer.start()
        deadline = time.monotonic() + 20.0
        i = 0
        while not killed or len(acked) < killed[0] + 20:
            assert time.monotonic() < deadline, "the program stalled"
            i += 1
            value = f"value-{i}".encode()
            try:
                rev = client.set(path, -1, value)
            except DoozerError:
                unknown.append(value)
                continue
            acked.append((rev, value))
            while not events or events[-1].rev < rev:
                events.append(watch.next(timeout=FAILOVER_BOUND))
            try:  # send the next WAIT now, so it is outstanding during the next set
                events.append(watch.next(timeout=0))
            except WaitTimeout:
                pass
        killer.join(5.0)
        assert client.address.port != cluster.client_ports[victim]
        print(f"\none client: {len(acked)} acked ({killed[0]} before the kill), "
              f"{len(unknown)} unknown, {len(events)} events")
    finally:
        client.close()
    assert_watched_exactly_once(events, acked, unknown, path)
    assert_history_agrees(cluster.address(cluster.survivors(victim)[0]), "/single/**",
                          start_rev, events)


def assert_watched_exactly_once(events, acked, unknown, path):
    """Every acknowledged write once, in revision order; nothing else but
    (at most once each) writes whose outcome was unknown."""
    revs = [e.rev for e in events]
    assert revs == sorted(set(revs)), "events out of order or repeated"
    assert all(e.path == path and e.kind == "set" for e in events)
    values = [e.value for e in events]
    assert len(values) == len(set(values)), "a write was delivered twice"
    by_rev = {e.rev: e.value for e in events}
    for rev, value in acked:
        assert by_rev.get(rev) == value, f"acknowledged write at rev {rev} not watched"
    acked_values = {value for _, value in acked}
    assert all(v in acked_values or v in unknown for v in values), "a change nobody wrote"


def assert_history_agrees(address, glob, start_rev, events):
    """No gaps: a fresh watch on a node that never failed, replaying the same
    revisions from history, sees exactly the watched events and no more."""
    with BlockingClient(address) as fresh:
        replay = fresh.watch(glob, rev=start_rev, timeout=5.0)
        replayed = [next(replay) for _ in events]
        assert [(e.rev, e.value) for e in replayed] == [(e.rev, e.value) for e in events]
        with pytest.raises(WaitTimeout):
            replay.next(timeout=0.3)


# -- the Twisted client: a watch resumes after its node is killed ------------


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield sleep(0.02)


@pytest_twisted.inlineCallbacks
def test_twisted_watches_resume_after_their_node_is_killed(cluster):
    victim = next(n for n in NAMES if n != cluster.leader)  # a follower this time
    others = cluster.survivors(victim)
    watching = DoozerClient(cluster.uri(victim, *others), reactor=reactor,
                            suspend_timeout=20.0)
    writing = DoozerClient(cluster.uri(cluster.leader), reactor=reactor)
    states = []
    watching.add_listener(states.append)
    try:
        yield watching.connect()
        assert watching.address.port == cluster.client_ports[victim]
        start = (yield writing.rev()) + 1
        seen = []
        by_callback = watching.watch("/tw/*", rev=start, callback=seen.append)
        queued = watching.watch("/tw/*", rev=start)
        written = []
        for i in range(5):
            written.append((yield writing.set(f"/tw/{i}", 0, b"before")))
        yield eventually(lambda: len(seen) >= 5, 10.0, "events before the kill")

        cluster.kill(victim)
        for i in range(5, 10):
            written.append((yield writing.set(f"/tw/{i}", 0, b"after")))
        yield eventually(lambda: len(seen) >= 10, FAILOVER_BOUND, "events after the kill")

        assert [e.rev for e in seen] == written
        assert [e.path for e in seen] == [f"/tw/{i}" for i in range(10)]
        assert [e.value for e in seen] == [b"before"] * 5 + [b"after"] * 5
        iterated = []
        async_iter = queued.__aiter__()
        for _ in range(10):
            iterated.append((yield defer.ensureDeferred(async_iter.__anext__())))
        assert [e.rev for e in iterated] == written
        # Nothing extra arrives: one more write is the next and only event.
        extra = yield writing.set("/tw/extra", 0, b"x")
        yield eventually(lambda: len(seen) >= 11, 5.0, "the extra event")
        yield sleep(0.2)
        assert [e.rev for e in seen[10:]] == [extra]
        assert (yield queued.next()).rev == extra
        assert watching.address.port != cluster.client_ports[victim]
        assert states[:2] == [State.CONNECTING, State.CONNECTED]
        assert State.SUSPENDED in states and states[-1] == State.CONNECTED
        assert by_callback.active and queued.active
        by_callback.stop()
        queued.stop()
        assert (yield by_callback.done) is None
    finally:
        watching.close()
        writing.close()


# -- the doozer command line -----------------------------------------------------


def doozer(uri, *argv, stdin=b""):
    """Run ``python -m doozertw.cli -a URI argv``; (status, stdout, stderr)."""
    env = child_env()
    env.pop("DOOZER_URI", None)
    done = subprocess.run([sys.executable, "-m", "doozertw.cli", "-a", uri, *argv],
                          input=stdin, capture_output=True, env=env, timeout=30)
    return done.returncode, done.stdout, done.stderr.decode()


def test_cli_against_the_cluster_and_after_killing_the_leader(cluster):
    n1, n2, n3 = (cluster.uri(n) for n in NAMES)
    status, out, err = doozer(n1, "set", "/cli/msg", "0", stdin=b"hello")
    assert status == 0, err
    rev = int(out)
    assert doozer(n2, "get", "/cli/msg") == (0, b"hello", "")
    assert doozer(n3, "-r", str(rev), "get", "/cli/msg") == (0, b"hello", "")

    status, out, err = doozer(n3, "members")
    assert status == 0, err
    assert out.decode().splitlines() == [
        "cluster demo", f"leader {cluster.leader}",
        *(f"{n} voter {cluster.address(n)} -" for n in NAMES)]

    cluster.kill(cluster.leader)
    killed_at = time.monotonic()
    survivors = cluster.uri(*cluster.survivors(cluster.leader))
    attempts = 0
    while True:
        attempts += 1
        status, out, err = doozer(survivors, "set", "/cli/msg", str(rev), stdin=b"after")
        if status == 0:
            break
        # A mismatch means an earlier attempt was applied after all.
        if status == 1 and doozer(survivors, "get", "/cli/msg")[1] == b"after":
            break
        assert status == 2 and err.startswith("Error: "), (status, err)
        assert time.monotonic() - killed_at < FAILOVER_BOUND, f"set kept failing: {err}"
    print(f"\ncli: set via the survivors succeeded {time.monotonic() - killed_at:.3f}s "
          f"after SIGKILL of the leader {cluster.leader} ({attempts} attempt(s))")
    value_rev = doozer(survivors, "stat", "/cli/msg")
    assert value_rev[0] == 0 and int(value_rev[1].split()[0]) > rev
    assert doozer(survivors, "get", "/cli/msg") == (0, b"after", "")

    # The survivors still list three voters, and a survivor is the new leader.
    def members():
        status, out, err = doozer(survivors, "members")
        assert status == 0, err
        return out.decode().splitlines()

    def members_after_takeover():
        lines = members()
        return lines if lines[1] != f"leader {cluster.leader}" else None

    lines = until(members_after_takeover, 10.0, "a new leader in /ctl/leader")
    assert lines[0] == "cluster demo"
    assert lines[1] in {f"leader {n}" for n in cluster.survivors(cluster.leader)}
    assert lines[2:] == [f"{n} voter {cluster.address(n)} -" for n in NAMES]
