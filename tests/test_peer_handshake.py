"""The acceptor end of the handshake, driven with hand-written bytes."""

import struct

from doozertw.peer import PeerLimits
from doozertw.peer.framing import FrameDecoder, FrameKind, encode_frame
from doozertw.peer.handshake import Hello, Refusal, RefuseCode
from doozertw.testing.peerhub import CLUSTER, Hub, accept_raw


def hello_frame(sender="a", recipient="b", cluster=CLUSTER, version=1):
    return encode_frame(FrameKind.HELLO,
                        Hello(version, cluster, sender, recipient).encode())


def frames_written(transport, limit=1 << 20):
    return FrameDecoder(limit).feed(transport.value())


def test_acceptor_answers_hello_with_its_own():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(hello_frame())
    [(kind, content)] = frames_written(st)
    assert kind is FrameKind.HELLO
    assert Hello.decode(content) == Hello(1, CLUSTER, "b", "a")
    assert b.transport.inbound["a"] is server


def test_unknown_version_is_refused_with_bad_version():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(hello_frame(version=3))
    [(kind, content)] = frames_written(st)
    assert kind is FrameKind.REFUSE
    assert Refusal.decode(content).code is RefuseCode.BAD_VERSION
    assert st.disconnecting and b.transport.inbound == {}


def test_other_cluster_is_refused():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(hello_frame(cluster="elsewhere"))
    [(kind, content)] = frames_written(st)
    refusal = Refusal.decode(content)
    assert refusal.code is RefuseCode.WRONG_CLUSTER
    assert "elsewhere" in refusal.detail
    server.dataReceived(encode_frame(FrameKind.DATA, b"sneaky"))
    assert b.received == []


def test_garbage_hello_is_refused_as_bad_hello():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(encode_frame(FrameKind.HELLO, b"GET / HTTP/1.1"))
    [(kind, content)] = frames_written(st)
    assert Refusal.decode(content).code is RefuseCode.BAD_HELLO


def test_data_before_handshake_is_a_violation():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(encode_frame(FrameKind.DATA, b"early"))
    assert st.disconnected and b.received == []


def test_large_frame_before_handshake_closes_without_buffering():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(struct.pack(">I", 4097))
    assert st.disconnected


def test_http_request_on_peer_port_is_cut_off():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(b"GET / HTTP/1.1\r\n\r\n")   # 'GET ' is a 1.2 GB length
    assert st.disconnected


def test_frame_above_max_frame_after_handshake_closes():
    b = Hub("b", limits=PeerLimits(max_frame=1000))
    server, st = accept_raw(b)
    server.dataReceived(hello_frame())
    server.dataReceived(encode_frame(FrameKind.DATA, b"x" * 999))
    assert b.received == [("a", b"x" * 999)]
    server.dataReceived(struct.pack(">I", 1001))
    assert st.disconnected


def test_acceptor_handshake_timeout():
    b = Hub("b")
    server, st = accept_raw(b)
    b.reactor.advance(4.9)
    assert not st.disconnected
    b.reactor.advance(0.2)
    assert st.disconnected


def test_acceptor_echoes_ping_as_pong():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(hello_frame())
    st.clear()
    server.dataReceived(encode_frame(FrameKind.PING, b"12345678"))
    assert frames_written(st) == [(FrameKind.PONG, b"12345678")]


def test_second_hello_after_handshake_is_a_violation():
    b = Hub("b")
    server, st = accept_raw(b)
    server.dataReceived(hello_frame() + hello_frame())
    assert st.disconnected


def test_newer_connection_from_same_peer_replaces_older():
    b = Hub("b")
    old, old_t = accept_raw(b)
    old.dataReceived(hello_frame())
    new, new_t = accept_raw(b)
    new.dataReceived(hello_frame())
    assert old_t.disconnected and not new_t.disconnected
    assert b.transport.inbound["a"] is new
    old.connectionLost(None)                  # the old one's loss arrives late
    assert b.transport.inbound["a"] is new
    new.dataReceived(encode_frame(FrameKind.DATA, b"via new"))
    assert b.received == [("a", b"via new")]


def test_connections_from_different_peers_coexist():
    b = Hub("b")
    from_a, ta = accept_raw(b)
    from_c, tc = accept_raw(b)
    from_a.dataReceived(hello_frame(sender="a"))
    from_c.dataReceived(hello_frame(sender="c"))
    from_a.dataReceived(encode_frame(FrameKind.DATA, b"1"))
    from_c.dataReceived(encode_frame(FrameKind.DATA, b"2"))
    assert b.received == [("a", b"1"), ("c", b"2")]
    assert set(b.transport.inbound) == {"a", "c"}
    assert b.transport.stats()["c"].state is None   # not a configured peer


def test_frame_limit_rises_as_soon_as_the_handshake_completes():
    """A large DATA frame in the same read as the HELLO is accepted: each
    frame is checked against the limit in force when it is taken."""
    b = Hub("b")
    server, st = accept_raw(b)
    big = b"x" * 10000
    server.dataReceived(hello_frame() + encode_frame(FrameKind.DATA, big))
    assert not st.disconnected
    assert b.received == [("a", big)]
