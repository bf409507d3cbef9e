"""One doozer connection, client side, on Twisted.

``DoozerClientProtocol.send(call)`` writes a request under a free tag and
returns a Deferred that fires with the verb's result (see ``core.result_of``)
or fails with DoozerError. Many requests may be in flight; answers are
matched by tag in whatever order they come. Requests made by callbacks
while a batch of answers is handled go out in one write after the batch.

Cancelling a Deferred forgets the request here, but its tag stays reserved
until the server answers it (doozer has no cancel verb), so a tag is never
reused while the server may still be using it. When the connection is lost,
``on_lost`` (if set) is called once with the reason, and then every
unanswered request fails with ``ConnectionLost``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol as TypingProtocol, TypeVar, overload

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw.nodelay import tune_tcp
from doozertw.client.core import (
    Call, ConnectionLost, ProtocolViolation, ResponseReader, Tags, result_of)


class Answer(TypingProtocol):
    """Where ``send`` may deliver an outcome instead of a Deferred."""

    def callback(self, result: Any) -> Any: ...

    def errback(self, error: Exception) -> Any: ...


A = TypeVar("A", bound=Answer)


class DoozerClientProtocol(Protocol):
    """Client end of one doozer connection."""

    log = Logger()
    # An ITCPTransport while connected; zope interfaces are opaque to mypy.
    transport: Any

    def __init__(self, max_frame: int | None = None) -> None:
        self._reader = ResponseReader() if max_frame is None else ResponseReader(max_frame)
        self._tags = Tags()
        # tag -> (call, Deferred or Answer); None once abandoned
        self._pending: dict[int, tuple[Call, Any]] = {}
        self._out: list[bytes] | None = None   # requests made while answering a batch
        self.connected = False
        self.lost = False
        self.on_lost: Callable[[DoozerClientProtocol, Failure | None], None] | None = None
        self.address: object = None

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (abandoned ones included)."""
        return len(self._pending)

    def connectionMade(self) -> None:
        """Requests are small and latency-bound: disable Nagle where the
        transport allows it (TCP; the blocking client does the same)."""
        self.connected = True
        tune_tcp(self.transport)

    @overload
    def send(self, call: Call, answer: None = None) -> defer.Deferred[Any]: ...

    @overload
    def send(self, call: Call, answer: A) -> A: ...

    def send(self, call: Call, answer: Answer | None = None) -> defer.Deferred[Any] | Answer:
        """Deferred result of ``call`` on this connection.

        With ``answer`` -- any object with ``callback(result)`` and
        ``errback(exception)``, called exactly once and never raising -- the
        outcome goes there instead, and ``answer`` is returned: no Deferred
        is made per request (the bench keeps thousands in flight this way).
        """
        if self.lost or not self.connected:
            if answer is None:
                return defer.fail(ConnectionLost("not connected"))
            answer.errback(ConnectionLost("not connected"))
            return answer
        tag = self._tags.take()
        d = defer.Deferred(lambda _: self._abandon(tag)) if answer is None else answer
        self._pending[tag] = (call, d)
        out = self._out
        if out is None:
            self.transport.write(call.encode(tag))
        else:
            out.append(call.encode(tag))
        return d

    def _abandon(self, tag: int) -> None:
        entry = self._pending.get(tag)
        if entry is not None:
            self._pending[tag] = (entry[0], None)

    def dataReceived(self, data: bytes) -> None:
        try:
            responses = self._reader.feed(data)
        except ProtocolViolation as e:
            self.log.warn("dropping doozer connection to {address}: {why}",
                          address=self.address, why=str(e))
            self.transport.abortConnection()
            return
        out: list[bytes] = []
        self._out = out
        try:
            for response in responses:
                self._answer(response)
        finally:
            self._out = None
            if out and not self.lost:
                self.transport.writeSequence(out)

    def _answer(self, response: Any) -> None:
        tag = response.tag
        entry = self._pending.pop(tag, None)
        if entry is None:
            self.log.debug("answer for unknown tag {tag}", tag=tag)
            return
        self._tags.release(tag)
        call, d = entry
        if d is None:
            return
        try:
            result = result_of(call.verb, response)
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)

    def close(self) -> None:
        """Drop the connection (pending requests fail with ConnectionLost)."""
        if self.transport is not None and not self.lost:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        if self.lost:
            return
        self.lost = True
        pending, self._pending = self._pending, {}
        if self.on_lost is not None:
            self.on_lost(self, reason)
        for _call, d in pending.values():
            if d is not None:
                d.errback(ConnectionLost())
