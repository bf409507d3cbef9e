"""Real doozer servers on 127.0.0.1 ephemeral ports (doozertw.testing.servers):
a killed server refuses new connections and cuts the ones it had."""

import pytest_twisted

from doozertw.testing.servers import in_thread, start_servers


@pytest_twisted.inlineCallbacks
def test_killed_server_refuses_and_cuts_connections():
    import socket

    (server,) = start_servers(1)
    host, port = server.address.split(":")

    def probe():
        s = socket.create_connection((host, int(port)), timeout=2)
        return s

    sock = yield in_thread(probe)
    yield server.kill()

    def after():
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        sock.close()
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        return closed, refused

    closed, refused = yield in_thread(after)
    assert closed and refused
