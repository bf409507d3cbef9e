"""Sessions (doozertw.client.session): a lease kept alive in the background.

- ``SessionCore``, the pure state machine, fed times by hand;
- the Twisted ``Session`` in memory (iosim pumps on a task.Clock, real
  DoozerProtocols and a real Node whose lease clock is the same Clock), so
  keep-alives, failover between two addresses and expiry are
  deterministic;
- the ``BlockingSession`` over TCP against an in-process server
  (doozertw.testing.servers), whose keep-alive thread has its own
  connection.
"""

import threading
import time

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from doozertw.client import BlockingClient, DoozerClient, DoozerError, ErrCode
from doozertw.client.session import (
    BlockingSession, Session, SessionCore, SessionLost, SessionState, lease_of_name)
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.memclient import MemNet, settle
from doozertw.testing.servers import in_thread, start_servers, stop_all

A, B = "10.0.0.1:8046", "10.0.0.2:8046"
C, S, L = SessionState.CONNECTED, SessionState.SUSPENDED, SessionState.LOST


# -- the pure state machine ----------------------------------------------------------


def test_core_walks_through_the_states():
    core = SessionCore(9.0)
    assert core.period == 3.0
    assert core.granted(7, sent=100.0) == C and core.lease == 7
    assert core.kept(sent=103.0, now=103.1) is None        # still connected
    assert core.failed(DoozerError(ErrCode.OTHER, "no leader"), now=106.0) == S
    assert core.check(now=111.9) is None                  # 8.9 s since the last success
    assert core.kept(sent=111.0, now=111.5) == C           # back: countdown from 111
    assert core.check(now=119.9) is None
    assert core.check(now=120.0) == L and core.over
    assert core.kept(sent=120.0, now=120.1) is None        # a lost session stays lost
    with pytest.raises(SessionLost):
        core.ensure_alive()
    assert core.closed() == SessionState.CLOSED


def test_core_noent_is_lost_at_once_and_late_answers_count_from_the_send():
    core = SessionCore(6.0)
    core.granted(1, sent=0.0)
    assert core.failed(DoozerError(ErrCode.NOENT, "lease 1"), now=1.0) == L
    core = SessionCore(6.0)
    core.granted(1, sent=0.0)
    # an answer that comes after the ttl proves nothing about the lease now
    assert core.kept(sent=1.0, now=7.5) == L
    core = SessionCore(6.0)
    core.granted(1, sent=0.0)
    assert core.check(now=2.5, outstanding_since=0.4) == S   # unanswered for over a period


def test_core_takes_the_ttl_the_server_granted():
    core = SessionCore(1.0)
    core.granted(4, sent=0.0, ttl=3)        # a cluster's minimum ttl is longer
    assert core.ttl == 3.0 and core.period == 1.0
    assert core.check(now=2.9) is None and core.check(now=3.0) == L


def test_core_refuses_use_before_start():
    with pytest.raises(SessionLost):
        SessionCore(5.0).ensure_alive()


def test_unique_names_carry_the_lease():
    assert lease_of_name("/locks/a/123-4") == 123
    assert lease_of_name("123-4-w") == 123
    assert lease_of_name("x-4") == 0 and lease_of_name("9" * 30 + "-1") == 0


# -- the Twisted session in memory ---------------------------------------------------


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def node(clock):
    return Node("a", store=Store(), reactor=clock)


@pytest.fixture
def net(clock, node):
    net = MemNet(clock)
    net.servers[A] = net.servers[B] = node      # one node reachable at two addresses
    return net


def started(net, clock, ttl=6, suspend_timeout=30.0):
    client = DoozerClient([A, B], reactor=clock, connector=net.connector,
                          suspend_timeout=suspend_timeout, retry_delay=0.1)
    session = Session(client, ttl=ttl, reactor=clock)
    states = []
    session.add_listener(states.append)
    settle(net, session.start())
    return client, session, states


def test_session_keeps_its_lease_alive_and_close_revokes_it(net, clock, node):
    client, session, states = started(net, clock)
    assert states == [C] and session.lease in node.store.leases
    rev = settle(net, session.create_ephemeral("/svc/me", b"up"))
    with pytest.raises(DoozerError) as exists:
        settle(net, session.create_ephemeral("/svc/me", b"again"))
    assert exists.value.code == ErrCode.REV_MISMATCH
    assert settle(net, session.set_ephemeral("/svc/me", b"still")) > rev
    net.run(60)                                  # ten ttls: kept alive all along
    assert states == [C]
    assert node.store.get("/svc/me")[0] == b"still"
    assert node.lease_of("/svc/me") == session.lease
    settle(net, session.close())
    settle(net, session.close())                 # twice: nothing more happens
    assert states == [C, SessionState.CLOSED]
    assert session.lease not in node.store.leases and node.store.get("/svc/me")[1] == 0
    net.run(10)
    assert states == [C, SessionState.CLOSED]    # no keep-alives after close
    with pytest.raises(SessionLost):
        settle(net, session.set_ephemeral("/svc/me", b"late"))


def test_close_stops_listening_to_the_client_through_its_public_api(net, clock, node):
    client, session, states = started(net, clock)
    removed = []
    real_remove = client.remove_listener

    def remove_listener(listener):
        removed.append(listener)
        real_remove(listener)

    client.remove_listener = remove_listener
    settle(net, session.close())
    settle(net, session.close())                 # removing it again is harmless
    assert removed == [session._client_state] * 2
    net.kill(A)                                  # the client fails over: nothing heard
    net.run(5)
    assert states == [C, SessionState.CLOSED]


def test_session_survives_a_failover_to_another_address(net, clock, node):
    client, session, states = started(net, clock)
    settle(net, session.set_ephemeral("/svc/me", b"up"))
    net.run(1)
    net.kill(A)                     # the client moves to B (the same node)
    net.run(20)
    assert states == [C, S, C]
    assert client.address is not None and str(client.address) == B
    assert session.lease in node.store.leases and node.store.get("/svc/me")[0] == b"up"


def test_session_is_lost_once_the_ttl_passes_without_a_keepalive(net, clock, node):
    client, session, states = started(net, clock, ttl=6)
    settle(net, session.set_ephemeral("/svc/me", b"up"))
    lease = session.lease
    net.down.add(B)
    net.kill(A)
    net.run(3)
    assert states == [C, S]         # suspended: the lease may still be alive
    net.run(3.5)
    assert states == [C, S, L]      # ttl passed since the last keep-alive was sent
    with pytest.raises(SessionLost):
        settle(net, session.create_ephemeral("/svc/x", b""))
    net.down.clear()                # the servers come back: no new lease is made
    net.run(10)
    assert states == [C, S, L]
    assert lease not in node.store.leases and len(node.store.leases) == 0
    assert node.store.get("/svc/me")[1] == 0


def test_session_is_lost_when_its_lease_is_revoked_elsewhere(net, clock, node):
    client, session, states = started(net, clock, ttl=6)
    settle(net, session.set_ephemeral("/svc/me", b"up"))
    other = DoozerClient([A], reactor=clock, connector=net.connector)
    settle(net, other.revoke_lease(session.lease))
    net.run(2.5)                    # the next keep-alive answers NOENT
    assert states == [C, L]
    settle(net, session.close())    # closing a lost session revokes nothing
    assert states == [C, L, SessionState.CLOSED]


def test_a_listener_that_raises_does_not_stop_the_session(net, clock, node):
    client, session, states = started(net, clock)

    def broken(state):
        raise RuntimeError("listener bug")

    session.add_listener(broken)
    net.kill(A)
    net.run(10)
    assert states == [C, S, C] and session.lease in node.store.leases


# -- the blocking session over TCP -------------------------------------------------------


@pytest.fixture
def server():
    servers = start_servers(1)
    yield servers[0]
    stop_all(servers)


@pytest_twisted.inlineCallbacks
def test_blocking_session_keeps_alive_from_its_own_thread(server):
    def script():
        client = BlockingClient(server.address, suspend_timeout=2.0)
        states = []
        session = BlockingSession(client, ttl=1)
        session.add_listener(states.append)
        with session:
            session.create_ephemeral("/svc/b", b"up")
            time.sleep(2.5)            # over two ttls
            alive = client.get("/svc/b")[0]
            lease = session.lease
            names = {t.name for t in threading.enumerate()}
        after = client.get("/svc/b")
        leases = [x.id for x in client.leases()]
        client.close()
        return states, alive, lease, names, after, leases

    states, alive, lease, names, after, leases = yield in_thread(script)
    assert alive == b"up" and f"doozer-session-{lease}" in names
    assert states == [C, SessionState.CLOSED]
    assert after == (b"", 0) and lease not in leases


@pytest_twisted.inlineCallbacks
def test_blocking_session_reports_a_revoked_lease_lost(server):
    def script():
        client = BlockingClient(server.address, suspend_timeout=2.0)
        lost = threading.Event()
        session = BlockingSession(client, ttl=2)
        session.add_listener(lambda s: s == L and lost.set())
        session.start()
        session.create_ephemeral("/svc/c", b"up")
        client.revoke_lease(session.lease)
        heard = lost.wait(5.0)
        try:
            session.set_ephemeral("/svc/c", b"again")
            refused = False
        except SessionLost:
            refused = True
        session.close()
        leases = client.leases()
        client.close()
        return heard, refused, leases

    heard, refused, leases = yield in_thread(script)
    assert heard and refused and leases == []
