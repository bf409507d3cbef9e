"""Real doozer servers on 127.0.0.1 ephemeral ports for the client and CLI tests.

``TcpServer`` serves one Node through the real ClientPortFactory on the
global reactor (driven by pytest-twisted); ``kill()`` stops listening and
cuts every connection, as a crashed node would. The blocking client and the
CLI run in a worker thread (``in_thread``) while the reactor serves;
``run_cli`` runs ``doozer`` in this process. Needs the test extra
(pytest-twisted).
"""

from __future__ import annotations

import io

import pytest_twisted
from twisted.internet import defer, reactor, threads

from doozertw.cli import main
from doozertw.frontends.access import Secrets
from doozertw.frontends.client_port import ClientPortFactory
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store


class TcpServer:
    """One node on a TCP port; remembers its connections so it can be killed."""

    def __init__(self, node, secrets=Secrets()):
        self.node = node
        self.connections = []
        factory = ClientPortFactory(node, secrets, Limits(), clock=reactor)
        build = factory.buildProtocol

        def remember(addr):
            protocol = build(addr)
            self.connections.append(protocol)
            return protocol

        factory.buildProtocol = remember
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.address = f"127.0.0.1:{self.port.getHost().port}"
        self.uri = f"doozer:?ca={self.address}"

    @defer.inlineCallbacks
    def kill(self):
        yield defer.maybeDeferred(self.port.stopListening)
        for protocol in self.connections:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        self.connections = []


def start_servers(count=1, history=1000, names=("n1", "n2", "n3"), secrets=Secrets()):
    """``count`` servers whose Nodes share one Store (a stand-in for replication)."""
    store = Store(history=history)
    return [TcpServer(Node(names[i], store=store), secrets) for i in range(count)]


def stop_all(servers):
    for server in servers:
        pytest_twisted.blockon(server.kill())


def in_thread(fn, *args, **kwargs):
    """Deferred result of ``fn`` run in a worker thread."""
    return threads.deferToThread(fn, *args, **kwargs)


def run_cli(argv, stdin=b"", uri=None, stdout=None):
    """Blocking: (exit status, stdout bytes, stderr text) of ``doozer argv``."""
    out = stdout if stdout is not None else io.BytesIO()
    err = io.StringIO()
    environ = {"DOOZER_URI": uri} if uri else {}
    status = main(list(argv), stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=environ)
    return status, out.getvalue(), err.getvalue()
