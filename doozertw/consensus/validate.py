"""Structural checks on peer messages before RaftNode.step sees them (pure).

A message that decodes may still be impossible for a correct peer to send;
``problem(m)`` names the first reason it is, or returns None. The checks are
about shape, not trust: any term is acceptable from a legitimate peer, so a
higher term is never refused for being high, only for not fitting below
``MAX_NUMBER`` (which leaves the node 2^62 elections and entries of headroom,
so its own messages always re-encode). Authenticating peers is the
transport's business; what this guarantees is that ``step`` cannot raise and
the node cannot reach a state it cannot encode.

Checked:

- every int field in [0, MAX_NUMBER]; ``src`` and ``dst`` non-empty, distinct;
- votes: the candidate's last term is not above the term it campaigns in;
- AppendEntries: prev_term <= term (0 when prev_index is 0); entries are
  contiguous from prev_index + 1, with terms from max(prev_term, 1) up to
  term, never decreasing; a CONF_CHANGE entry's data decodes to a change
  of a non-empty id;
- AppendEntriesResponse: a rejection's hint is not above the rejected index
  nor its hint term above the term;
- ReadIndexRequest: a non-empty ctx, not a leader's lease-round ctx;
- InstallSnapshot: the snapshot's term is not above the message's; a
  snapshot past index 0 has a term and at least one voter; voters and
  learners are disjoint non-empty ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from doozertw.consensus import messages as m
from doozertw.consensus.lease import is_lease_ctx

MAX_NUMBER = 2 ** 62
"""Largest term or index a message may carry (the codec allows 2^63 - 1)."""

_TYPES = frozenset(m.MESSAGE_TYPES)
_INT_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in attrs.fields(cls) if f.type == "int")
    for cls in m.MESSAGE_TYPES
}


def problem(message: object) -> str | None:
    """Why ``message`` cannot come from a correct peer, or None if it can."""
    cls = type(message)
    if cls not in _TYPES:
        return "not a raft message"
    msg: Any = message  # one of MESSAGE_TYPES from here on
    for name in _INT_FIELDS[cls]:
        value = getattr(msg, name)
        if type(value) is not int or not 0 <= value <= MAX_NUMBER:
            return f"{name} out of range"
    if not _good_id(msg.src) or not _good_id(msg.dst):
        return "empty node id"
    if msg.src == msg.dst:
        return "message to itself"
    check = _CHECKS.get(cls)
    return check(msg) if check is not None else None


def _good_id(nid: object) -> bool:
    return isinstance(nid, str) and nid != ""


def _vote(v: m.PreVote | m.RequestVote) -> str | None:
    if v.last_term > v.term:
        return "last_term above term"
    return None


def _append(a: m.AppendEntries) -> str | None:
    if a.prev_term > a.term or (a.prev_index == 0 and a.prev_term != 0):
        return "bad prev_term"
    floor = max(a.prev_term, 1)
    for offset, e in enumerate(a.entries, start=1):
        if not isinstance(e, m.Entry) or e.index != a.prev_index + offset:
            return "entries not contiguous after prev_index"
        if not floor <= e.term <= a.term or e.index > MAX_NUMBER:
            return "entry term or index out of range"
        floor = e.term
        if e.kind == m.EntryKind.CONF_CHANGE and not _good_conf_change(e.data):
            return "undecodable conf change"
    return None


def _good_conf_change(data: bytes) -> bool:
    try:
        return _good_id(m.ConfChange.decode(data).node_id)
    except ValueError:  # UnicodeDecodeError is a ValueError
        return False


def _append_response(r: m.AppendEntriesResponse) -> str | None:
    if r.reject and (r.hint_index > r.index or r.hint_term > r.term):
        return "hint beyond the rejected index"
    return None


def _read_request(r: m.ReadIndexRequest) -> str | None:
    # b"" is a heartbeat's "no read": such a read could never be confirmed
    if not r.ctx:
        return "empty read ctx"
    return "a lease round's ctx" if is_lease_ctx(r.ctx) else None


def _snapshot(s: m.InstallSnapshot) -> str | None:
    meta = s.snapshot.meta
    if not 0 <= meta.term <= s.term or not 0 <= meta.index <= MAX_NUMBER:
        return "snapshot term or index out of range"
    conf = meta.conf
    if meta.index > 0 and (meta.term == 0 or not conf.voters):
        return "snapshot without term or voters"
    if conf.voters & conf.learners or not all(map(_good_id, conf.members())):
        return "bad snapshot configuration"
    return None


_CHECKS: dict[type, Callable[[Any], str | None]] = {
    m.PreVote: _vote,
    m.RequestVote: _vote,
    m.AppendEntries: _append,
    m.AppendEntriesResponse: _append_response,
    m.InstallSnapshot: _snapshot,
    m.ReadIndexRequest: _read_request,
}
