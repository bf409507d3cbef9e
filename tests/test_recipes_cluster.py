"""The Lock recipe against a real 3-node cluster (three ``twistd doozer``
processes), with lock holders in separate Python processes killed by SIGKILL.

- A holder takes the lock and sleeps; it is SIGKILLed together with the
  node it talks to (the leader). The waiter, in this process, gets the lock
  within the ttl plus one election, with a larger fencing token.
- A holder process (listing all three nodes) holds a Lock and a Registry
  registration; SIGKILL of the node it talks to (the leader) loses neither:
  its session fails over, and after the ttl and an election the lock file
  and registration are still there and it still holds with the same token.
  Then SIGKILL of the holder: its registration vanishes and a waiter gets
  the lock with a larger token within the ttl plus a few seconds.
- (slow) Several contender processes loop acquire/hold/release while
  holders are killed at random; every hold is logged (token, start, end)
  and the holds must never overlap, in token order, and tokens must grow.

The cluster fixture is self-contained (as in test_client_cluster.py). The
default test takes about 15-25 s on a 2-core machine.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from doozertw.client import BlockingClient
from doozertw.client.recipes import BlockingSession, Lock, Registry
from doozertw.testing.proxy import child_env
from doozertw.testing.tcpcluster import NAMES, running, until

pytestmark = pytest.mark.e2e


TTL = 2
FAILOVER_BOUND = 10.0
"""Seconds (on top of the ttl) within which the lock must pass on."""

CONTENDER = r"""
import json, random, sys, time
from doozertw.client import BlockingClient
from doozertw.client.recipes import BlockingSession, Lock

uri, log, seed, rounds, hold, ttl = sys.argv[1:7]
seed, rounds, hold, ttl = int(seed), int(rounds), float(hold), int(ttl)
rng = random.Random(seed)
out = open(log, "a", buffering=1)
client = BlockingClient(uri, suspend_timeout=20)
session = BlockingSession(client, ttl=ttl).start()
lock = Lock(session, "/locks/e2e", value=str(seed))
for _ in range(rounds):
    token = lock.acquire()
    out.write(json.dumps(["acquired", token, time.monotonic()]) + "\n")
    time.sleep(hold if hold >= 0 else rng.uniform(0.02, 0.3))
    out.write(json.dumps(["releasing", token, time.monotonic(), session.state.value]) + "\n")
    lock.release()
    time.sleep(rng.uniform(0.0, 0.1))
session.close()
client.close()
out.write(json.dumps(["done"]) + "\n")
"""


HOLDER = r"""
import json, sys, time
from doozertw.client import BlockingClient
from doozertw.client.recipes import BlockingSession, Lock, Registry

uri, log, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = open(log, "a", buffering=1)


def say(*record):
    out.write(json.dumps([*record, time.monotonic()]) + "\n")


client = BlockingClient(uri, suspend_timeout=30)
session = BlockingSession(client, ttl=ttl).start()
lock = Lock(session, "/locks/failover", value="holder")
token = lock.acquire()
Registry(session, "/svc/failover").register("holder", "up")
fence = lock.fence()
say("holding", token, fence.path, fence.rev, str(client.address),
    str(session._keeper.address))
while True:
    time.sleep(0.2)
    try:
        file_rev = client.get(fence.path)[1]
    except Exception as e:              # reported, not fatal: the test judges
        file_rev = repr(e)
    say("status", session.state.value, lock.token, file_rev, str(client.address))
"""


@pytest.fixture
def cluster(tmp_path):
    with running(tmp_path) as c:
        yield c


class Contender:
    """One contender process running CONTENDER, logging to its own file."""

    def __init__(self, tmp_path, uri, seed, rounds, hold):
        self.log = tmp_path / f"contender-{seed}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONTENDER, uri, str(self.log), str(seed), str(rounds),
             str(hold), str(TTL)], env=child_env(), stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"contender-{seed}.err", "w"))
        self.killed_at = None

    def records(self):
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("]")]

    def holding(self):
        records = self.records()
        return records and records[-1][0] == "acquired"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.killed_at is None:
            self.killed_at = time.monotonic()  # it is dead by now


def test_a_killed_holder_passes_the_lock_on_with_a_larger_token(cluster, tmp_path):
    others = [n for n in NAMES if n != cluster.leader]
    holder = Contender(tmp_path, cluster.uri(cluster.leader), 1, 1, 1000.0)
    try:
        until(holder.holding, 20.0, "the holder to take the lock")
        held_token = holder.records()[-1][1]
        client = BlockingClient(cluster.uri(*others, cluster.leader), suspend_timeout=30.0)
        session = BlockingSession(client, ttl=TTL).start()
        got = []
        waiter = threading.Thread(
            target=lambda: got.append((Lock(session, "/locks/e2e").acquire(timeout=60),
                                       time.monotonic())), daemon=True)
        waiter.start()
        time.sleep(1.5)
        assert not got, "the waiter got a held lock"
        holder.kill()                           # mid-hold, with the node it talks to
        cluster.procs[cluster.leader].kill()
        killed = time.monotonic()
        waiter.join(TTL + FAILOVER_BOUND + 5.0)
        assert got, "the lock never passed on"
        token, at = got[0]
        assert token > held_token
        assert at - killed < TTL + FAILOVER_BOUND
        session.close()
        client.close()
    finally:
        holder.kill()


FAILOVER_TTL = 4
"""The failover test's session ttl: keep-alives every 4/3 s leave room for
an election (a cluster's minimum ttl, 2 s, is about one election)."""


def agreed_new_leader(cluster, names, old, timeout):
    """The leader that ``names`` agree on once it is not ``old``."""
    clients = [BlockingClient(cluster.address(n), suspend_timeout=0.5) for n in names]
    try:
        def agreed():
            seen = {c.get("/ctl/leader")[0].decode() for c in clients}
            return seen.pop() if len(seen) == 1 and seen != {old} and "" not in seen else None

        return until(agreed, timeout, "a new leader")
    finally:
        for client in clients:
            client.close()


class Holder:
    """The HOLDER program in a process of its own, logging JSON lines."""

    def __init__(self, tmp_path, uri):
        self.log = tmp_path / "holder.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, uri, str(self.log), str(FAILOVER_TTL)],
            env=child_env(), stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "holder.err", "w"))

    def records(self, kind):
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines
                if line.endswith("]") and json.loads(line)[0] == kind]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def test_a_killed_node_loses_no_lock_but_a_killed_holder_does(cluster, tmp_path):
    victim = cluster.leader
    others = [n for n in NAMES if n != victim]
    holder = Holder(tmp_path, cluster.uri(victim, *others))     # talks to the leader
    client = waiter_client = waiter_session = None
    try:
        (_, token, path, rev, address, keeper, _), = until(
            lambda: holder.records("holding"), 20.0, "the holder to take the lock")
        assert address == keeper == cluster.address(victim)
        client = BlockingClient(cluster.uri(*others), suspend_timeout=30.0)
        registry = Registry(client, "/svc/failover")
        assert registry.members() == {"holder": b"up"}
        waiter_client = BlockingClient(cluster.uri(*others), suspend_timeout=30.0)
        waiter_session = BlockingSession(waiter_client, ttl=FAILOVER_TTL).start()
        got = []
        waiter = threading.Thread(
            target=lambda: got.append((Lock(waiter_session, "/locks/failover").acquire(
                timeout=60), time.monotonic())), daemon=True)
        waiter.start()

        cluster.procs[victim].kill()                # the node, not the holder
        killed = time.monotonic()
        agreed_new_leader(cluster, others, victim, FAILOVER_BOUND)
        time.sleep(max(0.0, killed + FAILOVER_TTL + 1.0 - time.monotonic()))
        assert client.get(path)[1] == rev, "the lock file is gone"
        assert registry.members() == {"holder": b"up"}, "the registration is gone"
        status = holder.records("status")[-1]
        assert status[-1] > killed + FAILOVER_TTL, "the holder stopped reporting"
        assert status[1:5] == ["connected", token, rev, status[4]], status
        assert status[4] != cluster.address(victim)     # its client failed over too
        assert not got, "the waiter got a held lock"

        holder.kill()                               # now the holder dies
        holder_killed = time.monotonic()
        until(lambda: "holder" not in registry.members(), FAILOVER_TTL + 5.0,
              "the registration to vanish")
        waiter.join(FAILOVER_TTL + 5.0)
        assert got, "the lock never passed on"
        new_token, at = got[0]
        assert new_token > token and at - holder_killed < FAILOVER_TTL + 5.0
    finally:
        holder.kill()
        for closable in (waiter_session, waiter_client, client):
            if closable is not None:
                closable.close()


@pytest.mark.slow
def test_random_kills_never_break_mutual_exclusion(cluster, tmp_path):
    rng = random.Random(os.environ.get("DOOZER_SEED", "recipes"))
    uri = cluster.uri(*NAMES)
    seeds = iter(range(100, 10**6))
    live = [Contender(tmp_path, uri, next(seeds), 10**6, -1.0) for _ in range(4)]
    everyone = list(live)
    try:
        deadline = time.monotonic() + 25.0
        kills = 0
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 3.0))
            holders = [c for c in live if c.holding()]
            victim = rng.choice(holders or live)
            victim.kill()
            kills += 1
            live.remove(victim)
            fresh = Contender(tmp_path, uri, next(seeds), 10**6, -1.0)
            live.append(fresh)
            everyone.append(fresh)
    finally:
        for contender in everyone:
            contender.kill()
    holds = []
    for contender in everyone:
        open_hold = None
        for record in contender.records():
            if record[0] == "acquired":
                open_hold = [record[1], record[2], None, "connected"]
                holds.append(open_hold)
            elif record[0] == "releasing":
                assert open_hold is not None and open_hold[0] == record[1]
                open_hold[2], open_hold[3] = record[2], record[3]
                open_hold = None
        if open_hold is not None:
            open_hold[2] = contender.killed_at
    assert kills >= 5 and len(holds) >= 20, (kills, len(holds))
    by_token = sorted(holds)
    tokens = [h[0] for h in by_token]
    assert len(set(tokens)) == len(tokens)
    assert [h[0] for h in sorted(holds, key=lambda h: h[1])] == tokens, \
        "tokens did not grow in the order the lock was taken"
    for earlier, later in zip(by_token, by_token[1:]):
        if earlier[3] == "lost":
            continue                # a holder that knew its session was lost
        assert later[1] >= earlier[2], f"holds overlap: {earlier} and {later}"
