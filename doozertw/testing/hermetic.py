"""A pytest plugin that keeps the default test run hermetic.

A test may start a process (``subprocess``, ``os.fork``/``exec``/
``posix_spawn``, Twisted's ``spawnProcess``) only if it is marked with one of
``PROCESS_MARKERS``; the default selection (pytest.ini) leaves those out,
so a plain ``pytest`` starts no process. While an unmarked test runs
(setup, call and teardown), an audit hook refuses every process start by
raising ``UnmarkedProcessError``, and the test is reported failed even if
it caught that error. Load it with ``pytest_plugins`` (tests/conftest.py
does) or ``-p doozertw.testing.hermetic``.
"""

from __future__ import annotations

import sys

import pytest

PROCESS_MARKERS = ("e2e", "slow", "soak")
SPAWN_EVENTS = frozenset({
    "subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec",
    "os.spawn", "os.system", "os.startfile"})


class UnmarkedProcessError(RuntimeError):
    """A test without a process marker tried to start a process."""


class SpawnGuard:
    """Which test is running unmarked, and the process starts it tried."""

    def __init__(self) -> None:
        self.current: str | None = None     # node id of the unmarked test running
        self.refused: dict[str, list[str]] = {}

    def audit(self, event: str, args: tuple) -> None:
        if self.current is None or event not in SPAWN_EVENTS:
            return
        what = f"{event} {_argv(event, args)}"
        self.refused.setdefault(self.current, []).append(what)
        raise UnmarkedProcessError(
            f"{self.current} started a process ({what}) but is not marked "
            f"{' / '.join(PROCESS_MARKERS)}; the default run starts none")


def _argv(event: str, args: tuple) -> str:
    """The command line an audit event names (its argv argument), shortened."""
    where = {"subprocess.Popen": 1, "os.posix_spawn": 1, "os.exec": 1, "os.spawn": 2}
    index = where.get(event)
    shown = args[index] if index is not None and len(args) > index else args
    return repr(shown)[:200]


GUARD = SpawnGuard()
sys.addaudithook(GUARD.audit)


def unmarked(item: pytest.Item) -> bool:
    """True when ``item`` carries none of ``PROCESS_MARKERS``."""
    return not any(item.get_closest_marker(m) for m in PROCESS_MARKERS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    previous = GUARD.current
    GUARD.current = item.nodeid if unmarked(item) else None
    try:
        yield
    finally:
        GUARD.current = previous
        GUARD.refused.pop(item.nodeid, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    refused = GUARD.refused.pop(item.nodeid, None)   # each refusal fails one phase
    if refused and report.passed:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is not marked {' / '.join(PROCESS_MARKERS)} "
                           f"but tried to start a process: {'; '.join(refused)}")
