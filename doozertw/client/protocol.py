"""One doozer connection, client side, on Twisted.

``DoozerClientProtocol.send(call)`` writes a request under a free tag and
returns a Deferred that fires with the verb's result (see ``core.result_of``)
or fails with DoozerError. Many requests may be in flight; answers are
matched by tag in whatever order they come.

Cancelling a Deferred forgets the request here, but its tag stays reserved
until the server answers it (doozer has no cancel verb), so a tag is never
reused while the server may still be using it. When the connection is lost,
``on_lost`` (if set) is called once with the reason, and then every
unanswered request fails with ``ConnectionLost``.
"""

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from doozertw.client.core import ConnectionLost, FrameReader, ProtocolViolation, Tags, result_of


class DoozerClientProtocol(Protocol):
    """Client end of one doozer connection."""

    log = Logger()

    def __init__(self, max_frame=None):
        self._reader = FrameReader() if max_frame is None else FrameReader(max_frame)
        self._tags = Tags()
        self._pending = {}     # tag -> (call, Deferred); Deferred None if abandoned
        self.connected = False
        self.lost = False
        self.on_lost = None
        self.address = None

    @property
    def in_flight(self):
        """Requests sent and not yet answered (abandoned ones included)."""
        return len(self._pending)

    def connectionMade(self):
        self.connected = True

    def send(self, call):
        """Deferred result of ``call`` on this connection."""
        if self.lost or not self.connected:
            return defer.fail(ConnectionLost("not connected"))
        tag = self._tags.take()
        d = defer.Deferred(lambda _: self._abandon(tag))
        self._pending[tag] = (call, d)
        self.transport.write(call.encode(tag))
        return d

    def _abandon(self, tag):
        entry = self._pending.get(tag)
        if entry is not None:
            self._pending[tag] = (entry[0], None)

    def dataReceived(self, data):
        try:
            responses = self._reader.feed(data)
        except ProtocolViolation as e:
            self.log.warn("dropping doozer connection to {address}: {why}",
                          address=self.address, why=str(e))
            self.transport.abortConnection()
            return
        for response in responses:
            self._answer(response)

    def _answer(self, response):
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

    def close(self):
        """Drop the connection (pending requests fail with ConnectionLost)."""
        if self.transport is not None and not self.lost:
            self.transport.loseConnection()

    def connectionLost(self, reason=None):
        self.connected = False
        if self.lost:
            return
        self.lost = True
        pending, self._pending = self._pending, {}
        if self.on_lost is not None:
            self.on_lost(self, reason)
        for call, d in pending.values():
            if d is not None:
                d.errback(ConnectionLost())
