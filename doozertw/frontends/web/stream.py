"""A bounded outgoing queue that respects transport back-pressure.

``OutputQueue`` is registered as a streaming (push) producer on a transport
or request. While the consumer keeps up, ``send`` writes at once; while the
transport has paused us, messages queue; once the queue holds more than
``limit`` bytes, ``on_overflow()`` is called (once) and nothing more is
sent. ``stopProducing`` (the consumer went away) calls ``on_stop()``.
``on_idle()`` (optional) is called whenever ``resumeProducing`` has written
everything queued and the consumer still takes more, so that a sender that
produces lazily (a paginated snapshot) writes its next part only then.
"""

from collections import deque

from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer


@implementer(IPushProducer)
class OutputQueue:
    def __init__(self, write, limit, on_overflow, on_stop, on_idle=None):
        self._write = write
        self._limit = limit
        self._on_overflow = on_overflow
        self._on_stop = on_stop
        self._on_idle = on_idle
        self._queue = deque()
        self.queued_bytes = 0
        self.paused = False
        self.closed = False

    def send(self, data):
        """Write ``data`` now, or queue it while paused; False once closed."""
        if self.closed:
            return False
        if not self.paused and not self._queue:
            self._write(data)
            return True
        self._queue.append(data)
        self.queued_bytes += len(data)
        if self.queued_bytes > self._limit:
            self.close()
            self._on_overflow()
            return False
        return True

    @property
    def idle(self):
        """True when a ``send`` now would be written at once."""
        return not (self.closed or self.paused or self._queue)

    def close(self):
        self.closed = True
        self._queue.clear()
        self.queued_bytes = 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while self._queue and not self.paused and not self.closed:
            data = self._queue.popleft()
            self.queued_bytes -= len(data)
            self._write(data)
        if self.idle and self._on_idle is not None:
            self._on_idle()

    def stopProducing(self):
        if not self.closed:
            self.close()
            self._on_stop()
