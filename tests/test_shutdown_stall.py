"""A node's exit is not held up by a host name lookup that blocks.

The stall it guards against (docs/deployment.md): in a compose network a
node dials its peers by name; once a peer's container is gone, its name
is forwarded to an upstream DNS server that cannot be reached, and
``getaddrinfo`` blocks about 30 s. Twisted ran it in the reactor's thread
pool, which the reactor joins at shutdown: the node's ports and links
closed at once on SIGTERM, but "Main loop terminated" came 30-40 s later
(a py-spy dump: the main thread in ThreadPool.stop -> Thread.join, pool
threads in getaddrinfo). doozertw.peer.resolver.DaemonResolver runs each
lookup on an unjoined daemon thread, bounded and shared per name.

Unit tests drive the resolver with fake threads and a fake reactor;
marked e2e, a real reactor in a child process (with and without the
resolver: the control shows the stall is real) and a real twistd node
whose peer's name never resolves (a sitecustomize on the child's
PYTHONPATH makes getaddrinfo block for ``*.stall.invalid``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactor

from doozertw.peer.resolver import DaemonResolver, install_daemon_resolver


class Receiver:
    """An IResolutionReceiver that records what it is told."""

    def __init__(self):
        self.began = None
        self.addresses = []
        self.complete = False

    def resolutionBegan(self, resolution):
        self.began = resolution

    def addressResolved(self, address):
        self.addresses.append(address)

    def resolutionComplete(self):
        self.complete = True


class Threads:
    """``start_thread`` that keeps the targets for the test to run."""

    def __init__(self):
        self.started = []

    def __call__(self, target, name):
        self.started.append((target, name))

    def run(self, index=0):
        target, _ = self.started.pop(index)
        target()


class FromThreads:
    """callFromThread queued for the test to run in "the reactor thread";
    no getThreadPool: the resolver must never touch the reactor's pool."""

    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))

    def run_calls(self):
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)


def answers(*hosts):
    def getaddrinfo(host, port, family, socktype):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in hosts]
    return getaddrinfo


def make(getaddrinfo=None, max_lookups=4):
    threads, reactor = Threads(), FromThreads()
    resolver = DaemonResolver(reactor, max_lookups,
                              getaddrinfo=getaddrinfo or answers("10.0.0.2"),
                              start_thread=threads)
    return resolver, threads, reactor


def test_a_lookup_runs_on_its_own_thread_and_answers_in_the_reactor_thread():
    resolver, threads, reactor = make()
    receiver = Receiver()
    resolution = resolver.resolveHostName(receiver, "n2", 7046, [IPv4Address])
    assert receiver.began is resolution and resolution.name == "n2"
    assert len(threads.started) == 1 and not receiver.complete
    threads.run()
    assert not receiver.complete          # not from the lookup's thread
    reactor.run_calls()
    assert receiver.addresses == [IPv4Address("TCP", "10.0.0.2", 7046)]
    assert receiver.complete and resolver.in_flight == 0


def test_ipv6_answers_and_a_failed_lookup():
    def getaddrinfo(host, port, family, socktype):
        if host == "bad":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::2", port, 0, 0))]
    resolver, threads, reactor = make(getaddrinfo)
    six, bad = Receiver(), Receiver()
    resolver.resolveHostName(six, "n2", 1)
    resolver.resolveHostName(bad, "bad", 1)
    threads.run()
    threads.run()
    reactor.run_calls()
    assert six.addresses == [IPv6Address("TCP", "fd00::2", 1, 0, 0)]
    assert bad.complete and bad.addresses == []


def test_requests_for_a_name_being_looked_up_share_one_thread():
    resolver, threads, reactor = make()
    first, second = Receiver(), Receiver()
    resolver.resolveHostName(first, "n2", 7046, [IPv4Address])
    resolver.resolveHostName(second, "n2", 7046, [IPv4Address])
    assert len(threads.started) == 1 and resolver.in_flight == 1
    threads.run()
    reactor.run_calls()
    assert first.complete and second.complete
    assert first.addresses == second.addresses != []


def test_lookups_in_flight_are_bounded_the_rest_fail_at_once():
    """An attack: peer entries naming many hosts whose lookups hang must not
    start a thread each."""
    resolver, threads, reactor = make(max_lookups=3)
    receivers = [Receiver() for _ in range(10)]
    for i, receiver in enumerate(receivers):
        resolver.resolveHostName(receiver, f"h{i}.example", 1)
    assert len(threads.started) == 3 and resolver.in_flight == 3
    assert resolver.refused == 7
    assert all(r.complete and r.addresses == [] for r in receivers[3:])
    assert not any(r.complete for r in receivers[:3])
    threads.run()
    reactor.run_calls()
    resolver.resolveHostName(Receiver(), "h99.example", 1)   # room again
    assert len(threads.started) == 3


def test_a_cancelled_request_is_never_answered():
    resolver, threads, reactor = make()
    kept, cancelled = Receiver(), Receiver()
    resolver.resolveHostName(kept, "n2", 1)
    resolver.resolveHostName(cancelled, "n2", 1).cancel()
    threads.run()
    reactor.run_calls()
    assert kept.complete and not cancelled.complete and cancelled.addresses == []


def test_an_answer_after_the_reactor_is_gone_is_dropped_quietly():
    class Gone:
        def callFromThread(self, f, *args):
            raise RuntimeError("reactor stopped")
    threads = Threads()
    resolver = DaemonResolver(Gone(), getaddrinfo=answers("10.0.0.2"), start_thread=threads)
    resolver.resolveHostName(Receiver(), "n2", 1)
    threads.run()                          # no exception escapes the thread


def test_the_default_thread_is_a_daemon_and_blocks_nothing():
    """A real lookup thread blocked in getaddrinfo: a daemon (the interpreter
    does not wait for it at exit) and not in the reactor's pool (FromThreads
    has none), so neither Twisted nor Python joins it."""
    release = threading.Event()
    entered = threading.Event()

    def blocking(host, port, family, socktype):
        entered.set()
        release.wait(10)
        return []
    reactor = FromThreads()
    resolver = DaemonResolver(reactor, getaddrinfo=blocking)
    receiver = Receiver()
    resolver.resolveHostName(receiver, "stuck.invalid", 1)
    assert entered.wait(5)
    lookups = [t for t in threading.enumerate() if t.name.startswith("doozer-resolve-")]
    try:
        assert lookups and all(t.daemon for t in lookups)
        assert not receiver.complete
    finally:
        release.set()
        for t in lookups:
            t.join(5)
    reactor.run_calls()
    assert receiver.complete


def test_install_makes_it_the_reactors_name_resolver():
    reactor = MemoryReactor()
    resolver = install_daemon_resolver(reactor, max_lookups=5)
    assert isinstance(resolver, DaemonResolver) and resolver.max_lookups == 5
    assert reactor.nameResolver is resolver
    assert install_daemon_resolver(object()) is None
    with pytest.raises(ValueError):
        DaemonResolver(reactor, max_lookups=0)


# -- real processes ------------------------------------------------------------------------

# a child's sitecustomize: getaddrinfo blocks for ever on *.stall.invalid
BLOCKING_DNS = textwrap.dedent('''
    import _socket, threading
    _real, _never = _socket.getaddrinfo, threading.Event()
    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".stall.invalid"):
            _never.wait()
        return _real(host, *args, **kwargs)
    _socket.getaddrinfo = getaddrinfo
''')

# a real reactor and PeerTransport dialing a peer whose name never resolves;
# argv[1] == "fixed": with the node's resolver installed
DIAL_AND_STOP = textwrap.dedent('''
    import sys, time
    from twisted.internet import reactor
    from doozertw.peer.resolver import install_daemon_resolver
    from doozertw.peer.transport import PeerTransport
    if sys.argv[1] == "fixed":
        install_daemon_resolver(reactor)
    transport = PeerTransport("a", "c", {"b": "tcp:host=b.stall.invalid:port=7046"},
                              on_message=lambda *a: None, reactor=reactor)
    def stop():
        assert transport.link_state("b").value == "connecting"
        transport.stop().addBoth(lambda _: reactor.stop())
    reactor.callLater(0.3, stop)
    reactor.run()
    print("main loop ended", flush=True)
''')


def _child_env(tmp_path):
    from doozertw.testing.proxy import child_env
    (tmp_path / "sitecustomize.py").write_text(BLOCKING_DNS)
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return env


@pytest.mark.e2e
@pytest.mark.parametrize("resolver", ["fixed", "twisted-default"])
def test_a_reactor_stops_at_once_with_a_lookup_blocked(tmp_path, resolver):
    (tmp_path / "dial.py").write_text(DIAL_AND_STOP)
    began = time.monotonic()
    child = subprocess.Popen([sys.executable, str(tmp_path / "dial.py"), resolver],
                             env=_child_env(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = child.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
    took = time.monotonic() - began
    if resolver == "fixed":
        assert child.returncode == 0 and "main loop ended" in out, out
        assert took < 3, took
    else:   # the control: Twisted's own resolver holds the exit (the bug)
        assert child.returncode != 0 and "main loop ended" not in out, out


@pytest.mark.e2e
def test_a_node_whose_peer_name_never_resolves_exits_at_once_on_sigterm(tmp_path):
    from doozertw.testing.node_process import endpoint, free_ports
    from doozertw.testing.spawn import listening, start_twistd
    client, web, peer = free_ports(3)
    (tmp_path / "c.yaml").write_text(
        "cluster: t\ninsecure_peers: true\nnodes:\n"
        f"  n1: {{listen: '{endpoint(client)}', web: '{endpoint(web)}', "
        f"peer_listen: '{endpoint(peer)}'}}\n"
        "  n2: {peer_listen: 'tcp:host=n2.stall.invalid:port=7046'}\n")
    node = start_twistd(["--config", "c.yaml", "--name", "n1", "--in-memory"], tmp_path,
                        listening(client), name="n1", env=_child_env(tmp_path))
    try:
        time.sleep(0.5)                      # n1 dials n2: the lookup blocks
        began = time.monotonic()
        node.terminate()
        code = node.reap(timeout=10)
        took = time.monotonic() - began
        log = node.log_text()
        assert code == 0, log[-3000:]
        assert took < 5, (took, log[-3000:])
        assert "n1 -> n2: connecting -> stopped" in log, log[-3000:]
    finally:
        node.stop()
