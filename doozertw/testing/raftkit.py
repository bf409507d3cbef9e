"""Driving one RaftNode by hand in unit tests: take its Ready, read what it
sent, and win it an election by answering its vote requests."""

from __future__ import annotations

from doozertw.consensus import messages as msg
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.ready import Ready


def drain(node: RaftNode) -> Ready:
    """Take the node's Ready and acknowledge it as persisted and sent."""
    rd = node.ready()
    node.advance(rd)
    return rd


def sent(node: RaftNode, cls: type | None = None) -> list[msg.Message]:
    """The messages of the node's next Ready (only those of ``cls``)."""
    return [m for m in drain(node).messages if cls is None or isinstance(m, cls)]


def make_leader(node: RaftNode) -> RaftNode:
    """Win an election for ``node`` by answering its requests by hand."""
    node.campaign()
    for _ in range(3):
        for m in sent(node):
            if isinstance(m, msg.PreVote):
                node.step(msg.PreVoteResponse(m.dst, node.id, m.term, True))
            elif isinstance(m, msg.RequestVote):
                node.step(msg.RequestVoteResponse(m.dst, node.id, m.term, True))
        if node.is_leader:
            drain(node)
            return node
    raise AssertionError("node did not become leader")
