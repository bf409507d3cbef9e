"""Outbound links: dialing, handshake, reconnection with backoff, queues.

All on MemoryReactorClock and StringTransport: no sockets, no real time.
"""

import random

import pytest
from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogPublisher

from doozertw.peer import LinkState, PayloadTooLarge, PeerLimits
from doozertw.peer.framing import FrameKind, encode_frame
from doozertw.testing.peerhub import Hub, connect_pending, endpoint_for


@pytest.fixture
def events():
    captured = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


def state(hub, peer="b"):
    return hub.transport.link_state(peer)


def retry_delay(hub):
    """Seconds until the pending reconnection attempt."""
    calls = [c for c in hub.reactor.getDelayedCalls()
             if getattr(c.func, "__name__", "") == "_dial"]
    assert len(calls) == 1
    return calls[0].getTime() - hub.reactor.seconds()


def test_link_dials_its_peer_at_once():
    a = Hub("a", {"b": endpoint_for(7002)})
    assert a.dials() == [("127.0.0.1", 7002)]
    assert state(a) is LinkState.CONNECTING


def test_handshake_brings_the_link_up_and_flushes_the_queue_in_order():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    for i in range(5):
        assert a.transport.send("b", b"m%d" % i) is True
    assert a.transport.stats()["b"].queued_messages == 5
    connect_pending(a, b)
    assert state(a) is LinkState.UP
    assert b.received == [("a", b"m%d" % i) for i in range(5)]
    stats = a.transport.stats()["b"]
    assert (stats.queued_messages, stats.sent_messages, stats.connects) == (0, 5, 1)
    assert b.transport.stats()["a"].received_messages == 5
    assert b.transport.stats()["a"].inbound is True


def test_refused_dials_back_off_exponentially_with_jitter_up_to_the_cap():
    a = Hub("a", {"b": endpoint_for(7002)})
    delays = []
    for attempt in range(10):
        a.refuse_pending()
        assert state(a) is LinkState.BACKING_OFF
        delay = retry_delay(a)
        delays.append(delay)
        base = min(2.0, 0.05 * 2 ** attempt)
        assert base / 2 <= delay <= base
        a.reactor.advance(delay - 0.001)
        assert len(a.dials()) == attempt + 1      # not yet
        a.reactor.advance(0.001)
        assert len(a.dials()) == attempt + 2      # redialed
        assert state(a) is LinkState.CONNECTING
    assert max(delays) <= 2.0 and delays[-1] >= 1.0
    assert a.transport.stats()["b"].failures == 10


def test_lost_connection_reconnects_and_backoff_restarts_after_success():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    for _ in range(4):                      # drive the backoff up
        a.refuse_pending()
        a.reactor.advance(retry_delay(a))
    pair = connect_pending(a, b)
    assert state(a) is LinkState.UP
    pair.lose(ConnectionDone())
    assert state(a) is LinkState.BACKING_OFF
    assert retry_delay(a) <= 0.05            # reset by the successful handshake
    assert "a" not in b.transport.inbound
    a.reactor.advance(retry_delay(a))
    a.transport.send("b", b"after")
    connect_pending(a, b)
    assert b.received == [("a", b"after")]
    assert a.transport.stats()["b"].connects == 2


def test_messages_queued_while_down_are_sent_when_link_returns():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b)
    a.transport.send("b", b"one")
    pair.pump()
    pair.lose()
    a.transport.send("b", b"two")
    a.transport.send("b", b"three")
    a.reactor.advance(retry_delay(a))
    connect_pending(a, b)
    assert [p for _, p in b.received] == [b"one", b"two", b"three"]


def test_connect_timeout_abandons_the_dial():
    a = Hub("a", {"b": endpoint_for(7002)})
    a.reactor.advance(4.9)
    assert state(a) is LinkState.CONNECTING
    a.reactor.advance(0.2)
    assert state(a) is LinkState.BACKING_OFF
    assert "connect failed" in a.transport.links["b"].last_failure


def test_handshake_timeout_on_the_dialer_side():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b, pump=False)   # acceptor never hears HELLO
    assert state(a) is LinkState.HANDSHAKING
    a.reactor.advance(5.0)
    assert pair.ct.disconnected
    pair.client.connectionLost(None)
    assert state(a) is LinkState.BACKING_OFF


def test_send_queue_bound_drops_oldest_while_link_is_down():
    a = Hub("a", {"b": endpoint_for(7002)},
            limits=PeerLimits(max_queue_messages=3, max_queue_bytes=1000))
    b = Hub("b")
    for i in range(5):
        a.transport.send("b", b"%d" % i)
    stats = a.transport.stats()["b"]
    assert (stats.queued_messages, stats.queued_bytes, stats.dropped) == (3, 3, 2)
    connect_pending(a, b)
    assert [p for _, p in b.received] == [b"2", b"3", b"4"]


def test_send_queue_byte_bound():
    a = Hub("a", {"b": endpoint_for(7002)},
            limits=PeerLimits(max_queue_messages=100, max_queue_bytes=10))
    a.transport.send("b", b"12345")
    a.transport.send("b", b"67890")
    a.transport.send("b", b"abc")
    stats = a.transport.stats()["b"]
    assert (stats.queued_messages, stats.queued_bytes, stats.dropped) == (2, 8, 1)


def test_backpressure_keeps_payloads_queued_until_transport_resumes():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b)
    assert pair.ct.producer is not None        # registered as push producer
    proto = a.transport.links["b"].protocol
    proto.pauseProducing()
    a.transport.send("b", b"x")
    a.transport.send("b", b"y")
    pair.pump()
    assert b.received == []
    assert a.transport.stats()["b"].queued_messages == 2
    proto.resumeProducing()
    pair.pump()
    assert [p for _, p in b.received] == [b"x", b"y"]


def test_ping_measures_round_trip_time():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b)
    assert a.transport.stats()["b"].rtt is None
    a.reactor.advance(0.5)                     # ping sent
    a.reactor.advance(0.125)                   # time passes in flight
    pair.pump()
    assert a.transport.stats()["b"].rtt == pytest.approx(0.125)


def test_link_stays_up_while_pings_flow_and_dies_when_the_peer_is_silent():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b)
    for _ in range(20):                        # 10 s of healthy traffic
        a.reactor.advance(0.5)
        b.reactor.advance(0.5)
        pair.pump()
    assert state(a) is LinkState.UP and not pair.st.disconnected
    a.reactor.advance(3.0)                     # pongs stop arriving
    assert pair.ct.disconnected
    b.reactor.advance(3.0)                     # pings stop arriving
    assert pair.st.disconnected
    pair.lose()
    assert state(a) is LinkState.BACKING_OFF


def test_cluster_name_mismatch_is_refused_and_logged(events):
    a = Hub("a", {"b": endpoint_for(7002)}, cluster="staging")
    b = Hub("b", cluster="prod")
    a.transport.send("b", b"secret")
    pair = connect_pending(a, b)
    assert pair.st.disconnecting                # acceptor closed after REFUSE
    assert pair.ct.disconnected                 # dialer aborted on REFUSE
    pair.lose()
    assert state(a) is LinkState.BACKING_OFF
    assert "WRONG_CLUSTER" in a.transport.links["b"].last_failure
    assert b.received == [] and b.transport.inbound == {}
    refused = [e for e in events if e.get("code") == "WRONG_CLUSTER"]
    assert refused and refused[0]["peer"] == "a"
    assert refused[0]["peer_cluster"] == "staging"


def test_dialing_the_wrong_node_is_refused():
    a = Hub("a", {"b": endpoint_for(7002)})
    c = Hub("c")                                # the address leads to c
    pair = connect_pending(a, c)
    pair.lose()
    assert "WRONG_NODE" in a.transport.links["b"].last_failure
    assert c.received == []


def test_stop_closes_links_and_cancels_retries():
    a = Hub("a", {"b": endpoint_for(7002), "c": endpoint_for(7003)})
    b = Hub("b")
    pair = connect_pending(a, b, index=0)
    a.refuse_pending(index=1)
    d = a.transport.stop()
    assert pair.ct.disconnected
    fired = []
    d.addCallback(fired.append)
    assert fired == []                          # waits for the close
    pair.lose()
    assert fired
    assert state(a, "b") is LinkState.STOPPED
    assert state(a, "c") is LinkState.STOPPED
    a.reactor.advance(10)
    assert len(a.dials()) == 2                  # no redial after stop
    assert a.reactor.getDelayedCalls() == []


def test_stop_while_connecting_cancels_the_dial():
    a = Hub("a", {"b": endpoint_for(7002)})
    a.transport.stop()
    assert state(a) is LinkState.STOPPED
    assert a.reactor.connectors[0].stoppedConnecting
    a.reactor.advance(10)
    assert len(a.dials()) == 1


def test_add_and_remove_peer_at_runtime():
    a = Hub("a")
    a.transport.add_peer("b", endpoint_for(7002))
    assert a.dials() == [("127.0.0.1", 7002)]
    a.transport.add_peer("b", endpoint_for(7002))          # unchanged: no-op
    assert len(a.dials()) == 1
    a.transport.add_peer("b", endpoint_for(7012))          # moved: redial
    assert a.dials()[-1] == ("127.0.0.1", 7012)
    a.transport.send("b", b"x")
    a.transport.remove_peer("b")
    assert "b" not in a.transport.stats()
    assert a.transport.send("b", b"y") is False
    assert a.transport.unknown_dropped == 1
    with pytest.raises(ValueError):
        a.transport.add_peer("a", endpoint_for(7001))


def test_remove_peer_closes_its_live_connection():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b)
    a.transport.remove_peer("b")
    assert pair.ct.disconnected
    pair.lose()
    a.reactor.advance(10)
    assert len(a.dials()) == 1                  # a removed peer is not redialed
    assert b.received == []


def test_payload_too_large_is_refused_synchronously():
    a = Hub("a", {"b": endpoint_for(7002)}, limits=PeerLimits(max_frame=100))
    a.transport.send("b", b"x" * 99)
    with pytest.raises(PayloadTooLarge):
        a.transport.send("b", b"x" * 100)


def test_on_message_errors_are_logged_and_do_not_break_the_link(events):
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    got = []

    def flaky(sender, payload):
        got.append(payload)
        if payload == b"boom":
            raise RuntimeError("handler bug")
    b.transport.on_message = flaky
    pair = connect_pending(a, b)
    for p in (b"ok1", b"boom", b"ok2"):
        a.transport.send("b", p)
    pair.pump()
    assert got == [b"ok1", b"boom", b"ok2"]
    assert not pair.st.disconnected
    assert any(e.get("log_failure") for e in events)


def test_dialer_rejects_data_frames_from_the_acceptor():
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    pair = connect_pending(a, b)
    pair.client.dataReceived(encode_frame(FrameKind.DATA, b"not allowed"))
    assert pair.ct.disconnected


def test_transitions_are_logged_with_structured_fields(events):
    a = Hub("a", {"b": endpoint_for(7002)})
    b = Hub("b")
    a.refuse_pending()
    a.reactor.advance(retry_delay(a))
    connect_pending(a, b)
    moves = [(e["old"], e["new"]) for e in events
             if e.get("peer") == "b" and "new" in e]
    assert moves == [("idle", "connecting"), ("connecting", "backing-off"),
                     ("backing-off", "connecting"), ("connecting", "handshaking"),
                     ("handshaking", "up")]


@pytest.mark.parametrize("seed", range(25))
def test_random_link_histories_keep_order_and_never_break_the_state_machine(seed):
    """Random sends, refusals, connects, losses and clock steps: whatever
    arrives is an in-order, duplicate-free subsequence of what was sent."""
    rng = random.Random(seed)
    a = Hub("a", {"b": endpoint_for(7002)}, seed=seed,
            limits=PeerLimits(max_queue_messages=8))
    b = Hub("b")
    pair = None
    sent = 0
    for _ in range(300):
        op = rng.choice(["send", "send", "send", "dial", "lose", "tick", "pump"])
        link_state = state(a)
        if op == "send":
            a.transport.send("b", b"%d" % sent)
            sent += 1
        elif op == "dial" and link_state is LinkState.CONNECTING:
            if rng.random() < 0.3:
                a.refuse_pending()
            else:
                pair = connect_pending(a, b)
        elif op == "lose" and pair is not None:
            pair.lose()
            pair = None
        elif op == "tick":
            a.reactor.advance(rng.choice([0.01, 0.1, 1.0]))
            b.reactor.advance(0.01)
        elif op == "pump" and pair is not None:
            pair.pump()
        assert state(a) is not LinkState.STOPPED
    got = [int(p) for _, p in b.received]
    assert got, "the history delivered nothing: it tests nothing"
    assert got == sorted(set(got))
    assert all(0 <= n < sent for n in got)


def test_a_stopped_transport_sends_nothing_and_adds_no_peers():
    a = Hub("a", {"b": endpoint_for(7002)})
    a.transport.stop()
    assert a.transport.send("b", b"late") is False
    assert a.transport.stats()["b"].queued_messages == 0
    with pytest.raises(RuntimeError):
        a.transport.add_peer("c", endpoint_for(7003))
