"""The shared test toolkit in doozertw.testing: ports, readiness probes, the
twistd command line, polling on a clock. (The spawner itself runs in the
e2e tests that start nodes with it.)"""

import os
import signal
import socket
import time

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from doozertw.errors import DoozerError, ErrCode
from doozertw.testing.memrun import failure
from doozertw.testing.node_process import (
    HarnessError, endpoint, free_port, free_ports, twistd_path)
from doozertw.testing.polling import wait_until
from doozertw.testing.spawn import Twistd, listening, twistd_command


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(5)
    assert len(set(ports)) == 5
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_listening_probe_passes_on_a_listener_and_raises_oserror_on_a_closed_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening(port)() is True
    with pytest.raises(OSError):
        listening(port)()


def test_twistd_command_runs_the_venv_twistd_in_the_foreground_logging_to_stdout():
    command = twistd_command(["--name", "n1", "--in-memory"])
    assert command[0] == twistd_path()
    assert command[1:] == ["--nodaemon", "--pidfile=", "--logfile", "-", "doozer",
                           "--name", "n1", "--in-memory"]


def test_twistd_command_with_a_logger_logs_through_it_instead():
    command = twistd_command(["--in-memory"], logger="pkg.mod.observer")
    assert command[1:] == ["--nodaemon", "--pidfile=", "--logger", "pkg.mod.observer",
                           "doozer", "--in-memory"]
    node = Twistd(("--in-memory",), "/scratch", "n2", logger="pkg.mod.observer",
                  log_file="node.log")
    assert node.command() == command and node.log_path == "/scratch/node.log"


def _stopped(pid, timeout=5.0):
    """Whether ``pid`` is stopped (state T in /proc), once its state
    settles within ``timeout`` s after a signal (delivery is asynchronous);
    returns the last state seen otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/stat") as f:
            stopped = f.read().rsplit(")", 1)[1].split()[0] == "T"
        if stopped or time.monotonic() > deadline:
            return stopped
        time.sleep(0.02)


def _running(pid, timeout=5.0):
    """Whether ``pid`` runs (is not stopped) within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while _stopped(pid, timeout=0) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _stopped(pid, timeout=0)


@pytest.mark.e2e
def test_a_detached_node_is_paused_resumed_and_a_hung_one_killed(tmp_path):
    port = free_port()
    node = Twistd(("--in-memory", "--listen", endpoint(port), "--web", "none",
                   "--peer-listen", endpoint(free_port())), str(tmp_path), "n1", detach=True)
    node.launch()
    try:
        node.wait_ready(listening(port))
        assert os.getpgid(node.pid) == node.pid != os.getpgid(0)
        assert node.pause() and _stopped(node.pid)
        assert node.resume() and _running(node.pid)
        node.pause()
        assert node.reap(timeout=0.5) == -signal.SIGKILL  # stopped: it cannot end itself
        assert "--- n1 did not end within 0.5s: SIGABRT" in node.log_text()
        assert not node.running() and not node.pause() and node.exit_code() == -9
        node.launch().wait_ready(listening(port))       # the same options again
        assert node.stop() == 0 and "Main loop terminated" in node.log_text()
    finally:
        node.kill()


def test_a_node_never_launched_is_not_ready_and_stops_quietly(tmp_path):
    node = Twistd(("--in-memory",), str(tmp_path), "n1")
    assert not node.running() and node.log_text() == ""
    with pytest.raises(HarnessError, match="n1 never started"):
        node.wait_ready(lambda: True)
    assert node.stop() is None and node.kill() is None


def test_wait_until_fires_once_the_predicate_holds():
    clock, state = Clock(), {"ready": False}
    d = wait_until(lambda: state["ready"], timeout=1.0, step=0.1, clock=clock)
    fired = []
    d.addCallback(fired.append)
    clock.advance(0.5)
    assert fired == []
    state["ready"] = True
    clock.advance(0.1)
    assert fired == [None]


def test_wait_until_fails_after_the_timeout():
    clock = Clock()
    d = wait_until(lambda: False, timeout=1.0, step=0.1, clock=clock)
    errors = []
    d.addErrback(lambda f: errors.append(f.trap(AssertionError)))
    clock.pump([0.1] * 12)
    assert errors == [AssertionError]


class _NoNetwork:
    def run(self, seconds):
        raise AssertionError("a fired Deferred needs no network time")


def test_failure_returns_the_doozer_error_and_refuses_a_result():
    d = Deferred()
    d.errback(DoozerError(ErrCode.NOENT))
    assert failure(_NoNetwork(), d, 1.0).code == ErrCode.NOENT
    with pytest.raises(AssertionError, match="expected a DoozerError"):
        failure(_NoNetwork(), succeed(7), 1.0)
