"""The default run is hermetic: a test that starts a process must be marked.

The inner pytest runs here go through ``sys.audit`` only, so no process is
started even by the marked example."""

import pytest

# hypothesis's plugin would import trio at the end of the inner run, and
# trio runs /sbin/ldconfig on import: leave it out; so is pytest-twisted, which
# cannot nest in the outer run.
ARGS = ("-p", "doozertw.testing.hermetic", "-p", "no:hypothesispytest", "-p", "no:twisted",
        "-q")
INI = """[pytest]
markers =
    e2e: starts processes
    slow: starts processes
"""

SPAWNS = """
import subprocess, sys
import pytest

def spawn():
    sys.audit("subprocess.Popen", sys.executable, [sys.executable, "-c", "pass"], None, None)

{marker}
def test_spawns():
    spawn()

{marker}
def test_spawns_and_swallows_the_error():
    try:
        spawn()
    except Exception:
        pass

def test_no_process():
    assert True
"""


def run(pytester, marker):
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=SPAWNS.format(marker=marker))
    return pytester.runpytest_inprocess(*ARGS)


def test_an_unmarked_test_that_starts_a_process_fails_even_if_it_catches_the_error(pytester):
    result = run(pytester, "")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*not marked e2e / slow / soak*"])


@pytest.mark.parametrize("marker", ["@pytest.mark.e2e", "@pytest.mark.slow"])
def test_a_marked_test_may_start_processes(pytester, marker):
    run(pytester, marker).assert_outcomes(passed=3)


def test_other_events_pass_through(pytester):
    pytester.makepyfile(test_inner="""
import sys
def test_opens():
    sys.audit("open", "x", "r", 0)
""")
    pytester.runpytest_inprocess(*ARGS).assert_outcomes(
        passed=1)
