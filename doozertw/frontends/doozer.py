"""The doozer protobuf front end: doozerd's client protocol over one connection.

Wire contract: every message is a 4-byte big-endian length followed by that
many bytes of a protobuf ``Request`` (client to server) or ``Response``
(server to client). Replies carry the tag of their request and may go out of
order: a WAIT that is still waiting does not hold back later requests.

Per-connection contract:

- A frame longer than ``limits.max_frame`` or bytes that do not parse as a
  Request are a framing violation: the connection is closed and nothing of
  that frame reaches the node.
- A request whose tag is still in flight gets ``TAG_IN_USE`` (the earlier one
  continues); a missing tag is tag 0; a missing or unknown verb gets
  ``UNKNOWN_VERB``; missing arguments get ``MISSING_ARG``.
- Errors of the node are answered with their code and detail; any other
  exception becomes ``OTHER`` and is logged, never raised to the transport.
- Reading stops (the transport is paused; buffered frames wait) while
  ``limits.max_in_flight`` requests or ``limits.max_writes_in_flight``
  writes are unanswered, while the transport's output buffer is full (the
  connection is its push producer), and for the rest of a reactor turn once
  ``limits.max_batch`` requests or OUTPUT_BATCH bytes of replies were
  handled in it (so one busy connection cannot starve the others).
- Replies made while the output is full count as unsent; past
  ``limits.max_unsent`` of them the connection is aborted (its queued output
  dropped). A connection therefore holds at most about OUTPUT_BATCH + the
  transport's buffer + ``max_unsent`` + one reply of output, and
  ``max_frame`` + one read of input.
- A frame begun but not completed within ``limits.request_send_timeout`` seconds
  closes the connection.
- When the connection is lost, pending WAITs and reads pinned to a future
  revision are cancelled (nothing of them stays in the store) and late
  answers of writes are dropped. When the client half-closes (or closes: the
  two look alike), those are answered at once with ``OTHER`` (ABANDONED)
  and cancelled; the other requests are answered, then the connection
  closes.

doozertw's extension verbs (docs/protocol.md, "Extensions: leases and transactions"): LEASE_GRANT,
LEASE_KEEPALIVE, LEASE_REVOKE, LEASE_TTL, LEASE_LIST, TXN and SET's
``lease`` field. Writes (all but LEASE_TTL and LEASE_LIST) need write
access. A TXN is bounded before it reaches the node (``limits.max_txn_ops``
compares and ops, ``limits.max_txn_bytes`` of paths and values, each path
and value within ``max_path``/``max_value``); LEASE_TTL and LEASE_LIST
answer one page (at most PAGE_ITEMS entries, about PAGE_BYTES of paths)
after the key given and set ``more`` when the page was cut short
(doozertw.frontends.doozer_ext builds them).
"""

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer
from twisted.logger import Logger

from doozertw.errors import PERMISSION_DENIED, DoozerError, ErrCode
from doozertw.frontends.access import Access, AccessThrottle
from doozertw.frontends.connection import (
    IN_FLIGHT, WRITES, ClientConnection, ConnectionStateView)
from doozertw.wire import (
    FLAG_DEL, FLAG_SET, VERBS, FrameReader, FrameTooLarge, MalformedFrame, Response, frame,
    parse_request)
from doozertw.frontends.doozer_ext import MAX_ID, lease_id, lease_page, list_page, txn_of
from doozertw.frontends.interface import SET

_OTHER = int(ErrCode.OTHER)

OUTPUT_BATCH = 64 * 1024
"""Bytes of replies after which a connection's turn ends."""

ABANDONED = "abandoned: the client closed its side"



_encode = frame


@implementer(IHalfCloseableProtocol, IPushProducer)
class DoozerProtocol(ConnectionStateView, Protocol):
    """Serves doozer's protobuf protocol on one connection for one Node.

    After the client half-closes, every request it sent is still answered,
    except WAITs and reads pinned to a future revision, which are abandoned
    (answered with an error) at once; then the connection closes.

    ``node`` is a doozertw.frontends.interface.NodeAPI. The connection's
    states, read gate and output measure are a ClientConnection
    (doozertw.frontends.connection), of which this is the ConnectionOwner.
    """

    log = Logger()

    def __init__(self, node, secrets, limits, clock):
        self.node = node
        self.limits = limits
        self.clock = clock
        self.access = Access(secrets, AccessThrottle(clock, limits))
        self._frames = FrameReader(limits.max_frame)
        self._pending = {}          # tag -> Deferred of an unanswered request
        self._cancellable = set()   # tags of pending WAITs and reads (cancelled on close)
        self._parked = set()        # tags of WAITs and future reads (abandoned on half-close)
        self._writes = set()        # tags of pending SET, DEL, NOP
        self._out = None            # replies batched while parsing, else None
        self._out_bytes = 0
        self._parsing = False
        self._stall_timer = None
        self._conn = ClientConnection("doozer", self, node, limits, clock)

    # -- connection life (doozertw.frontends.connection) ----------------------

    def connectionMade(self):
        self._conn.made(self.transport)

    def connectionLost(self, reason=None):
        self._conn.lost()
        self._cancel_stall_timer()
        cancellable = [self._pending[tag] for tag in self._cancellable if tag in self._pending]
        self._cancellable.clear()
        self._parked.clear()
        self._writes.clear()
        for d in cancellable:
            d.cancel()
        self._pending.clear()
        self._frames.clear()

    def readConnectionLost(self):
        """The client sends no more: abandon what may wait forever, answer the rest."""
        self._conn.half_closed()

    def abandon_parked(self):
        """Answer WAITs and reads of future revisions with ABANDONED; cancel them."""
        self._cancel_stall_timer()
        parked = [(tag, self._pending.pop(tag)) for tag in self._parked if tag in self._pending]
        self._parked.clear()
        for tag, d in parked:
            self._cancellable.discard(tag)
            self._error(tag, _OTHER, ABANDONED)
            d.cancel()

    def writeConnectionLost(self):
        self._close()

    def _finish_if_done(self):
        self._conn.settle()

    def all_answered(self):
        return (not self._pending and not self._parsing
                and not (self._paused_by and self._has_frame()))

    def _has_frame(self):
        return self._frames.has_frame()

    def _violation(self, why, **fields):
        """Close the connection for breaking the framing; log why."""
        self.log.warn("doozer client {peer} disconnected: {why}",
                      peer=self._peer(), why=why, **fields)
        self._close()

    def _close(self):
        """Send the replies already made, then close (the buffer is dropped)."""
        self._conn.close("closed by the server")

    def before_close(self):
        out = self._out
        if out:
            self.transport.writeSequence(out)
            out.clear()
        self._cancel_stall_timer()
        self._frames.clear()

    def _peer(self):
        return self._conn.peer()

    # -- framing -----------------------------------------------------------

    def dataReceived(self, data):
        if self._closed:
            return
        self._frames.feed(data)
        if not self._paused_by:
            self._parse()

    def _parse(self):
        """Handle complete frames in the buffer until paused, closed or the turn ends."""
        if self._parsing:
            return
        self._parsing = True
        self._out = out = []
        self._out_bytes = 0
        try:
            self._parse_frames()
        finally:
            self._parsing = False
            self._out = None
            if out and not self._closed:
                self.transport.writeSequence(out)
        if self._input_ended:
            self._finish_if_done()

    def _parse_frames(self):
        frames = self._frames
        budget = self.limits.max_batch
        progressed = False
        while not self._paused_by and not self._closed:
            if budget <= 0 or self._out_bytes >= OUTPUT_BATCH:
                if frames.has_frame():
                    self._end_turn()
                break
            try:
                body = frames.next_frame()
                if body is None:
                    break
                request = parse_request(body)
            except FrameTooLarge as e:
                self._violation("frame too long", length=e.length, limit=e.limit)
                return
            except MalformedFrame:
                self._violation("malformed request frame", length=len(body))
                return
            progressed = True
            budget -= 1
            self._handle(request)
        if self._closed:
            return
        if progressed:
            self._cancel_stall_timer()
        if frames.buffered and not self._paused_by and not self._input_ended:
            self._start_stall_timer()

    def _start_stall_timer(self):
        if self._stall_timer is None:
            self._stall_timer = self.clock.callLater(
                self.limits.request_send_timeout, self._stalled)

    def _cancel_stall_timer(self):
        timer, self._stall_timer = self._stall_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _stalled(self):
        self._stall_timer = None
        self._violation("request not completed in time",
                        timeout=self.limits.request_send_timeout, buffered=self._frames.buffered)

    # -- flow control ------------------------------------------------------

    def _pause(self, reason):
        self._conn.pause(reason)
        self._cancel_stall_timer()

    def _resume(self, reason):
        """Read again once nothing else holds reading; parse what is buffered."""
        if self._conn.release(reason):
            self._parse()

    def _end_turn(self):
        """Stop reading until the next reactor turn (the others go first)."""
        self._cancel_stall_timer()
        self._conn.end_turn()

    def read_more(self):
        self._parse()

    # -- IPushProducer: the transport's output side ----------------------------

    def pauseProducing(self):
        """The transport's buffer is full: read nothing more until it drains.

        A transport calls this on every write while its buffer is full; only
        the first starts counting unsent bytes.
        """
        self._conn.output_paused()
        self._cancel_stall_timer()

    def resumeProducing(self):
        if self._conn.output_resumed():
            self._parse()

    def stopProducing(self):
        """The transport is going away; connectionLost follows and cleans up."""

    # -- replies -----------------------------------------------------------

    def _write(self, data):
        if self._closed:
            return
        out = self._out
        if out is not None:
            out.append(data)
            self._out_bytes += len(data)
        else:
            self.transport.write(data)
        if self._conn.wrote(len(data)):
            self._overflow()

    def _overflow(self):
        """The client does not read its replies: drop them and the connection."""
        self.log.warn("doozer client {peer} disconnected: {unsent} bytes of replies "
                      "unread (max_unsent {limit})", peer=self._peer(),
                      unsent=self._conn.unsent, limit=self.limits.max_unsent)
        if self._out is not None:
            self._out.clear()
        self._cancel_stall_timer()
        self._frames.clear()
        self._conn.abort("replies unread")

    def _error(self, tag, code, detail=""):
        response = Response(tag=tag, err_code=code)
        if detail:
            response.err_detail = detail
        self._write(_encode(response))

    def _finish(self, tag):
        """Forget an answered request; resume reading once below the limits."""
        self._pending.pop(tag, None)
        self._cancellable.discard(tag)
        self._parked.discard(tag)
        self._writes.discard(tag)
        if len(self._writes) < self.limits.max_writes_in_flight:
            self._resume(WRITES)
        if len(self._pending) < self.limits.max_in_flight:
            self._resume(IN_FLIGHT)
        if self._input_ended:
            self._finish_if_done()

    def _track(self, tag, d, on_result, *args, cancellable=False, parked=False, write=False):
        """Answer ``tag`` with ``on_result(result, *args, tag)`` or an error reply.

        A ``cancellable`` request (a read or WAIT) is cancelled if the
        connection is lost before it is answered; a ``parked`` one (a WAIT or
        a read of a future revision) also when the client half-closes. A
        ``write`` counts toward ``limits.max_writes_in_flight``.
        """
        self._pending[tag] = d
        if cancellable or parked:
            self._cancellable.add(tag)
        if parked:
            self._parked.add(tag)
        if write:
            self._writes.add(tag)
        d.addCallback(on_result, *args, tag).addErrback(self._failed, tag)

    def _failed(self, failure, tag):
        if self._closed or tag not in self._pending:
            return None
        error = failure.value
        if isinstance(error, DoozerError):
            self._error(tag, int(error.code), error.detail or "")
        else:
            self.log.failure("doozer request {tag} failed unexpectedly", failure, tag=tag)
            self._error(tag, _OTHER, "internal error")
        self._finish(tag)
        return None

    def _reply(self, response, tag):
        if self._closed:
            return
        response.tag = tag
        self._write(_encode(response))
        self._finish(tag)

    # -- dispatch ----------------------------------------------------------

    def _handle(self, request):
        tag = request.tag
        if tag in self._pending:
            self._error(tag, int(ErrCode.TAG_IN_USE))
            return
        handler = _HANDLERS.get(request.verb) if request.HasField("verb") else None
        if handler is None:
            self._error(tag, int(ErrCode.UNKNOWN_VERB))
            return
        try:
            handler(self, request, tag)
        except DoozerError as e:
            self._forget(tag)
            self._error(tag, int(e.code), e.detail or "")
        except Exception:
            self._forget(tag)
            self.log.failure("doozer request {tag} crashed", tag=tag)
            self._error(tag, _OTHER, "internal error")
        if len(self._pending) >= self.limits.max_in_flight:
            self._pause(IN_FLIGHT)
        if len(self._writes) >= self.limits.max_writes_in_flight:
            self._pause(WRITES)

    def _forget(self, tag):
        self._pending.pop(tag, None)
        self._cancellable.discard(tag)
        self._parked.discard(tag)
        self._writes.discard(tag)

    def _future(self, rev):
        """True if ``rev`` is a revision this node has not applied yet."""
        return rev is not None and rev > self.node.applied_rev

    def _need_read(self):
        if not self.access.can_read:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)

    def _need_write(self):
        if not self.access.can_write:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)

    def _path(self, request):
        """The request's path (or glob); MISSING_ARG or BAD_PATH if unusable."""
        if not request.HasField("path"):
            raise DoozerError(ErrCode.MISSING_ARG, "path")
        path = request.path
        if not isinstance(path, str) or len(path) > self.limits.max_path:
            raise DoozerError(ErrCode.BAD_PATH, "path too long or not UTF-8")
        return path

    def _required_rev(self, request):
        if not request.HasField("rev"):
            raise DoozerError(ErrCode.MISSING_ARG, "rev")
        return request.rev

    def _required_offset(self, request):
        if not request.HasField("offset"):
            raise DoozerError(ErrCode.MISSING_ARG, "offset")
        return request.offset

    # -- verbs ---------------------------------------------------------------

    def _get(self, request, tag):
        self._need_read()
        path = self._path(request)
        rev = request.rev if request.HasField("rev") else None
        self._track(tag, self.node.get(path, rev), self._got, cancellable=True,
                    parked=self._future(rev))

    def _got(self, found, tag):
        value, rev = found
        response = Response(rev=rev, value=value) if rev else Response(rev=0)
        self._reply(response, tag)

    def _set(self, request, tag):
        self._need_write()
        path = self._path(request)
        rev = self._required_rev(request)
        value = request.value
        if len(value) > self.limits.max_value:
            raise DoozerError(ErrCode.OTHER, "value too large")
        if request.lease:   # doozertw's extension: attach the file to a lease
            d = self.node.set(path, rev, value, lease=lease_id(request.lease))
        else:
            d = self.node.set(path, rev, value)
        self._track(tag, d, self._revised, write=True)

    def _del(self, request, tag):
        self._need_write()
        path = self._path(request)
        rev = self._required_rev(request)
        self._track(tag, self.node.delete(path, rev), self._revised, write=True)

    def _rev(self, request, tag):
        self._need_read()
        self._track(tag, self.node.rev(), self._revised)

    def _revised(self, rev, tag):
        self._reply(Response(rev=rev), tag)

    def _wait(self, request, tag):
        self._need_read()
        path = self._path(request)
        rev = self._required_rev(request)
        self._track(tag, self.node.wait(path, rev), self._event, parked=True)

    def _walk(self, request, tag):
        self._need_read()
        path = self._path(request)
        offset = self._required_offset(request)
        rev = request.rev if request.HasField("rev") else None
        self._track(tag, self.node.walk(path, rev, offset), self._event,
                    cancellable=True, parked=self._future(rev))

    def _event(self, event, tag):
        flags = FLAG_SET if event.kind == SET else FLAG_DEL
        self._reply(Response(path=event.path, value=event.value, rev=event.rev,
                             flags=flags), tag)

    def _getdir(self, request, tag):
        self._need_read()
        path = self._path(request)
        offset = self._required_offset(request)
        rev = request.rev if request.HasField("rev") else None
        self._track(tag, self.node.getdir(path, rev, offset), self._named,
                    cancellable=True, parked=self._future(rev))

    def _named(self, name, tag):
        self._reply(Response(path=name), tag)

    def _stat(self, request, tag):
        self._need_read()
        path = self._path(request)
        rev = request.rev if request.HasField("rev") else None
        self._track(tag, self.node.stat(path, rev), self._statted, cancellable=True,
                    parked=self._future(rev))

    def _statted(self, found, tag):
        length, rev = found
        self._reply(Response(len=length, rev=rev), tag)

    def _nop(self, request, tag):
        self._need_write()
        self._track(tag, self.node.nop(), self._done, write=True)

    def _done(self, _, tag):
        self._reply(Response(), tag)

    def _self(self, request, tag):
        self._need_read()
        self._track(tag, self.node.self_id(), self._named_self)

    def _named_self(self, name, tag):
        self._reply(Response(value=name.encode("utf-8")), tag)

    def _lease_grant(self, request, tag):
        self._need_write()
        if not request.HasField("ttl"):
            raise DoozerError(ErrCode.MISSING_ARG, "ttl")
        if not 1 <= request.ttl <= self.limits.max_lease_ttl:
            raise DoozerError(ErrCode.RANGE, f"ttl must be 1 to {self.limits.max_lease_ttl}")
        if not 0 <= request.lease <= MAX_ID:
            raise DoozerError(ErrCode.RANGE, "lease id")
        self._track(tag, self.node.grant_lease(request.ttl, request.lease), self._leased,
                    write=True)

    def _leased(self, info, tag):
        self._reply(Response(lease=info.id, ttl=info.ttl, remaining=info.remaining), tag)

    def _lease_keepalive(self, request, tag):
        self._need_write()
        self._track(tag, self.node.keepalive(self._lease(request)), self._leased, write=True)

    def _lease_revoke(self, request, tag):
        self._need_write()
        self._track(tag, self.node.revoke_lease(self._lease(request)), self._revised,
                    write=True)

    def _lease_ttl(self, request, tag):
        """One page of the lease's paths: those after ``path`` (if given)."""
        self._need_read()
        lease = self._lease(request)
        after = self._path(request) if request.HasField("path") else None
        self._track(tag, self.node.lease_info(lease), self._paged, lease_page, after,
                    cancellable=True)

    def _paged(self, found, build_page, after, tag):
        self._reply(build_page(found, after), tag)

    def _lease_list(self, request, tag):
        """One page of the leases: those whose id is above ``lease`` (if given)."""
        self._need_read()
        self._track(tag, self.node.leases(), self._paged, list_page, request.lease,
                    cancellable=True)

    def _txn(self, request, tag):
        self._need_write()
        compares, success, failure = txn_of(request, self.limits)
        self._track(tag, self.node.txn(compares, success, failure), self._txn_done, write=True)

    def _txn_done(self, result, tag):
        self._reply(Response(succeeded=result.succeeded, revs=result.revs, rev=result.rev), tag)

    def _lease(self, request):
        """The request's lease id: MISSING_ARG if absent, NOENT if no lease can have it."""
        if not request.HasField("lease"):
            raise DoozerError(ErrCode.MISSING_ARG, "lease")
        return lease_id(request.lease)

    def _access(self, request, tag):
        if self.access.grant(request.value):
            self._write(_encode(Response(tag=tag)))
        else:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)


_HANDLERS = {
    VERBS["GET"]: DoozerProtocol._get,
    VERBS["SET"]: DoozerProtocol._set,
    VERBS["DEL"]: DoozerProtocol._del,
    VERBS["REV"]: DoozerProtocol._rev,
    VERBS["WAIT"]: DoozerProtocol._wait,
    VERBS["NOP"]: DoozerProtocol._nop,
    VERBS["WALK"]: DoozerProtocol._walk,
    VERBS["GETDIR"]: DoozerProtocol._getdir,
    VERBS["STAT"]: DoozerProtocol._stat,
    VERBS["SELF"]: DoozerProtocol._self,
    VERBS["ACCESS"]: DoozerProtocol._access,
    VERBS["LEASE_GRANT"]: DoozerProtocol._lease_grant,
    VERBS["LEASE_KEEPALIVE"]: DoozerProtocol._lease_keepalive,
    VERBS["LEASE_REVOKE"]: DoozerProtocol._lease_revoke,
    VERBS["LEASE_TTL"]: DoozerProtocol._lease_ttl,
    VERBS["LEASE_LIST"]: DoozerProtocol._lease_list,
    VERBS["TXN"]: DoozerProtocol._txn,
}

