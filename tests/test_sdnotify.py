"""doozertw.sdnotify against a real unix datagram socket bound in a temp dir
(and an abstract one), with task.Clock for the watchdog."""

import os
import socket
import uuid

import pytest
from twisted.internet.task import Clock

from doozertw.sdnotify import (
    MAX_STATUS, Notifier, NotifyService, socket_address, watchdog_interval)


@pytest.fixture
def listener(tmp_path):
    """(NOTIFY_SOCKET value, bound socket) for a path socket in tmp_path."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def received(sock):
    return sock.recv(4096).decode()


def nothing_waiting(sock):
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2)
    return False


def test_ready_status_and_stopping_reach_the_socket(listener):
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("node n1 serving: client port a:1")
    assert received(sock) == "READY=1\nSTATUS=node n1 serving: client port a:1"
    assert notifier.status("catching up\nwith  the leader")
    assert received(sock) == "STATUS=catching up with the leader"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1\nSTATUS=stopping"


def test_status_is_one_bounded_line(listener):
    path, sock = listener
    Notifier({"NOTIFY_SOCKET": path}).status("x" * 10_000 + "\nREADY=1")
    message = received(sock)
    assert "\n" not in message and len(message) == len("STATUS=") + MAX_STATUS


def test_abstract_socket_names(tmp_path):
    name = f"doozer-test-{uuid.uuid4().hex}"
    assert socket_address("@" + name) == b"\0" + name.encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"
    finally:
        sock.close()


def test_nothing_happens_without_notify_socket():
    clock = Clock()
    notifier = Notifier({"WATCHDOG_USEC": "1000000"}, clock=clock)
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.stopping()
    assert not notifier.start_watchdog()
    assert clock.getDelayedCalls() == [] and notifier.sent == 0


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier._failed and notifier.sent == 0


def test_watchdog_pings_every_half_interval(listener):
    path, sock = listener
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000",
                         "WATCHDOG_PID": str(os.getpid())}, clock=clock)
    assert notifier.interval == 2.0
    assert notifier.start_watchdog()
    assert received(sock) == "WATCHDOG=1"          # at once
    clock.advance(1.9)
    assert nothing_waiting(sock)
    clock.advance(0.1)
    assert received(sock) == "WATCHDOG=1"
    clock.advance(2.0)
    assert received(sock) == "WATCHDOG=1"
    notifier.stop_watchdog()
    clock.advance(10)
    assert nothing_waiting(sock)


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "3000000"}, 1.5),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, 1.5),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "43"}, None),   # another process's
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "me"}, None),
])
def test_watchdog_interval(environ, expected):
    assert watchdog_interval(environ, 42) == expected


def test_watchdog_of_another_process_is_not_started(listener):
    path, sock = listener
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                         "WATCHDOG_PID": "1"}, clock=clock, pid=2)
    assert not notifier.start_watchdog()
    assert clock.getDelayedCalls() == [] and nothing_waiting(sock)


def test_a_service_started_after_the_node_is_ready_keeps_its_status(listener):
    path, sock = listener
    svc = NotifyService(Notifier({"NOTIFY_SOCKET": path}))
    svc.serving("node n1 serving")                  # the ports listened first
    svc.startService()
    assert received(sock) == "READY=1\nSTATUS=node n1 serving"
    assert nothing_waiting(sock)


def test_service_life(listener):
    path, sock = listener
    clock = Clock()
    svc = NotifyService(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"},
                                 clock=clock))
    svc.startService()
    assert received(sock) == "STATUS=starting"
    assert received(sock) == "WATCHDOG=1"
    svc.serving("node n1 serving")
    assert received(sock) == "READY=1\nSTATUS=node n1 serving"
    svc.stopService()
    assert received(sock).startswith("STOPPING=1\nSTATUS=stopping")
    clock.advance(1.0)                              # still pinging while draining
    assert received(sock) == "WATCHDOG=1"
    svc.notifier.stop_watchdog()


@pytest.mark.e2e
def test_a_real_node_notifies_systemd(listener, tmp_path):
    from doozertw.testing.node_process import endpoint, free_ports
    from doozertw.testing.proxy import child_env
    from doozertw.testing.spawn import Twistd, listening
    path, sock = listener
    sock.settimeout(20)
    client, = free_ports(1)
    env = {**child_env(), "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    node = Twistd(("--in-memory", "--web", "none", "--listen", endpoint(client)),
                  str(tmp_path), "n1", env=env)
    node.launch()
    try:
        node.wait_ready(listening(client))
        messages = []
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(received(sock))
        ready = next(m for m in messages if m.startswith("READY=1"))
        assert "STATUS=node n1 serving: client port" in ready and str(client) in ready
        assert "STATUS=starting" not in messages[1:]   # never after READY=1
        pings = [received(sock) for _ in range(3)]    # every 0.2 s
        assert pings == ["WATCHDOG=1"] * 3
        node.terminate()
        rest = []
        while not any(m.startswith("STOPPING=1") for m in rest):
            rest.append(received(sock))
        assert node.reap() == 0
    finally:
        node.stop()
