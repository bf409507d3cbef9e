"""The stale-read fault run on a correct cluster (``-m slow``).

A deposed leader is left reachable by clients while the others elect a
new leader and commit (``linger-leader``: cut off and paused, then resumed
still cut off; ``isolate-leader``), and read-only clients pinned to every
node keep asking it. A ReadIndex answered without a quorum round, or a
follower serving a read before applying up to its read index, fails this
run within its first fault (docs/testing.md, "Fault runs that can see
stale reads"); the correct code must pass it.
"""

import pytest

from doozertw.testing.linearizability import Verdict
from doozertw.testing.nemesis import ISOLATE_LEADER, LINGER_LEADER
from doozertw.testing.soak import RunConfig, fault_run


def assert_no_stale_read(seed, node_args=()):
    """Three linger-leader/isolate-leader faults, readers pinned to every
    node: linearizable, every fault injected, at least 1,000 operations."""
    result = fault_run(RunConfig(
        size=3, faults=3, min_ops=0, max_extra_seconds=0, seed=seed, workers=6,
        keys=8, kinds=(LINGER_LEADER, ISOLATE_LEADER), hold=(1.5, 2.0),
        settle=(0.3, 0.5), readers_per_node=2, linger=1.5,
        node_args=node_args, report_root="reports"))
    assert result.ok, result.describe()
    assert result.injected == 3, result.describe()
    assert result.check.verdict is Verdict.LINEARIZABLE
    assert result.operations >= 1000, result.describe()


@pytest.mark.slow
def test_a_deposed_leader_serves_no_stale_read():
    assert_no_stale_read(seed=5)


@pytest.mark.slow
def test_with_lease_reads_a_paused_or_cut_off_leader_serves_no_stale_read():
    # the linger fault pauses the leader past its lease and resumes it still
    # cut off: it must wake up without a lease (its ticks catch up first)
    assert_no_stale_read(seed=6, node_args=("--lease-reads",))
