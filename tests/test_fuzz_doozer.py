"""Fuzzing the doozer front end: nothing a client sends may crash it or break the node."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.wire import LENGTH, VERBS, Request, Response, frame
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.frontends import varint  # protobuf varints for hand-built frames

LIMITS = Limits(max_frame=2048, max_value=256, max_path=64, max_in_flight=8,
                request_send_timeout=5.0)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def connect(node, secrets=Secrets(), limits=LIMITS):
    clock = Clock()
    proto = DoozerProtocol(node, secrets, limits, clock)
    logged = []
    proto.log = Logger(observer=logged.append)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock, logged


def responses(data):
    out, pos = [], 0
    while pos < len(data):
        (length,) = LENGTH.unpack_from(data, pos)
        body = data[pos + 4:pos + 4 + length]
        assert len(body) == length
        out.append(Response.FromString(body))
        pos += 4 + length
    return out


def seeded_node():
    node = Node(name="fuzz", store=Store(history=20))
    proto, transport, _, _ = connect(node)
    for path in ("/a", "/d/x", "/d/y/z", "/ctl/name"):
        proto.dataReceived(frame(Request(tag=1, verb=VERBS["SET"], path=path, rev=-1,
                                         value=b"seed")))
    proto.connectionLost(None)
    return node


def assert_node_healthy(node, rev_before=None):
    """No leaked watches or connections; a new connection can read and write."""
    assert node.store.watch_count == 0
    assert node.stats.connections == 0
    if rev_before is not None:
        assert node.store.rev == rev_before
    proto, transport, _, logged = connect(node)
    proto.dataReceived(frame(Request(tag=1, verb=VERBS["SET"], path="/after", rev=-1,
                                     value=b"ok"))
                       + frame(Request(tag=2, verb=VERBS["GET"], path="/after")))
    got = {r.tag: r for r in responses(transport.value())}
    assert not got[1].HasField("err_code")
    assert got[2].value == b"ok"
    proto.connectionLost(None)
    assert not [e for e in logged if e.get("log_failure")]


def chunked(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


# -- random bytes ---------------------------------------------------------------

def framed_garbage():
    """Frames with a plausible length and random bodies (mostly not Requests)."""
    body = st.binary(max_size=64)
    return st.lists(body, max_size=6).map(
        lambda bodies: b"".join(LENGTH.pack(len(b)) + b for b in bodies))


@FUZZ
@given(data=st.one_of(st.binary(max_size=512), framed_garbage()),
       cuts=st.lists(st.integers(0, 600), max_size=8))
def test_random_bytes_never_raise(data, cuts):
    node = seeded_node()
    proto, transport, clock, _ = connect(node)
    for piece in chunked(data, cuts):
        proto.dataReceived(piece)
    clock.advance(LIMITS.request_send_timeout + 1)
    proto.connectionLost(None)
    responses(transport.value())
    assert_node_healthy(node)


# -- random well-framed requests --------------------------------------------------

PATHS = st.one_of(
    st.sampled_from(["/", "/a", "/d", "/d/x", "/d/y", "/d/y/z", "/new", "/a/b",
                     "/**", "/d/*", "/d/?", "/ctl/**", "", "a", "/a/", "//", "/*/*"]),
    st.text(max_size=80),
)
VERB_NUMBERS = st.one_of(st.sampled_from(sorted(VERBS.values())),
                         st.integers(-(2 ** 31), 2 ** 31 - 1))
INT32 = st.integers(-(2 ** 31), 2 ** 31 - 1)
REVS = st.one_of(st.integers(-3, 30), st.integers(-(2 ** 63), 2 ** 63 - 1))


@st.composite
def requests(draw):
    fields = {}
    if draw(st.booleans()):
        fields["tag"] = draw(st.integers(0, 5) | INT32)
    if draw(st.integers(0, 4)):
        fields["path"] = draw(PATHS)
    if draw(st.booleans()):
        fields["value"] = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        fields["offset"] = draw(st.integers(-2, 6) | INT32)
    if draw(st.booleans()):
        fields["rev"] = draw(REVS)
    if draw(st.booleans()):
        fields["other_tag"] = draw(INT32)
    body = Request(**fields).SerializeToString()
    if draw(st.integers(0, 9)):
        body += b"\x10" + varint(draw(VERB_NUMBERS))
    return LENGTH.pack(len(body)) + body


@FUZZ
@given(frames=st.lists(requests(), min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 4000), max_size=6),
       secured=st.booleans(), grant=st.sampled_from([b"", b"rw", b"ro", b"bad"]))
def test_random_requests_never_break_the_node(frames, cuts, secured, grant):
    node = seeded_node()
    secrets = Secrets(rw=b"rw", ro=b"ro") if secured else Secrets()
    proto, transport, clock, logged = connect(node, secrets)
    writer, _, _, _ = connect(node)
    if grant:
        proto.dataReceived(frame(Request(tag=77, verb=VERBS["ACCESS"], value=grant)))
    rev_before = node.store.rev
    for piece in chunked(b"".join(frames), cuts):
        proto.dataReceived(piece)
    if secured and grant in (b"", b"bad", b"ro"):
        assert node.store.rev == rev_before
    # A write from elsewhere releases some WAITs; then time passes.
    writer.dataReceived(frame(Request(tag=1, verb=VERBS["SET"], path="/d/x", rev=-1,
                                      value=b"poke")))
    writer.connectionLost(None)
    clock.advance(LIMITS.request_send_timeout + 1)
    replies = responses(transport.value())
    assert not transport.disconnecting, "well-framed requests never violate framing"
    for r in replies:
        assert r.HasField("tag")
    assert not [e for e in logged if e.get("log_failure")], logged
    proto.connectionLost(None)
    assert_node_healthy(node)
