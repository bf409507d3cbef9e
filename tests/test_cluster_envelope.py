"""Payload codec: Raft messages and envelopes multiplexed; entry data."""

import pytest
from hypothesis import given, strategies as st

from doozertw.cluster import envelope as env
from doozertw.consensus.codec import CodecError
from doozertw.consensus.messages import Heartbeat

text = st.text(max_size=20)
u64 = st.integers(min_value=0, max_value=2**64 - 1)

ENVELOPES = st.one_of(
    st.builds(env.Probe, text),
    st.builds(env.ProbeReply, text, text, text),
    st.builds(env.JoinRequest, text, text, text),
    st.builds(env.Forward, text, u64, st.lists(st.tuples(u64, st.binary(max_size=30)), max_size=5)),
    st.builds(env.ForwardAck, st.lists(st.tuples(u64, u64, u64), max_size=5)),
    st.builds(env.ForwardReject, u64, st.lists(u64, max_size=5), text),
)


@given(ENVELOPES)
def test_envelopes_round_trip(message):
    data = env.encode_envelope(message)
    assert data[:1] == env.APP
    assert env.decode_payload(data) == message


def test_raft_messages_are_multiplexed():
    hb = Heartbeat("n1", "n2~ab", 3, 7, b"ctx")
    data = env.encode_raft(hb)
    assert data[:1] == env.RAFT
    assert env.decode_payload(data) == hb


@given(ENVELOPES, st.data())
def test_truncated_or_extended_payloads_are_rejected(message, data):
    raw = env.encode_envelope(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(CodecError):
        env.decode_payload(raw[:cut])
    with pytest.raises(CodecError):
        env.decode_payload(raw + b"\x00")


@given(st.binary(max_size=64))
def test_garbage_raises_only_codec_error(data):
    try:
        env.decode_payload(data)
    except CodecError:
        pass


def test_unknown_layer_and_type():
    with pytest.raises(CodecError):
        env.decode_payload(b"Zzz")
    with pytest.raises(CodecError):
        env.decode_payload(env.APP + bytes([200]))
    with pytest.raises(TypeError):
        env.encode_envelope(object())


@given(text, u64, st.binary(max_size=50))
def test_proposal_data_round_trips(origin, pid, mutation):
    p = env.Proposal(origin, pid, mutation)
    assert env.Proposal.decode(p.encode()) == p


def test_member_names():
    assert env.name_of("n1~a3f9") == "n1"
    assert env.name_of("n1") == "n1"
