"""The fire drills of docs/fire-drills.md, automated.

Each test runs one drill against a real 3-node cluster of twistd processes
on loopback (doozertw.testing.cluster_harness), doing what the document
tells an operator to do and checking what it says to expect. Where the
document gives a command (``doozer``, ``python -m doozertw.cluster.admin``),
the drill runs that command.
"""

import os
import subprocess
import sys
import time

import pytest

from doozertw.testing.cluster_harness import Cluster
from doozertw.testing.proxy import SOURCE_ROOT
from doozertw.testing.workload import Timeout, WireError

pytestmark = pytest.mark.slow

FAILED = (WireError, Timeout, OSError)


@pytest.fixture
def cluster():
    c = Cluster(3, name="drill")
    c.start()
    c.wait_formed(timeout=60)
    yield c
    c.stop()
    c.cleanup()


def run(*args, stdin=b"", timeout=30):
    """A documented command (``python -m ...``), run as an operator would."""
    env = dict(os.environ, PYTHONPATH=SOURCE_ROOT)
    return subprocess.run([sys.executable, "-m", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=env)


def address(cluster, name):
    return f"127.0.0.1:{cluster.nodes[name].client_port}"


def doozer(cluster, name, *args, stdin=b""):
    return run("doozertw.cli", "-a", address(cluster, name), *args, stdin=stdin)


def eventually_reads(cluster, name, path, value, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cluster.read(name, path, timeout=1.0)[0] == value:
                return
        except FAILED:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} never read {value!r} at {path}")
        time.sleep(0.1)


def write_many(cluster, via, count=20, prefix="/drill/w"):
    """Seconds ``count`` writes through ``via`` took (each must succeed)."""
    started = time.monotonic()
    for i in range(count):
        cluster.write(via, f"{prefix}/{i}", str(i).encode(), timeout=2.0)
    return time.monotonic() - started


def test_drill_lose_a_follower(cluster):
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.running() if n != leader)
    cluster.kill(follower)
    assert write_many(cluster, leader) < 3.0            # writes go on
    done = doozer(cluster, leader, "set", "/drill/message", "-1", stdin=b"still here")
    assert done.returncode == 0, done.stderr
    cluster.restart(follower)                           # the same command again
    assert cluster.member_id(follower) == follower      # resumed under its own id ...
    assert cluster.is_voter(follower)                   # ... and votes at once
    got = doozer(cluster, follower, "get", "/drill/message")
    assert got.returncode == 0 and got.stdout.startswith(b"still here"), got
    eventually_reads(cluster, follower, "/drill/w/19", b"19")


def test_drill_lose_the_leader(cluster):
    leader = cluster.wait_for_leader()
    survivor = next(n for n in cluster.running() if n != leader)
    cluster.write(survivor, "/drill/message", b"before")
    killed = time.monotonic()
    cluster.kill(leader)
    writable = cluster.wait_writable(timeout=10)
    assert writable - killed < 2.0, f"writes resumed after {writable - killed:.2f}s"
    new_leader = cluster.wait_for_leader(timeout=5)
    assert new_leader != leader
    assert cluster.read(survivor, "/drill/message")[0] == b"before"  # nothing lost
    cluster.write(survivor, "/drill/message", b"after")
    cluster.restart(leader)                             # rejoins as a follower
    assert cluster.is_voter(leader)
    eventually_reads(cluster, leader, "/drill/message", b"after")
    cluster.wait_formed(timeout=20)                     # three voters again


def test_drill_replace_a_node(cluster):
    leader = cluster.wait_for_leader()
    dead = next(n for n in cluster.running() if n != leader)
    cluster.write(leader, "/drill/message", b"kept")
    cluster.kill(dead)                                  # the machine is gone for good
    cluster.add_node("n4", promote=False)               # twistd ... --attach ADDR
    assert cluster.member_id("n4") is not None and not cluster.is_voter("n4")
    promoted = run("doozertw.cluster.admin", "promote", "n4", "-a", address(cluster, leader))
    assert promoted.returncode == 0 and b"n4 holds /ctl/cal/" in promoted.stdout, promoted
    cluster.wait_voter("n4", timeout=20)
    removed = run("doozertw.cluster.admin", "remove", dead, "-a", address(cluster, leader))
    assert removed.returncode == 0, removed.stderr
    cluster.wait_writable(timeout=10)
    eventually_reads(cluster, "n4", "/drill/message", b"kept")
    # n4 really votes: with the old node gone, losing one more of the three
    # voters still leaves a quorum.
    other = next(n for n in cluster.running() if n not in ("n4", leader))
    cluster.kill(other)
    cluster.wait_writable(timeout=10)
    cluster.write("n4", "/drill/message", b"after replacement")
    assert cluster.read(leader, "/drill/message")[0] == b"after replacement"


def test_drill_cut_the_leader_off(cluster):
    leader = cluster.wait_for_leader()
    majority = [n for n in cluster.running() if n != leader]
    cluster.write(leader, "/drill/message", b"before")
    cluster.isolate(leader)
    try:
        new_leader = cluster.wait_for_leader(timeout=10, among=majority)
        assert new_leader != leader
        cluster.wait_writable(timeout=10, via=majority[0])
        cluster.write(majority[0], "/drill/message", b"after")
        # The cut-off node completes no write and serves no read.
        write = doozer(cluster, leader, "set", "/drill/minority", "-1", stdin=b"lost?")
        assert write.returncode != 0 and b"no quorum" in write.stderr + write.stdout, write
        with pytest.raises(FAILED):
            cluster.read(leader, "/drill/message", timeout=8.0)
    finally:
        cluster.heal()
    eventually_reads(cluster, leader, "/drill/message", b"after")
    assert cluster.wait_for_leader(timeout=10) in cluster.nodes


def test_drill_lose_quorum_and_recover(cluster):
    leader = cluster.wait_for_leader()
    cluster.write(leader, "/drill/message", b"before")
    stopped = [n for n in cluster.running() if n != leader]
    for name in stopped:
        cluster.pause(name)                             # kill -STOP
    try:
        started = time.monotonic()
        with pytest.raises(WireError) as failed:        # a clear error, not a hang
            cluster.write(leader, "/drill/message", b"no quorum", timeout=15.0)
        assert "no quorum" in failed.value.detail
        assert time.monotonic() - started < 10.0
        with pytest.raises(FAILED):
            cluster.read(leader, "/drill/message", timeout=15.0)
        cluster.resume(stopped[0])                      # kill -CONT one of them
        cluster.wait_writable(timeout=15, via=leader)
        cluster.write(leader, "/drill/message", b"after")
    finally:
        for name in stopped:
            if cluster.nodes[name].state == "paused":
                cluster.resume(name)
    for name in cluster.nodes:
        eventually_reads(cluster, name, "/drill/message", b"after")
