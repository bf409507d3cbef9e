"""Shared pieces of the web port: JSON replies, errors, secrets, values.

Contracts:

- Errors are JSON ``{"error": NAME, "code": N, "detail": TEXT}`` with an
  HTTP status chosen by ``http_status``.
- A request presents a secret with ``Authorization: Bearer <secret>`` or
  ``X-Doozer-Secret: <secret>``; rights follow doozertw.frontends.access.
- Requests that change the store must not come from another origin: a
  request whose ``Origin`` header names a host other than its ``Host`` is
  refused (permission denied), so no web page elsewhere can write here.
- Values travel in JSON as ``{"value": TEXT, "encoding": "utf-8"}`` when
  they are valid UTF-8, else ``{"value": BASE64, "encoding": "base64"}``.
"""

import base64
import binascii
import json
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from doozertw.errors import PERMISSION_DENIED, DoozerError, ErrCode
from doozertw.frontends.access import Access

log = Logger()

JSON_TYPE = b"application/json"
OCTET_TYPE = b"application/octet-stream"
UTF8 = "utf-8"
BASE64 = "base64"

NO_QUORUM = "no quorum"
VALUE_TOO_LARGE = "value too large"


class Leaf(resource.Resource):
    """A resource answering for its whole subtree, with the web port's Api."""

    isLeaf = True

    def __init__(self, api):
        super().__init__()
        self.api = api


class NoQuorum(Exception):
    """The node cannot reach a majority; writes and linearizable reads wait."""


_STATUS_BY_CODE = {
    ErrCode.NOENT: 404,
    ErrCode.RANGE: 404,
    ErrCode.REV_MISMATCH: 409,
    ErrCode.ISDIR: 409,
    ErrCode.NOTDIR: 409,
    ErrCode.TOO_LATE: 410,
    ErrCode.BAD_PATH: 400,
    ErrCode.MISSING_ARG: 400,
    ErrCode.UNKNOWN_VERB: 400,
    ErrCode.TAG_IN_USE: 400,
    ErrCode.READONLY: 403,
}


_UNAVAILABLE = ("no leader", "did not answer", "too many leases")
"""Details of OTHER errors that a retry (later, or on another node) may cure."""


def http_status(error):
    """The HTTP status that fits a DoozerError."""
    detail = (error.detail or "").lower()
    if error.code == ErrCode.OTHER:
        if PERMISSION_DENIED in detail:
            return 403
        if VALUE_TOO_LARGE in detail or "too large" in detail:
            return 413
        if NO_QUORUM in detail or any(p in detail for p in _UNAVAILABLE):
            return 503
        return 500
    return _STATUS_BY_CODE.get(error.code, 500)


def as_doozer_error(failure_or_exc):
    """Map any failure of a node call to a DoozerError (NoQuorum included)."""
    exc = getattr(failure_or_exc, "value", failure_or_exc)
    if isinstance(exc, DoozerError):
        return exc
    if isinstance(exc, (NoQuorum, defer.TimeoutError, defer.CancelledError)):
        return DoozerError(ErrCode.OTHER, NO_QUORUM)
    return DoozerError(ErrCode.OTHER, f"internal error: {type(exc).__name__}")


def error_body(error):
    return {"error": error.code.name, "code": int(error.code), "detail": error.detail}


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""json.dumps(..., separators=(",", ":")) without building an encoder per call."""


def write_json(request, status, body):
    """Finish ``request`` with a JSON body (no-op if the client has gone).

    The answer carries ``Content-Length`` (never chunked), so a keep-alive
    client reads it without chunked decoding.
    """
    data = _COMPACT.encode(body).encode("utf-8") + b"\n"
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", b"%d" % len(data))
    request.write(data)
    request.finish()


def write_error(request, error):
    write_json(request, http_status(error), error_body(error))


def encode_value(value):
    """JSON fields for a byte value: UTF-8 text, or base64 when not valid UTF-8."""
    try:
        return {"value": value.decode(UTF8), "encoding": UTF8}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": BASE64}


def decode_value(text, encoding=UTF8):
    """Bytes from JSON ``value``/``encoding``; BAD request as MISSING_ARG."""
    if not isinstance(text, str):
        raise DoozerError(ErrCode.MISSING_ARG, "value must be a string")
    if encoding in (None, UTF8):
        return text.encode(UTF8)
    if encoding == BASE64:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise DoozerError(ErrCode.MISSING_ARG, "value is not valid base64") from None
    raise DoozerError(ErrCode.MISSING_ARG, f"unknown encoding {encoding!r}")


def event_fields(event):
    """JSON object for a store Event (SET or DEL)."""
    out = {"path": event.path, "rev": event.rev, "kind": event.kind}
    out.update(encode_value(event.value))
    return out


def presented_secret(request):
    """The secret a request carries in its headers, or None."""
    header = request.getHeader("x-doozer-secret")
    if header:
        return header
    auth = request.getHeader("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def access_for(request, secrets):
    """An Access granted with whatever secret the request presents."""
    access = Access(secrets)
    secret = presented_secret(request)
    if secret:
        access.grant(secret)
    return access


def same_origin(origin, host):
    """True if a browser ``Origin`` header (or none) matches the ``Host`` asked for."""
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == (host or "").lower()


def require_same_origin(request):
    if not same_origin(request.getHeader("origin"), request.getHeader("host")):
        raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED + ": cross-origin request")


def wants_octets(request):
    accept = request.getHeader("accept") or ""
    return "application/octet-stream" in accept


def content_type(request):
    value = request.getHeader("content-type") or ""
    return value.split(";", 1)[0].strip().lower()


def read_body(request, limit):
    """The request body, or DoozerError(too large) if it exceeds ``limit`` bytes."""
    length = request.getHeader("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise DoozerError(ErrCode.OTHER, VALUE_TOO_LARGE)
    request.content.seek(0)
    data = request.content.read(limit + 1)
    if len(data) > limit:
        raise DoozerError(ErrCode.OTHER, VALUE_TOO_LARGE)
    return data


def read_json_object(request, limit):
    """The request body parsed as a JSON object (a dict).

    DoozerError(too large) past ``limit`` bytes; MISSING_ARG if the body is
    not JSON (or nested too deeply for the parser, or a number too long)
    or not an object.
    """
    body = read_body(request, limit)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DoozerError(ErrCode.MISSING_ARG, "body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise DoozerError(ErrCode.MISSING_ARG, "body must be a JSON object")
    return doc


def json_int(doc, name, low, high, default=None):
    """``doc[name]`` as an integer in [low, high] (JSON true/false and
    floats are not integers); ``default`` if absent (None: required)."""
    value = doc.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise DoozerError(ErrCode.MISSING_ARG,
                          f"{name} must be an integer from {low} to {high}")
    return value


def parse_int(request, name, default=None):
    """An integer query argument; MISSING_ARG if present but not an integer."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise DoozerError(ErrCode.MISSING_ARG, f"{name} must be an integer") from None


def parse_text(request, name, default=None):
    values = request.args.get(name.encode("ascii"))
    if not values:
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise DoozerError(ErrCode.BAD_PATH, f"{name} is not UTF-8") from None


def respond(request, deferred, on_success):
    """Answer ``request`` when ``deferred`` fires: ``on_success(result)`` or a JSON error."""
    def failed(failure):
        failure.trap(Exception)
        if not isinstance(failure.value, (DoozerError, NoQuorum)):
            log.failure("web request {uri} failed", failure, uri=request.uri)
        write_error(request, as_doozer_error(failure))

    deferred.addCallback(on_success).addErrback(failed)
    return server.NOT_DONE_YET


def run_guarded(request, fn):
    """Call ``fn()`` (which answers the request); a raised DoozerError becomes a JSON error."""
    try:
        return fn()
    except DoozerError as e:
        write_error(request, e)
        return server.NOT_DONE_YET
