"""The client side of the data nodes' line protocol (Twisted).

``LineClient`` is one connection: requests are pipelined and answered in
order (the server answers one line per request, in order), so each reply
fires the oldest pending Deferred. ``LinePool`` keeps one connection per
address, makes it on first use, and times every request out; a failed or
timed-out request drops that connection (the next request makes a new one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from examples.kvlab.kvproto import MAX_LINE, Reply, Request, encode_request, parse_reply
from examples.kvlab.layout import split_address

MAX_PENDING = 256


class LinkError(ConnectionError):
    """The connection to a data node failed, closed or timed out."""


class LineClient(LineReceiver):
    """One connection to a data node."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self) -> None:
        self.pending: deque[defer.Deferred[Reply]] = deque()
        self.lost = False

    def request(self, request: Request) -> defer.Deferred[Reply]:
        """Deferred reply to ``request``; fails with LinkError if the
        connection ends first or too many requests are pending."""
        if self.lost:
            return defer.fail(LinkError("connection closed"))
        if len(self.pending) >= MAX_PENDING:
            return defer.fail(LinkError("too many requests pending"))
        d: defer.Deferred[Reply] = defer.Deferred()
        self.pending.append(d)
        self.sendLine(encode_request(request))  # type: ignore[no-untyped-call]
        return d

    def lineReceived(self, line: bytes) -> None:
        if not self.pending:     # an answer nobody asked for: the peer is confused
            cast(Any, self.transport).loseConnection()
            return
        self.pending.popleft().callback(parse_reply(line.rstrip(b"\r")))

    def lineLengthExceeded(self, line: bytes) -> None:
        cast(Any, self.transport).loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        pending, self.pending = self.pending, deque()
        for d in pending:
            d.errback(LinkError("connection lost"))


Connect = Callable[[str], "defer.Deferred[LineClient]"]


def tcp_connector(reactor: Any, timeout: float = 2.0) -> Connect:
    """``connect(addr)``: a Deferred LineClient connected over TCP."""
    def connect(addr: str) -> defer.Deferred[LineClient]:
        host, port = split_address(addr)
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
        d: defer.Deferred[LineClient] = connectProtocol(  # type: ignore[no-untyped-call]
            endpoint, LineClient())
        return d
    return connect


class LinePool:
    """One LineClient per address, made on first use."""

    def __init__(self, reactor: Any, connect: Connect | None = None,
                 timeout: float = 2.0) -> None:
        self.reactor = reactor
        self.connect = connect if connect is not None else tcp_connector(reactor, timeout)
        self.timeout = timeout
        self._clients: dict[str, LineClient] = {}
        self._waiting: dict[str, list[defer.Deferred[LineClient]]] = {}

    def request(self, addr: str, request: Request) -> defer.Deferred[Reply]:
        """Deferred reply from ``addr``; LinkError on any failure to get one
        within ``timeout`` seconds (connecting included)."""
        d: defer.Deferred[Reply] = defer.Deferred()
        link = self._link(addr)
        link.addCallback(lambda client: client.request(request))
        link.addBoth(_forward, d)
        d.addTimeout(self.timeout, self.reactor)
        d.addErrback(self._failed, addr)
        return d

    def _link(self, addr: str) -> defer.Deferred[LineClient]:
        client = self._clients.get(addr)
        if client is not None and not client.lost:
            return defer.succeed(client)
        self._clients.pop(addr, None)
        d: defer.Deferred[LineClient] = defer.Deferred()
        waiters = self._waiting.get(addr)
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[addr] = [d]
        self.connect(addr).addBoth(self._connected, addr)
        return d

    def _connected(self, result: LineClient | Failure, addr: str) -> None:
        waiters = self._waiting.pop(addr, [])
        if isinstance(result, LineClient):
            self._clients[addr] = result
        for waiter in waiters:
            _forward(result, waiter)

    def _failed(self, failure: Failure, addr: str) -> Failure:
        self.drop(addr)
        if failure.check(LinkError):  # type: ignore[no-untyped-call]
            return failure
        why = failure.getErrorMessage() or getattr(failure.type, "__name__", "error")
        return Failure(LinkError(f"{addr}: {why}"))  # type: ignore[no-untyped-call]

    def drop(self, addr: str) -> None:
        """Forget (and close) the connection to ``addr``."""
        client = self._clients.pop(addr, None)
        if client is not None and client.transport is not None:
            cast(Any, client.transport).loseConnection()

    def close(self) -> None:
        for addr in list(self._clients):
            self.drop(addr)


def _forward(result: Any, d: defer.Deferred[Any]) -> None:
    """Fire ``d`` with ``result`` (a value or a Failure) unless it already
    fired (timed out, say)."""
    if d.called:
        return None
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)
    return None


def fire(d: defer.Deferred[Any], result: Any) -> None:
    """``d.callback(result)`` unless ``d`` already fired."""
    if not d.called:
        d.callback(result)
