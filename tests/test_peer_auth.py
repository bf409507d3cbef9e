"""Authenticated, authorised peers (docs/security.md).

In memory (StringTransports, a MemoryReactorClock): the cluster-secret
handshake and frame tags. Over loopback sockets: mutual TLS. Against a
real 3-node cluster started as docs/security.md says: the attacks of
issue 9 from sockets without credentials, and from an authenticated
non-member.
"""

import os
import random
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from doozertw import config
from doozertw.cluster import envelope as env
from doozertw.cluster.service import sender_allowed
from doozertw.consensus.messages import (
    AppendEntries, AppendEntriesResponse, Heartbeat, RequestVote,
)
from doozertw.peer import PeerTransport, auth, certs
from doozertw.peer.framing import FrameDecoder, FrameKind, encode_frame, frame_parts
from doozertw.peer.handshake import AUTH_VERSION, AuthFlags, Hello, Refusal, RefuseCode
from doozertw.peer.link import LinkState
from doozertw.peer.security import PeerSecurity, for_node
from doozertw.peer.tls import TLSSettings
from doozertw.store import CLOBBER, SetFile, encode as encode_mutation
from doozertw.testing.peerhub import CLUSTER, Hub, accept_raw, connect_pending, endpoint_for

SECRET = b"correct horse battery staple 42"
SECURE = PeerSecurity(secret=SECRET)


def frames(transport):
    return FrameDecoder(1 << 20).feed(transport.value())


def secure_pair():
    a = Hub("a", {"b": endpoint_for(7001)}, security=SECURE)
    b = Hub("b", security=SECURE)
    return a, b, connect_pending(a, b)


# -- the handshake, in memory --------------------------------------------------------------


def test_right_secret_brings_the_link_up_and_payloads_flow_both_ways():
    a, b, pair = secure_pair()
    assert a.transport.link_state("b") is LinkState.UP
    assert b.transport.inbound["a"] is pair.server
    a.transport.send("b", b"one")
    a.transport.send("b", b"two")
    pair.pump()
    assert b.received == [("a", b"one"), ("a", b"two")]
    a.reactor.advance(0.5)           # a PING out, a tagged PONG back
    pair.pump()
    assert a.transport.links["b"].rtt is not None


def test_the_acceptor_sees_a_v2_hello_with_a_nonce_and_proves_itself():
    b = Hub("b", security=SECURE)
    server, st = accept_raw(b)
    nonce = auth.new_nonce()
    server.dataReceived(encode_frame(FrameKind.HELLO, Hello(
        AUTH_VERSION, CLUSTER, "a", "b", AuthFlags.SECRET, nonce).encode()))
    [(kind, content)] = frames(st)
    reply = Hello.decode(content)
    facts = auth.transcript(CLUSTER, "a", "b", nonce, reply.nonce)
    assert auth.check_proof(SECRET, auth.ACCEPTOR, facts, reply.proof)
    assert b.transport.inbound == {}          # not before the dialer's AUTH


def test_wrong_secret_is_refused_on_both_sides():
    a = Hub("a", {"b": endpoint_for(7001)}, security=PeerSecurity(secret=b"x" * 20))
    b = Hub("b", security=SECURE)
    pair = connect_pending(a, b)
    assert pair.ct.disconnected                 # the dialer aborted
    pair.lose()
    assert a.transport.link_state("b") is LinkState.BACKING_OFF
    assert "proof is wrong" in a.transport.links["b"].last_failure
    assert b.transport.inbound == {}
    # a dialer that ignores the acceptor's proof and answers with its own wrong one
    raw = RawHandshake(b, secret=b"y" * 20)
    assert raw.refusal().code is RefuseCode.BAD_AUTH
    raw.server.dataReceived(raw.data(b"sneaky"))
    assert b.received == [] and b.transport.inbound == {}


@pytest.mark.parametrize("dialer,acceptor", [
    (PeerSecurity(), SECURE),                  # no secret at all
    (SECURE, PeerSecurity()),                  # a secure node never falls back
])
def test_no_secret_on_one_side_is_refused(dialer, acceptor):
    a = Hub("a", {"b": endpoint_for(7001)}, security=dialer)
    b = Hub("b", security=acceptor)
    pair = connect_pending(a, b)
    pair.server.dataReceived(encode_frame(FrameKind.DATA, b"after refusal"))
    pair.lose()
    assert a.transport.link_state("b") is LinkState.BACKING_OFF
    assert "peer authentication differs" in a.transport.links["b"].last_failure
    assert b.received == [] and b.transport.inbound == {}


def test_a_node_without_authentication_and_not_insecure_accepts_nobody():
    b = Hub("b", security=PeerSecurity(allow_unauthenticated=False))
    server, st = accept_raw(b)
    server.dataReceived(encode_frame(FrameKind.HELLO, Hello(1, CLUSTER, "a", "b").encode()))
    [(kind, content)] = frames(st)
    assert Refusal.decode(content).code is RefuseCode.AUTH_MISMATCH
    assert b.transport.inbound == {}


class RawHandshake:
    """A hand-driven dialer against an acceptor Hub (StringTransport)."""

    def __init__(self, hub, secret=SECRET, sender="a", nonce=None):
        self.server, self.st = accept_raw(hub)
        self.secret = secret
        self.nonce = nonce or auth.new_nonce()
        self.hello_bytes = encode_frame(FrameKind.HELLO, Hello(
            AUTH_VERSION, CLUSTER, sender, "b", AuthFlags.SECRET, self.nonce).encode())
        self.server.dataReceived(self.hello_bytes)
        [(_, content)] = frames(self.st)
        self.st.clear()
        self.reply = Hello.decode(content)
        self.facts = auth.transcript(CLUSTER, sender, "b", self.nonce, self.reply.nonce)
        self.auth_bytes = encode_frame(
            FrameKind.AUTH, auth.proof(secret, auth.DIALER, self.facts))
        self.server.dataReceived(self.auth_bytes)
        self.out, self.inn = auth.session_macs(secret, self.facts, auth.DIALER)

    def refusal(self):
        [(kind, content)] = frames(self.st)
        assert kind is FrameKind.REFUSE
        return Refusal.decode(content)

    def data(self, payload, mac=None):
        mac = mac or self.out
        return b"".join(frame_parts(FrameKind.DATA, payload, mac.tag(FrameKind.DATA, payload)))


def test_a_replayed_handshake_is_refused():
    b = Hub("b", security=SECURE)
    first = RawHandshake(b)
    first.server.dataReceived(first.data(b"genuine"))
    assert b.received == [("a", b"genuine")]
    again, st = accept_raw(b)          # a recording of the dialer, replayed
    again.dataReceived(first.hello_bytes + first.auth_bytes + first.data(b"genuine"))
    kinds = [k for k, _ in frames(st)]
    assert kinds == [FrameKind.HELLO, FrameKind.REFUSE]
    assert Refusal.decode(frames(st)[1][1]).code is RefuseCode.BAD_AUTH
    assert b.received == [("a", b"genuine")] and b.transport.inbound["a"] is first.server


def test_a_reflected_challenge_is_refused():
    """The acceptor's own proof, sent back to it as the dialer's, fails."""
    b = Hub("b", security=SECURE)
    server, st = accept_raw(b)
    server.dataReceived(encode_frame(FrameKind.HELLO, Hello(
        AUTH_VERSION, CLUSTER, "a", "b", AuthFlags.SECRET, auth.new_nonce()).encode()))
    reply = Hello.decode(frames(st)[0][1])
    server.dataReceived(encode_frame(FrameKind.AUTH, reply.proof))
    assert Refusal.decode(frames(st)[1][1]).code is RefuseCode.BAD_AUTH
    assert b.transport.inbound == {}


def test_proofs_are_bound_to_the_names():
    facts = auth.transcript(CLUSTER, "a", "b", b"n" * 32, b"m" * 32)
    other = auth.transcript(CLUSTER, "evil", "b", b"n" * 32, b"m" * 32)
    offered = auth.proof(SECRET, auth.DIALER, facts)
    assert auth.check_proof(SECRET, auth.DIALER, facts, offered)
    assert not auth.check_proof(SECRET, auth.DIALER, other, offered)
    assert not auth.check_proof(SECRET, auth.ACCEPTOR, facts, offered)


# -- frame tags ---------------------------------------------------------------------------


def established(b):
    raw = RawHandshake(b)
    assert b.transport.inbound["a"] is raw.server
    return raw


def test_a_tampered_frame_closes_the_link():
    b = Hub("b", security=SECURE)
    raw = established(b)
    frame = bytearray(raw.data(b"set /x 1"))
    frame[6] ^= 0x01                   # one bit of the content
    raw.server.dataReceived(bytes(frame))
    assert b.received == [] and raw.st.disconnecting


def test_a_replayed_frame_closes_the_link():
    b = Hub("b", security=SECURE)
    raw = established(b)
    frame = raw.data(b"once")
    raw.server.dataReceived(frame)
    raw.server.dataReceived(frame)
    assert b.received == [("a", b"once")] and raw.st.disconnecting


def test_a_dropped_frame_closes_the_link():
    b = Hub("b", security=SECURE)
    raw = established(b)
    raw.data(b"first")                 # tagged as frame 0, never delivered
    raw.server.dataReceived(raw.data(b"second"))
    assert b.received == [] and raw.st.disconnecting


def test_an_untagged_frame_closes_the_link():
    b = Hub("b", security=SECURE)
    raw = established(b)
    raw.server.dataReceived(encode_frame(FrameKind.DATA, b"plain" + b"\0" * 32))
    assert b.received == [] and raw.st.disconnecting


def test_a_frame_tagged_with_the_other_directions_key_closes_the_link():
    b = Hub("b", security=SECURE)
    raw = established(b)
    raw.server.dataReceived(raw.data(b"reflected", mac=raw.inn))
    assert b.received == [] and raw.st.disconnecting


def test_a_tampered_pong_closes_the_dialers_link():
    a, b, pair = secure_pair()
    a.reactor.advance(0.5)
    ping = pair.ct.value()
    pair.ct.clear()
    pair.server.dataReceived(ping)     # the PING reaches b, the PONG is queued
    pong = bytearray(pair.st.value())
    pair.st.clear()
    pong[-1] ^= 0x80
    pair.client.dataReceived(bytes(pong))
    assert pair.ct.disconnecting and a.transport.links["b"].rtt is None


# -- authorisation: only members steer Raft ------------------------------------------------


def raft_payload(src="evil", term=1000, dst="n1"):
    """A forged AppendEntriesResponse: a term above the cluster's makes
    every receiver that accepts it step down (issue 9's wedge)."""
    return env.encode_raft(AppendEntriesResponse(src, dst, term, 1))


def forward_payload(origin="evil"):
    mutation = encode_mutation(SetFile("/pwned", CLOBBER, b"x"))
    data = env.Proposal(origin, 1, mutation).encode()
    return env.encode_envelope(env.Forward(origin, 1, [(1, data)]))


MEMBERS = {"n1", "n2", "n3"}


@pytest.mark.parametrize("payload", [
    raft_payload(), forward_payload(),
    env.encode_envelope(env.ForwardAck([(1, 2, 3)])),
    env.encode_raft(RequestVote("evil", "n1", 9, 1, 1)),
])
def test_non_members_cannot_vote_acknowledge_or_forward(payload):
    assert not sender_allowed(payload, "evil", MEMBERS, self_is_member=True)
    assert sender_allowed(payload, "n2", MEMBERS, self_is_member=True)
    assert sender_allowed(payload, "evil", MEMBERS, self_is_member=False)  # a joiner


@pytest.mark.parametrize("payload", [
    env.encode_raft(AppendEntries("n4", "n1", 5, 0, 0, 0, ())),
    env.encode_raft(Heartbeat("n4", "n1", 5, 0, b"")),
    env.encode_envelope(env.SnapshotChunk("s", 0, 1, 0, b"x", True)),
])
def test_a_leader_this_member_does_not_know_yet_is_heard(payload):
    # a member lagging behind the entry that added n4, now leader
    assert sender_allowed(payload, "n4", MEMBERS, self_is_member=True)


@pytest.mark.parametrize("envelope", [
    env.JoinRequest("evil~2", "tcp:host=h:port=1"), env.Probe("evil~2"),
    env.ProbeReply("evil~2", env.FreshState.FRESH),
])
def test_an_authenticated_joiner_may_ask(envelope):
    assert sender_allowed(env.encode_envelope(envelope), "evil", MEMBERS, True)


# -- configuration --------------------------------------------------------------------------


def resolved(tmp_path, **options):
    base = {key: None for key in ("config", "listen", "web", "peer_listen", "data_dir",
                                  "advertise", "cluster", "peer_advertise", "attach",
                                  "silent_voter_timeout", "quorum_timeout", "history",
                                  "history_bytes", "snapshot_entries")}
    base.update(options)
    return config.resolve(base, environ={})


def test_a_node_with_peers_and_no_authentication_refuses_to_start(tmp_path):
    cluster, me = resolved(tmp_path, name="n1", peers="n2=h:1")
    with pytest.raises(config.ConfigError, match="no peer authentication"):
        for_node(cluster, me)
    cluster, me = resolved(tmp_path, name="n4", attach="h:8046")
    with pytest.raises(config.ConfigError, match="--insecure-peers"):
        for_node(cluster, me)
    cluster, me = resolved(tmp_path, name="n1", peers="n2=h:1", insecure_peers=1)
    assert for_node(cluster, me) == PeerSecurity(allow_unauthenticated=True)
    cluster, me = resolved(tmp_path, name="solo")
    assert for_node(cluster, me).closed          # alone: needs none, accepts none


def test_secret_file_is_read_and_checked(tmp_path):
    path = tmp_path / "secret"
    path.write_text("short\n")
    cluster, me = resolved(tmp_path, name="n1", peers="n2=h:1", peer_secret_file=str(path))
    with pytest.raises(config.ConfigError, match="at least"):
        for_node(cluster, me)
    path.write_text("  " + "k" * 40 + "\n")
    assert for_node(cluster, me).secret == b"k" * 40
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(f"peer_secret_file: {path}\ninsecure_peers: false\n"
                         "nodes: {n1: {}, n2: {}}\n")
    cluster, me = resolved(tmp_path, name="n1", config=str(yaml_file))
    assert for_node(cluster, me).flags == AuthFlags.SECRET


def test_half_a_tls_configuration_is_refused(tmp_path):
    certs.main(["--out", str(tmp_path), "n1"])
    cluster, me = resolved(tmp_path, name="n1", peers="n2=h:1",
                           peer_cert=str(tmp_path / "n1.pem"))
    with pytest.raises(config.ConfigError, match="needs all"):
        for_node(cluster, me)
    cluster, me = resolved(tmp_path, name="n1", peers="n2=h:1",
                           peer_cert=str(tmp_path / "n1.pem"),
                           peer_key=str(tmp_path / "n1.key"), peer_ca=str(tmp_path / "ca.pem"))
    assert for_node(cluster, me).flags == AuthFlags.TLS


# -- mutual TLS over loopback -----------------------------------------------------------------


def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout

    async def poll():
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out")
            await deferLater(reactor, 0.02, lambda: None)
    return Deferred.fromCoroutine(poll())


def tls(directory, name):
    d = str(directory)
    return PeerSecurity(tls=TLSSettings.load(f"{d}/{name}.pem", f"{d}/{name}.key",
                                             f"{d}/ca.pem"))


class TLSPair:
    """Two PeerTransports on the real reactor: ``a`` dials ``b``."""

    def __init__(self, a_security, b_security, a_name="a", b_name="b"):
        self.received = []
        self.b = PeerTransport(b_name, CLUSTER, {}, self._got, reactor=reactor,
                               security=b_security, rng=random.Random(1))
        self.a_security, self.a_name, self.b_name = a_security, a_name, b_name
        self.a = None

    def _got(self, sender, payload):
        self.received.append((sender, payload))

    async def start(self):
        port = await self.b.listen("tcp:0:interface=127.0.0.1")
        self.a = PeerTransport(self.a_name, CLUSTER,
                               {self.b_name: endpoint_for(port.getHost().port)},
                               lambda *_: None, reactor=reactor, security=self.a_security,
                               rng=random.Random(2))

    def stop(self):
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self):
        if self.a is not None:
            await self.a.stop()
        await self.b.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    good = tmp_path_factory.mktemp("pki")
    certs.main(["--out", str(good), "a", "b"])
    rogue = tmp_path_factory.mktemp("rogue")
    certs.main(["--out", str(rogue), "a", "b"])
    return good, rogue


@pytest_twisted.ensureDeferred
async def test_mutual_tls_with_the_right_certificates_carries_payloads(pki):
    good, _ = pki
    pair = TLSPair(tls(good, "a"), tls(good, "b"))
    try:
        await pair.start()
        pair.a.send("b", b"over tls")
        await until(lambda: pair.received)
        assert pair.received == [("a", b"over tls")]
        assert pair.a.link_state("b") is LinkState.UP
    finally:
        await pair.stop()


@pytest.mark.parametrize("side", ["dialer", "acceptor"])
@pytest_twisted.ensureDeferred
async def test_mutual_tls_refuses_a_certificate_of_another_ca(pki, side):
    good, rogue = pki
    a, b = (tls(rogue, "a"), tls(good, "b")) if side == "dialer" else (
        tls(good, "a"), tls(rogue, "b"))
    pair = TLSPair(a, b)
    try:
        await pair.start()
        pair.a.send("b", b"let me in")
        await until(lambda: pair.a.links["b"].failures >= 2)
        await deferLater(reactor, 0.2, lambda: None)
        assert pair.received == [] and pair.b.inbound == {}
        assert pair.a.link_state("b") is not LinkState.UP
    finally:
        await pair.stop()


@pytest_twisted.ensureDeferred
async def test_mutual_tls_refuses_a_dialer_claiming_another_name(pki):
    """A node holding a's certificate calls itself c: refused (BAD_CERT)."""
    good, _ = pki
    pair = TLSPair(tls(good, "a"), tls(good, "b"), a_name="c")
    try:
        await pair.start()
        pair.a.send("b", b"i am c")
        await until(lambda: pair.a.links["b"].failures >= 1)
        assert "BAD_CERT" in pair.a.links["b"].last_failure
        assert pair.received == [] and pair.b.inbound == {}
    finally:
        await pair.stop()


@pytest_twisted.ensureDeferred
async def test_mutual_tls_refuses_an_acceptor_with_another_nodes_certificate(pki):
    """The node dialed as b presents a's certificate: the dialer refuses."""
    good, _ = pki
    pair = TLSPair(tls(good, "a"), tls(good, "a"))
    try:
        await pair.start()
        pair.a.send("b", b"hello b?")
        await until(lambda: pair.a.links["b"].failures >= 1)
        await deferLater(reactor, 0.2, lambda: None)
        assert pair.received == [] and pair.a.link_state("b") is not LinkState.UP
    finally:
        await pair.stop()


@pytest_twisted.ensureDeferred
async def test_tls_and_secret_together(pki):
    good, _ = pki
    both = {n: PeerSecurity(secret=SECRET, tls=tls(good, n).tls) for n in "ab"}
    pair = TLSPair(both["a"], both["b"])
    try:
        await pair.start()
        pair.a.send("b", b"belt and braces")
        await until(lambda: pair.received)
        assert pair.received == [("a", b"belt and braces")]
    finally:
        await pair.stop()


def test_cert_script_reuses_its_ca_and_names_the_nodes(tmp_path):
    from doozertw.peer.tls import cert_names
    certs.main(["--out", str(tmp_path), "n1"])
    ca_before = (tmp_path / "ca.pem").read_bytes()
    certs.main(["--out", str(tmp_path), "n4"])
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    assert os.stat(tmp_path / "n4.key").st_mode & 0o077 == 0
    settings = TLSSettings.load(str(tmp_path / "n4.pem"), str(tmp_path / "n4.key"),
                                str(tmp_path / "ca.pem"))
    assert cert_names(settings.own.original) == {"n4"}


# -- the attacks of issue 9, against a real cluster started as docs/security.md says -----------


@pytest.fixture(scope="module")
def live():
    """Three twistd nodes from one YAML file with ``peer_secret_file``."""
    from doozertw.testing.cluster_harness import Cluster
    cluster = Cluster(3, name="secure", proxy=False).start()
    try:
        cluster.wait_formed()
        yield cluster
    finally:
        cluster.stop()


def terms(cluster):
    return {name: (cluster.status(name) or {}).get("term") for name in cluster.nodes}


def high_term(before):
    return max(before.values()) + 1000


def raw_peer(cluster, target):
    from doozertw.peer.rawpeer import RawPeer
    return RawPeer("127.0.0.1", cluster.nodes[target].peer_port)


def settle_and_check(cluster, before, leader):
    time.sleep(1.5)                     # several election timeouts
    after = terms(cluster)
    assert after == before, f"terms moved: {before} -> {after}"
    assert cluster.leader() == leader
    assert cluster.read(leader, "/pwned")[0] == b""


@pytest.mark.e2e
def test_forged_raft_from_a_socket_without_credentials_changes_nothing(live):
    leader = live.leader()
    before = terms(live)
    assert None not in before.values()
    for target in live.nodes:
        for secret, flags in ((None, None), (b"guessed wrong secret!", None)):
            peer = raw_peer(live, target)
            try:
                answer = None
                try:
                    answer = peer.hello("secure", "n2", target, secret=secret, flags=flags)
                except auth.AuthError:
                    pass                # the node's proof fails with our wrong secret
                assert not isinstance(answer, Hello) or secret is not None
                # push a forged term bump regardless of what we were told
                peer.mac_out = peer.mac_in = None
                peer.send_payload(raft_payload("n2", high_term(before), target))
                assert peer.closed_by_peer()
            except OSError:
                pass                    # the node already closed: as good
            finally:
                peer.close()
    settle_and_check(live, before, leader)


@pytest.mark.e2e
def test_a_forward_from_evil_without_credentials_writes_nothing(live):
    leader = live.leader()
    before = terms(live)
    peer = raw_peer(live, leader)
    try:
        refusal = peer.hello("secure", "evil", leader)
        assert isinstance(refusal, Refusal) and refusal.code is RefuseCode.AUTH_MISMATCH
        try:
            peer.send_payload(forward_payload())
        except OSError:
            pass
        assert peer.closed_by_peer()
    finally:
        peer.close()
    settle_and_check(live, before, leader)


@pytest.mark.e2e
def test_a_join_request_from_evil_without_credentials_streams_nothing(live):
    leader = live.leader()
    peer = raw_peer(live, leader)
    try:
        peer.hello("secure", "evil", leader, flags=AuthFlags.SECRET)  # no secret to prove
        peer.send_frame(FrameKind.AUTH, b"\0" * 32)
        peer.send_payload(env.encode_envelope(
            env.JoinRequest("evil~2", "tcp:host=127.0.0.1:port=1")))
        seen = []
        while (frame := peer.read_frame()) is not None:
            seen.append(frame[0])
        assert seen == [FrameKind.REFUSE]
    finally:
        peer.close()
    time.sleep(0.5)
    assert live.read(leader, "/ctl/node/evil/peer")[0] == b""


@pytest.mark.e2e
def test_an_authenticated_non_member_cannot_steer_raft_or_write(live):
    """Knowing the secret is not membership: 'evil' is heard only for joins."""
    with open(live.peer_secret_file, "rb") as f:
        secret = f.read().strip()
    leader = live.leader()
    before = terms(live)
    for target in live.nodes:
        peer = raw_peer(live, target)
        try:
            assert isinstance(peer.hello("secure", "evil", target, secret=secret), Hello)
            peer.send_payload(raft_payload("evil", high_term(before), target))
            peer.send_payload(forward_payload())
            time.sleep(0.2)
        finally:
            peer.close()
    settle_and_check(live, before, leader)


@pytest.mark.e2e
def test_a_member_cannot_send_as_another_member(live):
    """The link is a member's (it proved the secret under that name): a
    Raft message claiming to come from another member (the leader) is
    dropped. (Each try replaces the real member's connection, which soon
    replaces ours: so try often.)"""
    with open(live.peer_secret_file, "rb") as f:
        secret = f.read().strip()
    leader = live.leader()
    target, claimed = sorted(n for n in live.nodes if n != leader)
    victim = leader
    before = terms(live)
    for _ in range(10):
        peer = raw_peer(live, target)
        try:
            assert isinstance(peer.hello("secure", claimed, target, secret=secret), Hello)
            peer.send_payload(raft_payload(victim, high_term(before), target))
            time.sleep(0.1)
        except OSError:
            pass
        finally:
            peer.close()
    settle_and_check(live, before, leader)
