"""Regressions found by fault runs.

A node process that ends on its own (a native crash, or a kill from outside
the harness) is named, with how it ended, in its log and in the fault run's
error, so a report tells a dead node from a hung one (a hung node instead
gets SIGABRT at stop and its Python stacks land in its log).
"""

import os
import signal
import subprocess
import sys

import pytest

from doozertw.testing.cluster_harness import DEAD, RUNNING, Cluster, describe_exit


def _ended_process(code):
    """A real child process that has ended: with status ``code`` (>= 0) or
    killed by signal ``-code``."""
    if code >= 0:
        script = f"import sys; sys.exit({code})"
    else:
        script = f"import os; os.kill(os.getpid(), {-code})"
    process = subprocess.Popen([sys.executable, "-c", script])
    process.wait(timeout=10)
    return process


def test_exit_descriptions_name_the_signal():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-200) == "killed by signal 200"


@pytest.mark.e2e
def test_a_node_killed_behind_the_harness_back_is_reported_and_logged(tmp_path):
    cluster = Cluster(3, name="exits", directory=str(tmp_path), proxy=False, web=False)
    victim, quitter, alive = (cluster.nodes[n] for n in ("n1", "n2", "n3"))
    victim.twistd.process, victim.state = _ended_process(-signal.SIGKILL), RUNNING
    quitter.twistd.process, quitter.state = _ended_process(0), RUNNING
    alive.twistd.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    alive.state = RUNNING
    try:
        ended = cluster.unexpected_exits()
        assert ended == {"n1": "killed by SIGKILL", "n2": "exited with status 0"}
        assert victim.state == DEAD and quitter.state == DEAD and alive.state == RUNNING
        assert cluster.running() == ["n3"]
        assert "--- harness: n1 ended on its own: killed by SIGKILL" in victim.log_text()
        assert cluster.unexpected_exits() == {}  # reported once
    finally:
        alive.twistd.process.kill()
        alive.twistd.process.wait(timeout=10)
    assert cluster.unexpected_exits() == {"n3": "killed by SIGKILL"}


@pytest.mark.e2e
def test_a_node_the_harness_killed_is_not_unexpected(tmp_path):
    cluster = Cluster(1, name="exits", directory=str(tmp_path), proxy=False, web=False)
    node = cluster.nodes["n1"]
    node.twistd.process, node.state = _ended_process(-signal.SIGKILL), DEAD
    assert cluster.unexpected_exits() == {}
    assert not os.path.exists(node.log_path)
