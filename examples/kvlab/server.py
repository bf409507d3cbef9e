"""A data node's key-value service: its replica state and its line server.

``Replica`` answers requests (``kvproto``) from what the node knows of its
group: the current primary (from the group's primary file; its revision is
the *epoch*) and the live secondaries (from the group's registrations).

Replication, simply (this is a demo of coordination, not of replication):
the primary applies a PUT, sends ``REPL <epoch> <key> <value>`` to every
secondary it knows of at that moment and answers ``OK <acks>`` once each
has answered or timed out. A secondary applies a REPL unless it has seen a
higher epoch (so a deposed primary cannot overwrite a newer one's writes);
a secondary that missed writes (down, slow, joined later) is not caught up.
Secondaries answer GETs from their copy (possibly stale); clients read from
primaries.

``KVServer`` is the line protocol: one request at a time per connection
(the transport is paused while one is answered), lines over ``MAX_LINE``
end the connection, and every request is bounded by ``kvproto``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from examples.kvlab import kvproto
from examples.kvlab.kvproto import Get, KVStore, Put, Repl, Reply, Request, Role
from examples.kvlab.layout import Primary

Send = Callable[[str, Request], "defer.Deferred[Reply]"]
"""``send(addr, request)``: Deferred reply from the data node at ``addr``."""


class Replica:
    """One data node's store and role; ``handle`` answers a request."""

    log = Logger()

    def __init__(self, group: str, node: str, send: Send,
                 store: KVStore | None = None) -> None:
        self.group = group
        self.node = node
        self.send = send
        self.store = store if store is not None else KVStore()
        self.primary: Primary | None = None
        self.secondaries: dict[str, str] = {}     # node -> address

    @property
    def is_primary(self) -> bool:
        return self.primary is not None and self.primary.node == self.node

    def set_primary(self, primary: Primary | None) -> None:
        """The group's primary changed (None: there is none)."""
        was = self.is_primary
        self.primary = primary
        if primary is not None:
            self.store.epoch = max(self.store.epoch, primary.epoch)
        if self.is_primary and not was:
            self.log.info("{node} is now PRIMARY of {group} (epoch {epoch})",
                          node=self.node, group=self.group, epoch=self.store.epoch)
        elif was and not self.is_primary:
            self.log.info("{node} is no longer primary of {group}",
                          node=self.node, group=self.group)

    def set_members(self, members: Mapping[str, str]) -> None:
        """The group's live registrations (node -> address), self included."""
        self.secondaries = {n: a for n, a in members.items() if n != self.node}

    def handle(self, request: Request) -> bytes | defer.Deferred[bytes]:
        """The reply line (or a Deferred of it) to ``request``."""
        if isinstance(request, Get):
            value = self.store.get(request.key)
            return b"MISSING" if value is None else b"VALUE " + value
        if isinstance(request, Put):
            return self._put(request)
        if isinstance(request, Repl):
            return self.store.replicate(request.epoch, request.key, request.value)
        assert isinstance(request, Role)
        role = b"primary" if self.is_primary else b"secondary"
        return b"ROLE %s %s %s %d" % (self.group.encode(), self.node.encode(), role,
                                      self.store.epoch)

    def _put(self, request: Put) -> bytes | defer.Deferred[bytes]:
        if not self.is_primary:
            who = self.primary.node if self.primary else "-"
            return b"ERR NOT_PRIMARY " + who.encode()
        if not self.store.put(request.key, request.value):
            return b"ERR FULL"
        repl = Repl(self.store.epoch, request.key, request.value)
        acks = [self.send(addr, repl).addCallbacks(
                    self._acked, self._missed, callbackArgs=(node,), errbackArgs=(node,))
                for node, addr in sorted(self.secondaries.items())]
        d = defer.gatherResults(acks)
        return d.addCallback(lambda oks: b"OK %d" % sum(oks))

    def _acked(self, reply: Reply, node: str) -> bool:
        if reply.kind != "OK":
            self.log.warn("{node} refused a write: {kind} {rest}", node=node,
                          kind=reply.kind, rest=reply.rest.decode("ascii", "replace"))
        return reply.kind == "OK"

    def _missed(self, failure: Failure, node: str) -> bool:
        self.log.warn("replicating to {node} failed: {why}", node=node,
                      why=failure.getErrorMessage())
        return False


class KVServer(LineReceiver):
    """The line protocol of one client connection (see the module docstring)."""

    delimiter = b"\n"
    MAX_LENGTH = kvproto.MAX_LINE
    log = Logger()

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.gone = False

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.gone = True

    def lineReceived(self, line: bytes) -> None:
        request = kvproto.parse_request(line.rstrip(b"\r"))
        if isinstance(request, kvproto.BadRequest):
            self._send(b"ERR BAD_REQUEST " + request.why.encode())
            return
        answer = self.replica.handle(request)
        if isinstance(answer, bytes):
            self._send(answer)
            return
        self.pauseProducing()  # type: ignore[no-untyped-call]  # answers stay in order
        answer.addErrback(self._internal)
        answer.addCallback(self._answer)

    def _answer(self, line: bytes) -> None:
        if self.gone:
            return
        self._send(line)
        self.resumeProducing()  # type: ignore[no-untyped-call]

    def _internal(self, failure: Failure) -> bytes:
        self.log.failure("request failed", failure)
        return b"ERR INTERNAL"

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send(b"ERR BAD_REQUEST line too long")
        cast(Any, self.transport).loseConnection()

    def _send(self, line: bytes) -> None:
        self.sendLine(line)  # type: ignore[no-untyped-call]


class KVServerFactory(Factory):
    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    def buildProtocol(self, addr: Any) -> KVServer:
        return KVServer(self.replica)
