"""End to end: ``twistd doozer`` from the installed package, spoken to over TCP.

The node runs as a subprocess started from a scratch directory, so it
imports the installed copy of doozertw and finds the installed twistd plugin
(not the checkout): this is the path a user takes after ``pip install .``.
"""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from doozertw.client import SET, DoozerError, ErrCode, connect_blocking
from doozertw.testing.node_process import endpoint, free_ports
from doozertw.testing.spawn import listening, start_twistd, twistd_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def node_ports(scratch):
    client, web = free_ports(2)
    # os.environ as it is: from the scratch directory the node imports the
    # installed doozertw, not the checkout
    node = start_twistd(["--name", "e2e", "--listen", endpoint(client), "--web", endpoint(web)],
                        scratch, listening(client), listening(web), env=os.environ)
    with node:
        yield client, web


def test_twistd_help_from_installed_package(scratch):
    out = subprocess.run(twistd_command(["--help"]), cwd=scratch,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--name", "--listen", "--web", "--peer-listen", "--config", "--history"):
        assert option in out.stdout


def test_installed_copy_is_used(scratch):
    code = "import doozertw, sys; print(doozertw.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=scratch,
                           capture_output=True, text=True, check=True).stdout
    assert "site-packages" in where, where


def _doozer(port):
    """doozertw's own blocking client, on one node, failing fast."""
    return connect_blocking(f"127.0.0.1:{port}", connect_timeout=10, suspend_timeout=0.0)


def _text_exchange(port, send, until, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(send)
        data = b""
        deadline = time.monotonic() + timeout
        while until not in data and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_text_protocol_set_and_get(node_ports):
    client, _ = node_ports
    reply = _text_exchange(client, b"set /message hello, world\r\nget /message\r\n",
                           until=b"hello, world\r\n")
    assert reply.startswith(b"OK"), reply
    assert b"hello, world\r\n" in reply


def test_doozer_protocol_set_get_find_and_wait(node_ports):
    client, _ = node_ports
    d = _doozer(client)
    rev = d.set("/e2e/a/b", 0, b"1")
    assert rev > 0
    assert d.get("/e2e/a/b") == (b"1", rev)
    with pytest.raises(DoozerError) as refused:
        d.set("/e2e/a/b", 0, b"2")
    assert refused.value.code == ErrCode.REV_MISMATCH
    at = d.rev()
    assert d.getdir("/e2e", rev=at, offset=0) == "a"
    assert d.stat("/e2e/a", rev=at) == (1, -2)
    assert d.self_id() == "e2e"
    assert d.get("/ctl/node/e2e/addr")[0].endswith(str(client).encode())

    with _doozer(client) as watcher, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(watcher.wait, "/e2e/**", at + 1, 10)
        time.sleep(0.2)     # let the WAIT reach the node before the change
        new_rev = d.set("/e2e/c", -1, b"ping")
        event = waiting.result(timeout=15)
    assert (event.path, event.value, event.rev, event.kind) == ("/e2e/c", b"ping", new_rev, SET)
    d.close()


def test_garbage_gets_errors_and_node_keeps_serving(node_ports):
    client, _ = node_ports
    reply = _text_exchange(client, b"frobnicate /x\r\nget bad path\r\n", until=b"ERR BAD_PATH")
    assert b"ERR UNKNOWN_VERB" in reply and b"ERR BAD_PATH" in reply
    with socket.create_connection(("127.0.0.1", client), timeout=10) as s:
        s.sendall(b"\x00\xff\xff\xff" + os.urandom(64))  # a frame far over the limit
        s.settimeout(10)
        assert s.recv(100) == b""  # framing violation: disconnected
    with _doozer(client) as d:
        assert d.set("/e2e/after", -1, b"ok") > 0
        assert d.get("/e2e/after")[0] == b"ok"


def test_web_port_serves_the_view(node_ports):
    _, web = node_ports
    with socket.create_connection(("127.0.0.1", web), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost:%d\r\n\r\n" % web)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"<html" in data.lower()


def test_commands_piped_into_a_half_closing_client_are_answered(node_ports):
    """``printf 'set ...\\nget ...\\n' | nc host 8046``: nc half-closes after its input."""
    client, _ = node_ports
    with socket.create_connection(("127.0.0.1", client), timeout=10) as s:
        s.sendall(b"set /piped yes\nget /piped\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"OK REV ") and data.endswith(b"yes\r\n"), data
