"""Random input to the text protocol never raises, never corrupts replies, never
stops the node serving others."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.frontends import Conn, parse_units

LIMITS = Limits(max_line=64, max_value=32, max_path=24, max_in_flight=8,
                max_watches=3, request_send_timeout=5.0, max_output_buffer=4096)

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

VERBS = ["get", "set", "cas", "del", "rev", "stat", "getdir", "walk", "wait",
         "watch", "unwatch", "nop", "self", "access", "help", "GET", "Set", "bogus", ""]
WORDS = st.sampled_from([
    "/", "/a", "/a/b", "/a/*", "/**", "/a?", "bad", "0", "1", "-1", "-2", "3", "x",
    "{0}", "{3}", "{40}", "{99999999999999999999}", "9" * 25, "/" + "a" * 30, "\x00",
    "\xff", "\r", " ", "*", "/a//b",
])


@st.composite
def command_lines(draw):
    verb = draw(st.sampled_from(VERBS))
    args = draw(st.lists(WORDS, max_size=4))
    line = " ".join([verb] + args).encode("latin-1")
    tail = draw(st.sampled_from([b"\n", b"\r\n", b""]))
    raw = draw(st.binary(max_size=6)) if draw(st.booleans()) else b""
    return line + tail + raw


def chunks(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return [c for c in out if c]


def drive(stream, cuts, ticks=(), quit_with_lost=True):
    node = Node(store=Store(history=50))
    node.set("/a/b", -1, b"seed")
    clock = Clock()
    conn = Conn(node, clock, limits=LIMITS)
    for i, piece in enumerate(chunks(stream, cuts)):
        conn.send(piece)
        if i < len(ticks):
            clock.advance(ticks[i])
        node.set("/a/c", -1, b"%d" % i)           # other clients keep writing
    out = conn.transport.value()
    units = parse_units(out)                   # every byte sent is well formed
    assert b"internal error" not in out
    before = node.store.rev
    conn.proto.connectionLost(None)
    assert node.store.watch_count == 0
    # the node still serves a fresh connection
    other = Conn(node, clock, limits=LIMITS)
    other.send(b"set /after ok\r\nget /after\n")
    assert other.units()[1][1] == b"ok"
    assert node.store.rev == before + 1
    return units


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_random_bytes(stream, cuts):
    drive(stream, cuts)


@FUZZ
@given(st.lists(command_lines(), max_size=25), st.lists(st.integers(0, 2000), max_size=10),
       st.lists(st.floats(0, 3), max_size=5))
def test_random_commands(lines, cuts, ticks):
    drive(b"".join(lines), cuts, ticks)


@FUZZ
@given(st.lists(command_lines().filter(lambda b: b.endswith(b"\n")), max_size=20))
def test_chunking_does_not_change_the_answers(lines):
    stream = b"".join(lines)
    whole = Conn(Node(store=Store()), limits=LIMITS)
    whole.send(stream)
    dribble = Conn(Node(store=Store()), limits=LIMITS)
    for i in range(len(stream)):
        dribble.send(stream[i:i + 1])
    assert dribble.transport.value() == whole.transport.value()
    parse_units(whole.transport.value())
