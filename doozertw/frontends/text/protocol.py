"""TextProtocol: one text-protocol connection to a Node (framing, ordering, back-pressure)."""

import itertools
from collections import deque

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.access import Access, AccessThrottle
from doozertw.frontends.connection import (
    IN_FLIGHT, WRITES, ClientConnection, ConnectionStateView)
from doozertw.frontends.text.admin import TEXT_CONNECTIONS
from doozertw.frontends.text.framing import Framer, FramingError, Rejected, value_field
from doozertw.frontends.text.replies import clean, error_reply
from doozertw.frontends.text.txn import TxnBlock
from doozertw.frontends.text.verbs import READ, WRITE, COMMANDS, TextVerbs

INPUT_SLACK = 256 * 1024

OUTPUT_BATCH = 64 * 1024
"""Bytes of replies after which a connection's turn ends."""

ABANDONED = "abandoned: the client closed its side"
UNTERMINATED = "unterminated txn block: the client closed its side before end"

_serials = itertools.count(1)


class _Reply:
    """A slot in the ordered reply queue; ``then`` runs once it is written."""

    __slots__ = ("data", "then")

    def __init__(self, data=None, then=None):
        self.data = data
        self.then = then


@implementer(IPushProducer, IHalfCloseableProtocol)
class TextProtocol(ConnectionStateView, TextVerbs, Protocol):
    """One text-protocol connection to a Node.

    It registers itself as the transport's push producer: while the
    transport says its output is full (``pauseProducing``) the connection
    reads no more commands; once more than ``limits.max_output_buffer``
    bytes have been written since, its watches are cancelled, and past
    ``limits.max_unsent`` the connection is aborted (its output dropped).
    Reading also pauses while ``limits.max_in_flight`` replies or
    ``limits.max_writes_in_flight`` writes are outstanding, and for the rest
    of a reactor turn after ``limits.max_batch`` commands or OUTPUT_BATCH
    bytes of replies (other connections go first).

    A client that half-closes (``printf 'get /x\n' | nc host 8046``) still
    gets an answer to every complete command it sent, except that its waits
    and reads of future revisions are answered ``ERR OTHER`` (ABANDONED)
    at once and its watches end: a client that closed looks the same, and
    must not leave them behind. The connection then closes.

    ``node`` is a doozertw.frontends.interface.NodeAPI. The connection's
    states, read gate and output measure are a ClientConnection
    (doozertw.frontends.connection), of which this is the ConnectionOwner.

    A ``txn`` line opens a block: the lines up to ``end`` are collected in a
    TxnBlock (bounded by ``limits.max_txn_ops`` and ``limits.max_txn_bytes``)
    and answered as one command. The request timer runs while a block is
    open (each line restarts it); a half-close before ``end`` answers the
    block ``ERR OTHER`` (UNTERMINATED).
    """

    log = Logger()

    def __init__(self, node, secrets, limits, clock):
        self.node = node
        self.limits = limits
        self.clock = clock
        self.access = Access(secrets, AccessThrottle(clock, limits))
        self._framer = Framer(limits.max_line, limits.max_value)
        self._replies = deque()
        self._streams = {}
        self._next_stream = 1
        self._pending = set()
        self._parked = set()
        self._write_seq = 0
        self._writes_pending = set()
        self._gates = deque()
        self._held_bytes = 0
        self._timer = None
        self._resume_call = None
        self._turn_commands = 0
        self._turn_bytes = 0
        self._processing = False
        self._flushing = False
        self._block = None
        self._block_reply = None
        self.serial = next(_serials)
        self.served = 0
        """Commands read (a txn block counts once)."""
        self.answered = 0
        """Replies written."""
        self._conn = ClientConnection("text", self, node, limits, clock)

    @property
    def watches(self):
        """Streaming watches open on this connection."""
        return len(self._streams)

    # -- connection life (doozertw.frontends.connection) -----------------------

    def connectionMade(self):
        TEXT_CONNECTIONS.add(self.node, self)
        self._conn.made(self.transport)

    def connectionLost(self, reason=None):
        TEXT_CONNECTIONS.discard(self.node, self)
        self._conn.lost()
        self._teardown()

    def readConnectionLost(self):
        """The client sent all it will: answer what it sent, then close.

        Watches end and waits are abandoned at once (they could hold the
        connection open forever for a client that is gone).
        """
        self._conn.half_closed()

    def abandon_parked(self):
        """End the watches; cancel waits and reads of future revisions
        (their replies become ABANDONED errors)."""
        self._cancel_timer()
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream.stop()
        parked, self._parked = self._parked, set()
        for d in parked:
            d.cancel()
        if not self._paused_by and not self._processing:
            self._unterminated()

    def _unterminated(self):
        """Input ended inside a txn block: answer the block, drop it."""
        if self._block is None:
            return
        reply, self._block, self._block_reply = self._block_reply, None, None
        self._fill(error_reply(ErrCode.OTHER, UNTERMINATED), reply)

    def writeConnectionLost(self):
        self._conn.close("write side lost")

    def _finish_if_done(self):
        """After the client's half-close: close once nothing is left to answer."""
        self._conn.settle()

    def all_answered(self):
        return (not self._replies and not self._streams
                and not (self._paused_by and self._framer.buffered)
                and self._resume_call is None and not self._processing)

    def before_close(self):
        self._cancel_timer()

    def _teardown(self):
        """The connection is closing or closed: cancel pending reads, waits and
        watches; drop replies."""
        self._cancel_timer()
        call, self._resume_call = self._resume_call, None
        if call is not None and call.active():
            call.cancel()
        for stream in list(self._streams.values()):
            stream.stop()
        self._streams.clear()
        pending, self._pending = self._pending, set()
        self._parked = set()
        for d in pending:
            d.cancel()
        self._gates.clear()
        self._replies.clear()
        self._block = self._block_reply = None

    def dataReceived(self, data):
        if self._closed:
            return
        self._framer.feed(data)
        self._process()

    # -- IPushProducer: the transport's output side ------------------------------

    def pauseProducing(self):
        """Called on every write while the transport's buffer is full."""
        self._conn.output_paused()
        self._cancel_timer()

    def resumeProducing(self):
        if self._conn.output_resumed():
            self._read_soon()

    def stopProducing(self):
        """The transport is going away; connectionLost follows and cleans up."""

    # -- input ---------------------------------------------------------------------

    def _pause_input(self, reason):
        self._conn.pause(reason)
        self._cancel_timer()

    def _resume_input(self, reason):
        """Read again; buffered commands run from the reactor, never from here.

        This may be called inside a store notification (a wait fired), and a
        command run there would apply a write in the middle of another one.
        """
        if self._conn.release(reason):
            self._read_soon()

    def _read_soon(self):
        if not self._processing and self._resume_call is None:
            self._resume_call = self.clock.callLater(0, self._resumed)

    def _resumed(self):
        self._resume_call = None
        if not self._processing and not self._closed:
            self._process()

    def _process(self):
        self._processing = True
        progressed = exhausted = False
        self._turn_commands = self._turn_bytes = 0
        try:
            while not self._paused_by and not self._closed:
                if (self._turn_commands >= self.limits.max_batch
                        or self._turn_bytes >= OUTPUT_BATCH):
                    self._end_turn()
                    break
                item = self._framer.next()
                if item is None:
                    exhausted = True
                    break
                progressed = True
                self._turn_commands += 1
                self._handle(item)
        except FramingError as e:
            self._fatal(str(e))
        finally:
            self._processing = False
        if self._input_ended:
            if exhausted:
                self._unterminated()
            self._finish_if_done()
        elif not self._closed:
            self._arm_timer(progressed)
            if self._framer.buffered > self.limits.max_line + self.limits.max_value + INPUT_SLACK:
                self._fatal("input overflow")

    def _end_turn(self):
        """Read no more commands this reactor turn; the other connections go first."""
        self._cancel_timer()
        self._conn.end_turn()

    def read_more(self):
        if not self._processing:
            self._process()

    def _arm_timer(self, progressed):
        if self._paused_by or not (self._framer.partial or self._block is not None):
            self._cancel_timer()
        elif self._timer is None or progressed:
            self._cancel_timer()
            self._timer = self.clock.callLater(self.limits.request_send_timeout, self._timed_out)

    def _cancel_timer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timed_out(self):
        self._timer = None
        self._fatal("request timeout")

    def _fatal(self, why):
        """Answer a framing violation out of band and close the connection."""
        if self._closed:
            return
        self.log.warn("text client {peer} disconnected: {why}", peer=self._peer(), why=why)
        self.transport.write(error_reply(ErrCode.OTHER, why))
        self._conn.close(why)
        self._teardown()

    # -- output --------------------------------------------------------------------

    def _write(self, data):
        if self._closed:
            return
        self.transport.write(data)
        self._turn_bytes += len(data)
        if self._conn.wrote(len(data)):
            self._overflow()
        elif self._conn.unsent > self.limits.max_output_buffer:
            self._slow_consumer()

    def _overflow(self):
        """The client does not read its replies: drop them and the connection."""
        self.log.warn("text client {peer} disconnected: {unsent} bytes of replies unread "
                      "(max_unsent {limit})", peer=self._peer(), unsent=self._conn.unsent,
                      limit=self.limits.max_unsent)
        self._conn.abort("replies unread")
        self._teardown()

    def _enqueue(self, reply):
        self._replies.append(reply)
        if len(self._replies) >= self.limits.max_in_flight:
            self._pause_input(IN_FLIGHT)

    def _fill(self, data, reply):
        if data is not None and not self._closed:
            reply.data = data
            self._flush()

    def _flush(self):
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._replies and self._replies[0].data is not None:
                reply = self._replies.popleft()
                self.answered += 1
                self._write(reply.data)
                if reply.then is not None:
                    reply.then()
        finally:
            self._flushing = False
        if len(self._replies) < self.limits.max_in_flight:
            self._resume_input(IN_FLIGHT)
        if self._input_ended:
            self._finish_if_done()

    # -- commands --------------------------------------------------------------------

    def _handle(self, item):
        if self._block is not None:
            self._block_line(item)
            return
        self.served += 1
        if isinstance(item, Rejected):
            self._enqueue(_Reply(error_reply(
                ErrCode.OTHER, f"value too large ({item.size} > {self.limits.max_value})")))
            self._flush()
            return
        reply = _Reply()
        self._enqueue(reply)
        verb = value_field(item.line)[0]
        if verb == b"txn":
            self._block, self._block_reply = TxnBlock(item.line, self.limits), reply
            return
        self._answer(verb, reply, self._dispatch, verb, item.line, item.literal, reply)

    def _block_line(self, item):
        """The next line of the open txn block; at ``end``, run the block."""
        block = self._block
        if isinstance(item, Rejected):
            block.reject(item.size)
            return
        if not block.add(item.line, item.literal):
            return
        reply, self._block, self._block_reply = self._block_reply, None, None
        self._answer(b"txn", reply, self.run_txn, block)

    def _answer(self, verb, reply, fn, *args):
        """Run ``fn(*args)`` (bytes or a Deferred of bytes); its outcome fills ``reply``."""
        try:
            d = fn(*args)
            if isinstance(d, bytes):
                d = defer.succeed(d)
        except DoozerError as e:
            d = defer.fail(e)
        except Exception:
            self.log.failure("text command {verb!r} failed", verb=verb)
            d = defer.fail(DoozerError(ErrCode.OTHER, "internal error"))
        d.addErrback(self._failed, verb)
        d.addCallback(self._fill, reply)

    def _dispatch(self, verb, line, literal, reply):
        try:
            name = verb.decode("ascii")
        except UnicodeDecodeError:
            name = None
        found = COMMANDS.get(name)
        if found is None:
            raise DoozerError(ErrCode.UNKNOWN_VERB, clean(verb.decode("latin-1")))
        needs, method = found
        if needs == READ:
            self.access.require_read()
        elif needs == WRITE:
            self.access.require_write()
        result = method(self, line, literal, reply)
        if isinstance(result, bytes):
            return defer.succeed(result)
        return result

    def _failed(self, failure, verb):
        if failure.check(defer.CancelledError):
            if self._input_ended and not self._closed:
                return error_reply(ErrCode.OTHER, ABANDONED)
            return None
        if failure.check(DoozerError):
            return error_reply(failure.value.code, failure.value.detail)
        self.log.failure("text command {verb!r} failed", failure, verb=verb)
        return error_reply(ErrCode.OTHER, "internal error")

    def _track(self, d):
        """Remember a read's Deferred so that losing the connection cancels it."""
        self._pending.add(d)

        def untrack(result):
            self._pending.discard(d)
            return result

        return d.addBoth(untrack)

    def _park(self, d, parked=True):
        """Abandon ``d`` (a wait, or a read of a future revision) on half-close."""
        if not parked:
            return d
        self._parked.add(d)

        def unpark(result):
            self._parked.discard(d)
            return result

        return d.addBoth(unpark)

    def _future(self, rev):
        """True if ``rev`` is a revision this node has not applied yet."""
        return rev is not None and rev > self.node.applied_rev

    def _after_own_writes(self, fn, *args):
        """Run ``fn(*args)`` (a Deferred) once the writes this connection sent before are done."""
        if not self._writes_pending:
            return self._track(defer.maybeDeferred(fn, *args))
        gate = defer.Deferred()
        self._gates.append((self._write_seq, gate))
        return self._track(gate.addCallback(lambda _: fn(*args)))

    def _writing(self, d):
        """Count the write ``d`` as in flight until it fires; open the gates it held."""
        self._write_seq += 1
        seq = self._write_seq
        self._writes_pending.add(seq)
        if len(self._writes_pending) >= self.limits.max_writes_in_flight:
            self._pause_input(WRITES)

        def done(result):
            self._writes_pending.discard(seq)
            if len(self._writes_pending) < self.limits.max_writes_in_flight:
                self._resume_input(WRITES)
            oldest = min(self._writes_pending, default=seq + 1)
            while self._gates and self._gates[0][0] < oldest:
                self._gates.popleft()[1].callback(None)
            return result

        return d.addBoth(done)

    def _peer(self):
        return self._conn.peer()
