"""Membership: founding entries and validation of one-server changes.

Configurations take effect as soon as their entry is appended (Raft
dissertation §4.1); a leader accepts a new change only once the previous one
is committed and it has committed an entry of its own term (the fix for the
single-server change bug, dissertation errata). ``ConfState.apply`` computes
the effect of a change; this module decides whether a change is acceptable.
"""

from __future__ import annotations

from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, Entry, EntryKind,
)
from doozertw.consensus.ready import InvalidConfChange


def bootstrap_entries(conf: ConfState) -> list[Entry]:
    """The committed entries every founding member starts with: one conf
    change per member, sorted, at term 1 (identical on every founder), so a
    node that joins later learns the founding configuration from the log."""
    changes = [ConfChange(ConfChangeOp.ADD_VOTER, v) for v in sorted(conf.voters)]
    changes += [ConfChange(ConfChangeOp.ADD_LEARNER, n) for n in sorted(conf.learners)]
    return [Entry(1, i, EntryKind.CONF_CHANGE, c.encode())
            for i, c in enumerate(changes, start=1)]


def validate_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after ``change``; raises InvalidConfChange for a
    change that is a no-op or impossible in ``conf``."""
    nid, op = change.node_id, change.op
    if op == ConfChangeOp.ADD_VOTER and nid in conf.voters:
        raise InvalidConfChange(f"{nid} is already a voter")
    if op == ConfChangeOp.ADD_LEARNER and nid in conf.members():
        raise InvalidConfChange(f"{nid} is already a member")
    if op == ConfChangeOp.REMOVE_NODE and nid not in conf.members():
        raise InvalidConfChange(f"{nid} is not a member")
    try:
        return conf.apply(change)
    except ValueError as exc:
        raise InvalidConfChange(str(exc)) from exc
