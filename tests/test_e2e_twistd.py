"""End to end: ``twistd doozer`` from the installed package, spoken to over TCP.

The node runs as a subprocess started from a scratch directory, so it
imports the installed copy of doozertw and finds the installed twistd plugin
(not the checkout): this is the path a user takes after ``pip install .``.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from doozertw.frontends.msg import LENGTH, VERBS, Request, Response, frame

pytestmark = pytest.mark.e2e

BIN = os.path.dirname(sys.executable)


def _twistd():
    path = shutil.which("twistd", path=BIN)
    assert path, f"twistd not found next to {sys.executable}; run ./test.sh"
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port, proc, log, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"twistd exited {proc.returncode}:\n{log.read_text()}")
            time.sleep(0.1)
    raise AssertionError(f"node never listened on {port}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def node_ports(scratch):
    client, web = _free_port(), _free_port()
    log = scratch / "node.log"
    proc = subprocess.Popen(
        [_twistd(), "--nodaemon", "--pidfile=", "--logfile", str(log), "doozer",
         "--name", "e2e", "--listen", f"tcp:{client}:interface=127.0.0.1",
         "--web", f"tcp:{web}:interface=127.0.0.1"],
        cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_listening(client, proc, log)
        _wait_listening(web, proc, log)
        yield client, web
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_twistd_help_from_installed_package(scratch):
    out = subprocess.run([_twistd(), "doozer", "--help"], cwd=scratch,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--name", "--listen", "--web", "--peer-listen", "--config", "--history"):
        assert option in out.stdout


def test_installed_copy_is_used(scratch):
    code = "import doozertw, sys; print(doozertw.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=scratch,
                           capture_output=True, text=True, check=True).stdout
    assert "site-packages" in where, where


class Doozer:
    """A minimal synchronous doozer-protocol speaker for the test."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tag = 0

    def call(self, verb, **fields):
        self.tag += 1
        self.sock.sendall(frame(Request(tag=self.tag, verb=VERBS[verb], **fields)))
        resp = self.read()
        assert resp.tag == self.tag
        return resp

    def read(self):
        size = LENGTH.unpack(self._exactly(4))[0]
        return Response.FromString(self._exactly(size))

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data


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
    d = Doozer(client)
    rev = d.call("SET", path="/e2e/a/b", value=b"1", rev=0).rev
    assert rev > 0
    got = d.call("GET", path="/e2e/a/b")
    assert (got.value, got.rev) == (b"1", rev)
    assert d.call("SET", path="/e2e/a/b", value=b"2", rev=0).err_code == 5  # REV_MISMATCH
    at = d.call("REV").rev
    assert d.call("GETDIR", path="/e2e", rev=at, offset=0).path == "a"
    stat = d.call("STAT", path="/e2e/a", rev=at)
    assert (stat.len, stat.rev) == (1, -2)
    assert d.call("SELF").value == b"e2e"
    assert d.call("GET", path="/ctl/node/e2e/addr").value.endswith(str(client).encode())

    watcher = Doozer(client)
    watcher.tag += 1
    watcher.sock.sendall(frame(Request(tag=watcher.tag, verb=VERBS["WAIT"],
                                       path="/e2e/**", rev=at + 1)))
    new_rev = d.call("SET", path="/e2e/c", value=b"ping", rev=-1).rev
    event = watcher.read()
    assert (event.path, event.value, event.rev, event.flags) == ("/e2e/c", b"ping", new_rev, 4)


def test_garbage_gets_errors_and_node_keeps_serving(node_ports):
    client, _ = node_ports
    reply = _text_exchange(client, b"frobnicate /x\r\nget bad path\r\n", until=b"ERR BAD_PATH")
    assert b"ERR UNKNOWN_VERB" in reply and b"ERR BAD_PATH" in reply
    with socket.create_connection(("127.0.0.1", client), timeout=10) as s:
        s.sendall(b"\x00\xff\xff\xff" + os.urandom(64))  # a frame far over the limit
        s.settimeout(10)
        assert s.recv(100) == b""  # framing violation: disconnected
    d = Doozer(client)
    assert d.call("SET", path="/e2e/after", value=b"ok", rev=-1).rev > 0
    assert d.call("GET", path="/e2e/after").value == b"ok"


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
