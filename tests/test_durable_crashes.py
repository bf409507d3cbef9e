"""Durable nodes crash with real processes (issue 8), ``-m slow``.

- Fault runs with ``KILL_ALL`` (``kill -9`` of every node at once, then
  every node started again with its command, data directories kept):
  alone (three times) and mixed with killing one node, pausing and
  isolating the leader. The linearizability workload runs across the
  crashes; the whole history must check linearizable, no acknowledged
  write may be lost and no revision reused (``RunResult.revision_errors``).
- The majority restart: with n3 (or the leader) paused (``kill -STOP``),
  or n3 running, the two others are killed with ``kill -9`` and started
  again. Durable, they resume under their own member ids and serve;
  nothing founds a second cluster; every node converges to the same files
  at the same revisions; the resumed survivor never answers a stale read.
  With ``--in-memory`` the restarted nodes must not found anew: they keep
  probing, join n3 as learners, and no node ever serves data other than
  the one copy the cluster wrote.

A larger KILL_ALL run is behind the ``soak`` marker.
"""

import pathlib
import shutil
import time

import pytest

from doozertw.testing import node_events
from doozertw.testing.cluster_harness import START_LINE, Cluster
from doozertw.testing.linearizability import Verdict
from doozertw.testing.nemesis import (
    ALL_NODES, ISOLATE_LEADER, KILL_ALL, KILL_LEADER, PAUSE_LEADER)
from doozertw.testing.soak import RunConfig, fault_run
from doozertw.testing.workload import Timeout, WireClient, WireError

FAILED = (WireError, Timeout, OSError)
FOUNDING = "founding the cluster"


# --- KILL_ALL fault runs ---------------------------------------------------------


def kill_all_run(faults, kinds, min_ops, seed, **more):
    """A fault run on 3 durable nodes; its report is kept (under
    ``reports/``) so the node logs can be checked, and removed by
    ``assert_clean`` once everything passed."""
    return fault_run(RunConfig(
        size=3, faults=faults, kinds=kinds, min_ops=min_ops, seed=seed,
        workers=6, keys=12, hold=(0.2, 0.8), settle=(0.5, 1.0), warmup=1.0,
        recover_timeout=30.0, max_extra_seconds=60.0, report_root="reports",
        keep_report=True, **more))


def assert_clean(result, kill_alls):
    """Linearizable, nothing lost, no revision reused or misread, at least
    ``kill_alls`` KILL_ALL faults, and every node resumed under its own
    member id after each of them (founding only in its first life)."""
    assert result.ok, result.describe()
    assert result.check.verdict is Verdict.LINEARIZABLE, result.describe()
    assert result.lost == [] and result.revision_errors == [], result.describe()
    assert result.revisions_read_back > 0, result.describe()
    report = pathlib.Path(result.report)
    timeline = (report / "timeline.txt").read_text()
    assert timeline.count(f"{KILL_ALL} {ALL_NODES} ") >= kill_alls, timeline
    for name in ("n1", "n2", "n3"):
        first, *later = (report / "nodes" / f"{name}.log").read_text().split(START_LINE)[1:]
        assert len(later) >= kill_alls and first.count(FOUNDING) <= 1, result.report
        for life in later:
            assert FOUNDING not in life, f"{name} founded again: {result.report}"
        events = report / "nodes" / f"{name}.{node_events.EVENTS_FILE}"
        members = node_events.members_started(str(events))
        assert len(members) == 1 + len(later), result.report
        for life in members[1:]:
            assert set(life) == {name}, result.report
    shutil.rmtree(report)


@pytest.mark.slow
def test_kill_all_three_times_loses_nothing_and_stays_linearizable():
    result = kill_all_run(3, (KILL_ALL,), min_ops=2500, seed=81)
    assert_clean(result, 3)


@pytest.mark.slow
def test_kill_all_mixed_with_single_faults():
    # every round of five: KILL_ALL twice, kill one, pause and cut off the leader
    kinds = (KILL_ALL, KILL_ALL, KILL_LEADER, PAUSE_LEADER, ISOLATE_LEADER)
    result = kill_all_run(10, kinds, min_ops=3500, seed=82)
    assert_clean(result, 4)
    assert result.injected == 10, result.describe()


@pytest.mark.soak
def test_kill_all_soak():
    kinds = (KILL_ALL, KILL_ALL, KILL_LEADER, PAUSE_LEADER, ISOLATE_LEADER)
    result = kill_all_run(40, kinds, min_ops=30_000, seed=83,
                          max_extra_seconds=300.0, check_timeout=300.0)
    assert_clean(result, 16)


# --- the majority restart ----------------------------------------------------------


def lives(cluster, name):
    """The node's log split per start (the first item: its first life)."""
    return cluster.nodes[name].log_text().split(START_LINE)[1:]


def members_started(cluster, name):
    """The Raft member ids the node started under, one list per life
    (from its JSON log events)."""
    return node_events.members_started(cluster.nodes[name].events().path)


def assert_never_founded_again(cluster, restarted=("n1", "n2")):
    """Founding only in a first life, once; ``restarted`` did restart."""
    for name in cluster.nodes:
        first, *later = lives(cluster, name)
        assert first.count(FOUNDING) <= 1
        assert later or name not in restarted, f"{name} was never restarted"
        assert all(FOUNDING not in life for life in later), (
            f"{name} founded a cluster again:\n{cluster.nodes[name].log_text()[-3000:]}")


def client(cluster, name, timeout=2.0):
    return WireClient(cluster.nodes[name].client_port, timeout=timeout)


def linearizable_rev(cluster, name, timeout=2.0):
    """The node's store revision right after it answered a linearizable
    read (so it covers every write acknowledged before)."""
    c = client(cluster, name, timeout)
    try:
        c.get("/crash/latest")
        return c.call("REV").rev
    finally:
        c.close()


def pinned_tree(cluster, name, rev, timeout=5.0):
    """Every file (path, value, rev) at revision ``rev`` on node ``name``,
    read with pinned WALKs (no quorum needed); None if it does not answer."""
    try:
        c = client(cluster, name, timeout)
    except OSError:
        return None
    files = []
    try:
        while True:
            try:
                resp = c.call("WALK", path="/**", rev=rev, offset=len(files))
            except WireError as e:
                if e.code == 8:  # RANGE: no more files
                    return files
                raise
            files.append((resp.path, resp.value, resp.rev))
    except (Timeout, OSError):
        return None
    finally:
        c.close()


def write_keys(cluster, via, prefix, count):
    """{path: (value, rev)} of ``count`` acknowledged writes through ``via``."""
    written = {}
    for i in range(count):
        path, value = f"{prefix}/{i}", f"{prefix}-{i}".encode()
        written[path] = (value, cluster.write(via, path, value, timeout=5.0))
    latest = f"{prefix}-latest".encode()
    written["/crash/latest"] = (latest, cluster.write(via, "/crash/latest", latest, timeout=5.0))
    return written


def assert_reads_never_stale(cluster, name, expected, seconds, need_answer):
    """Read ``/crash/latest`` through ``name`` for ``seconds``: every read
    it answers must be ``expected``; with ``need_answer`` it must answer
    (and then stop early)."""
    deadline = time.monotonic() + seconds
    answered = 0
    while time.monotonic() < deadline:
        try:
            value, _ = cluster.read(name, "/crash/latest", timeout=1.0)
        except FAILED:
            time.sleep(0.05)
            continue
        answered += 1
        assert value == expected, f"{name} served a stale read: {value!r}, not {expected!r}"
        if need_answer:
            return
    assert answered or not need_answer, f"{name} answered no read in {seconds}s"


def assert_one_copy(cluster, written):
    """Every node reads every acknowledged write as written, and all have
    the same files at the same revisions (pinned walks at one revision)."""
    rev = max(linearizable_rev(cluster, n) for n in cluster.nodes)
    trees = {n: pinned_tree(cluster, n, rev, timeout=10.0) for n in cluster.nodes}
    assert all(tree is not None for tree in trees.values()), trees.keys()
    first = trees["n1"]
    for name, tree in trees.items():
        assert tree == first, f"{name} differs from n1 at revision {rev}"
    files = {path: (value, file_rev) for path, value, file_rev in first}
    for path, (value, file_rev) in written.items():
        assert files.get(path) == (value, file_rev), path
    revs = [r for _, r in written.values()]
    assert len(set(revs)) == len(revs), "a revision was reused"


@pytest.fixture
def durable_trio(tmp_path):
    cluster = Cluster(3, name="crash", directory=str(tmp_path), proxy=False)
    cluster.start()
    cluster.wait_formed(timeout=60)
    yield cluster
    cluster.stop()


@pytest.mark.slow
@pytest.mark.parametrize("survivor,paused", [
    ("n3", True), ("n3", False), ("leader", True)],
    ids=["n3-paused", "n3-running", "leader-paused"])
def test_majority_killed_and_restarted_resumes_with_one_copy(durable_trio, survivor, paused):
    cluster = durable_trio
    leader = cluster.wait_for_leader()
    survivor = leader if survivor == "leader" else survivor
    majority = [n for n in cluster.nodes if n != survivor]
    written = write_keys(cluster, leader, "/crash/before", 20)
    if paused:
        cluster.pause(survivor)
    try:
        for name in majority:
            cluster.kill(name)
        if not paused:  # alone it has no quorum: no stale answers
            assert_reads_never_stale(cluster, survivor, written["/crash/latest"][0],
                                     1.5, need_answer=False)
        cluster.restart_all(majority)
        cluster.wait_for_leader(timeout=20)  # among the running nodes
        cluster.wait_writable(timeout=20)
        for name in majority:  # their data was kept
            assert cluster.read(name, "/crash/before/19")[0] == b"/crash/before-19"
        written.update(write_keys(cluster, majority[0], "/crash/after", 20))
    finally:
        if cluster.nodes[survivor].state == "paused":
            cluster.resume(survivor)
    # from the moment it runs again, it answers no read with older data
    assert_reads_never_stale(cluster, survivor, written["/crash/latest"][0], 10.0,
                             need_answer=True)
    cluster.wait_writable(timeout=10)
    assert_one_copy(cluster, written)
    assert_never_founded_again(cluster, restarted=majority)
    for name in cluster.nodes:
        ids = [m for life in members_started(cluster, name) for m in life]
        assert ids and set(ids) == {name}, f"{name} started as {ids}"
        for life in lives(cluster, name)[1:]:
            assert f"resumed as {name} from stored state" in life


@pytest.mark.slow
def test_in_memory_majority_restart_never_founds_a_second_cluster(tmp_path):
    cluster = Cluster(3, name="crashmem", directory=str(tmp_path), proxy=False,
                      extra_args=("--in-memory",))
    try:
        cluster.start()
        cluster.wait_formed(timeout=60)
        written = write_keys(cluster, cluster.wait_for_leader(), "/crash/before", 10)
        latest = written["/crash/latest"][0]
        rev = linearizable_rev(cluster, "n3")
        tree = pinned_tree(cluster, "n3", rev)
        cluster.pause("n3")
        cluster.kill("n1")
        cluster.kill("n2")
        cluster.restart_all(["n1", "n2"])
        for name in ("n1", "n2"):  # they keep probing: nothing to read, no write
            assert_reads_never_stale(cluster, name, latest, 1.0, need_answer=False)
            assert pinned_tree(cluster, name, rev, timeout=1.0) in (None, tree)
        with pytest.raises(FAILED):
            cluster.write("n1", "/crash/split", b"second cluster?", timeout=2.0)
        for name in ("n1", "n2"):
            me = [m for m in cluster.status(name)["nodes"] if m["name"] == name]
            assert [m["role"] for m in me] == ["probing"], cluster.status(name)
        cluster.resume("n3")
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:  # only ever the one copy
            for name in cluster.nodes:
                assert_reads_never_stale(cluster, name, latest, 0.3, need_answer=False)
                assert pinned_tree(cluster, name, rev, timeout=1.0) in (None, tree)
        assert_never_founded_again(cluster)
        for name in ("n1", "n2"):  # n3 answered: they joined it as learners
            assert "~" in cluster.wait_member(name, timeout=5.0)
            later = members_started(cluster, name)[1:]
            assert all("~" in m for life in later for m in life), later
        assert pinned_tree(cluster, "n3", rev) == tree  # n3 still holds the data
    finally:
        cluster.stop()
