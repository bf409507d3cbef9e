"""``POST /v1/txn``: one atomic transaction over HTTP.

Body ``{"compare": [...], "success": [...], "failure": [...]}`` (each list
optional, default empty):

- a compare is ``{"path": P, "rev": N}`` (the file's revision is N; 0: it
  does not exist) or ``{"path": P, "value": V[, "encoding": E]}``;
- an operation is ``{"set": P, "value": V[, "encoding": E][, "lease": ID][, "rev": N]}``
  (``rev`` as for PUT, default -1) or ``{"del": P[, "rev": N]}``.

Values follow /v1/keys: UTF-8 text, or base64 with ``"encoding": "base64"``.
The answer is ``{"succeeded", "revs", "rev"}`` (doozertw.frontends.interface.TxnResult).

Everything is checked before the node is asked: the body is a JSON object
of at most ``body_limit(limits)`` bytes (413 beyond); at most
``limits.max_txn_ops`` compares and operations in all, counted before any
is read; paths and values at most ``limits.max_txn_bytes`` in all (413);
valid paths (BAD_PATH); no unknown fields, no wrong types (MISSING_ARG).
A transaction is a write: it needs the read-write secret and the same origin.
"""

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.interface import CLOBBER, Compare, DeleteFile, SetFile, check_path
from doozertw.frontends.web import common
from doozertw.frontends.web.leases import MAX_LEASE_ID

BRANCHES = ("compare", "success", "failure")
MAX_REV = 2**63 - 1
TXN_TOO_LARGE = "transaction too large"


def body_limit(limits):
    """Largest txn body read: its bytes JSON-encoded (base64: 4/3) plus room."""
    return 2 * limits.max_txn_bytes + 64 * 1024


def _fail(text):
    raise DoozerError(ErrCode.MISSING_ARG, text)


class _Parser:
    """Turns a parsed JSON body into (compares, success, failure), bounded."""

    def __init__(self, limits):
        self.limits = limits
        self.bytes = 0

    def parse(self, doc):
        unknown = set(doc) - set(BRANCHES)
        if unknown:
            _fail(f"unknown field {sorted(unknown)[0]!r}")
        lists = [doc.get(name, []) for name in BRANCHES]
        if not all(isinstance(items, list) for items in lists):
            _fail("compare, success and failure must be lists")
        count = sum(len(items) for items in lists)
        if count > self.limits.max_txn_ops:
            _fail(f"too many compares and operations ({count} > {self.limits.max_txn_ops})")
        compares = tuple(self.compare(c) for c in lists[0])
        return compares, tuple(map(self.op, lists[1])), tuple(map(self.op, lists[2]))

    def path(self, value, what):
        if not isinstance(value, str):
            _fail(f"{what} must be a path")
        self.count(len(value.encode("utf-8", "replace")))
        return check_path(value, self.limits.max_path, self.limits.max_depth)

    def value(self, item):
        value = common.decode_value(item.get("value"), item.get("encoding"))
        self.count(len(value))
        return value

    def count(self, size):
        self.bytes += size
        if self.bytes > self.limits.max_txn_bytes:
            raise DoozerError(ErrCode.OTHER, TXN_TOO_LARGE)

    def compare(self, item):
        if not isinstance(item, dict):
            _fail("a compare must be an object")
        self.fields(item, {"path", "rev", "value", "encoding"})
        path = self.path(item.get("path"), "a compare's path")
        if ("rev" in item) == ("value" in item):
            _fail('a compare gives exactly one of "rev" and "value"')
        if "rev" in item:
            return Compare(path, rev=common.json_int(item, "rev", 0, MAX_REV))
        return Compare(path, value=self.value(item))

    def op(self, item):
        if not isinstance(item, dict):
            _fail("an operation must be an object")
        if ("set" in item) == ("del" in item):
            _fail('an operation is either {"set": ...} or {"del": ...}')
        rev = common.json_int(item, "rev", CLOBBER, MAX_REV, default=CLOBBER)
        if "del" in item:
            self.fields(item, {"del", "rev"})
            return DeleteFile(self.path(item["del"], "del"), rev)
        self.fields(item, {"set", "value", "encoding", "lease", "rev"})
        path = self.path(item["set"], "set")
        if "value" not in item:
            _fail('a set needs a "value"')
        lease = common.json_int(item, "lease", 0, MAX_LEASE_ID, default=0)
        return SetFile(path, rev, self.value(item), lease)

    @staticmethod
    def fields(item, allowed):
        unknown = set(item) - allowed
        if unknown:
            _fail(f"unknown field {sorted(unknown)[0]!r}")


def parse_txn(doc, limits):
    """(compares, success, failure) from a JSON object, or DoozerError (see module doc)."""
    return _Parser(limits).parse(doc)


def txn_fields(result):
    return {"succeeded": bool(result.succeeded), "revs": list(result.revs), "rev": result.rev}


class TxnResource(common.Leaf):
    """POST /v1/txn."""

    def render_POST(self, request):
        return common.run_guarded(request, lambda: self._txn(request))

    def _txn(self, request):
        common.require_same_origin(request)
        self.api.access(request).require_write()
        limits = self.api.limits
        compares, success, failure = parse_txn(
            common.read_json_object(request, body_limit(limits)), limits)
        d = self.api.timed_write(lambda: self.api.node.txn(compares, success, failure))
        return common.respond(request, d,
                              lambda result: common.write_json(request, 200, txn_fields(result)))
