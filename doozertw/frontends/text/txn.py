"""Text protocol writes as data: ``set``/``cas``/``del`` lines and ``txn`` blocks.

Pure: no Twisted, no node. ``write_op`` turns one write line into a
SetFile or DeleteFile; ``TxnBlock`` collects the lines of a ``txn`` block,
one at a time as they arrive, into the compares and the two branches of a
transaction, holding at most ``limits.max_txn_ops`` lines and
``limits.max_txn_bytes`` bytes of paths and values whatever the client
sends. The grammar is in docs/protocol.md, "Transactions".
"""

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.interface import CLOBBER, Compare, DeleteFile, SetFile, check_path
from doozertw.frontends.text.framing import (
    BRANCHES, LEASE_OPTION, parse_lease, parse_number, split_rest, words)
from doozertw.frontends.text.replies import clean

TXN_USAGE = "txn, then lines: if PATH rev REV | if PATH value VALUE | then WRITE | else WRITE; end"
WRITE_VERBS = (b"set", b"cas", b"del")


def path_of(word, limits):
    """``word`` as a checked path; ERR BAD_PATH if too long, not ASCII or malformed."""
    if len(word) > limits.max_path:
        raise DoozerError(ErrCode.BAD_PATH, "path too long")
    try:
        text = word.decode("ascii")
    except UnicodeDecodeError:
        raise DoozerError(ErrCode.BAD_PATH, clean(word.decode("latin-1"))) from None
    return check_path(text, limits.max_path, limits.max_depth)


def _value(value, literal, limits):
    if value is None and literal is None:
        raise DoozerError(ErrCode.MISSING_ARG, "no value")
    value = literal if literal is not None else value
    if len(value) > limits.max_value:
        raise DoozerError(ErrCode.OTHER, "value too large")
    return value


def write_op(line, literal, limits):
    """The write a ``set``, ``cas`` or ``del`` line asks for (its first word
    is the verb), as a SetFile or DeleteFile; DoozerError if malformed.

    ``set [lease=ID] PATH VALUE`` writes with rev CLOBBER; ``cas [lease=ID]
    PATH REV VALUE`` with REV (-1 or >= 0); ``del PATH [REV]`` (REV default -1).
    """
    verb = (words(line)[:1] or [b""])[0].lower()
    if verb == b"del":
        args = words(line)[1:]
        if not args:
            raise DoozerError(ErrCode.MISSING_ARG, "usage: del PATH [REV]")
        if len(args) > 2:
            raise DoozerError(ErrCode.OTHER, "too many arguments; usage: del PATH [REV]")
        rev = parse_number(args[1] if len(args) > 1 else None, "revision", -1)
        return DeleteFile(path_of(args[0], limits), CLOBBER if rev is None else rev)
    if verb not in (b"set", b"cas"):
        raise DoozerError(ErrCode.OTHER, "not a write: " + clean(verb.decode("latin-1")))
    lease = 0
    option = (split_rest(line, 2)[0][1] or b"")
    skip = 1 if option.startswith(LEASE_OPTION) else 0
    if skip:
        lease = parse_lease(option)
    if verb == b"set":
        (*_, path), value = split_rest(line, 2 + skip)
        rev = CLOBBER
    else:
        (*_, path, rev), value = split_rest(line, 3 + skip)
        rev = parse_number(rev, "revision", -1)
    value = _value(value, literal, limits)
    if path is None:
        raise DoozerError(ErrCode.MISSING_ARG, "no value")
    return SetFile(path_of(path, limits), rev, value, lease)


def _compare(line, literal, limits):
    (_, path, kind, rev), value = split_rest(line, 4)
    kind = (kind or b"").lower()
    if path is None or kind not in (b"rev", b"value"):
        raise DoozerError(ErrCode.MISSING_ARG, "usage: if PATH rev REV | if PATH value VALUE")
    if kind == b"value":
        value = split_rest(line, 3)[1]
        return Compare(path_of(path, limits), value=_value(value, literal, limits))
    if value is not None:
        raise DoozerError(ErrCode.OTHER, "too many arguments; usage: if PATH rev REV")
    number = parse_number(rev, "revision", 0)
    if number is None:
        raise DoozerError(ErrCode.MISSING_ARG, "usage: if PATH rev REV")
    return Compare(path_of(path, limits), rev=number)


def _cost(item):
    """Bytes of paths and values an item holds (what max_txn_bytes counts)."""
    return len(item.path) + len(getattr(item, "value", None) or b"")


class TxnBlock:
    """The lines of one ``txn`` block, from the ``txn`` line to ``end``.

    ``add(line, literal)`` takes the next line (``literal`` its ``{N}``
    bytes, if any) and returns True when it was ``end``; ``reject(size)``
    counts a line whose literal was too large (its bytes skipped). After the
    first error the block keeps no more lines, only waits for ``end``;
    ``transaction()`` then raises that error (prefixed with the line number),
    else returns (compares, success, failure).
    """

    def __init__(self, line, limits):
        self.limits = limits
        self.compares = []
        self.success = []
        self.failure = []
        self.lines = 1
        self.ops = 0
        self.size = 0
        self.error = None
        if words(line)[1:]:
            self._fail(DoozerError(ErrCode.OTHER, "too many arguments; usage: " + TXN_USAGE))

    def add(self, line, literal=None):
        self.lines += 1
        first = (words(line)[:1] or [b""])[0].lower()
        if first == b"end":
            if words(line)[1:] and self.error is None:
                self._fail(DoozerError(ErrCode.OTHER, "too many arguments; usage: end"))
            return True
        if self.error is None:
            try:
                self._take(first, line, literal)
            except DoozerError as e:
                self._fail(e)
        return False

    def reject(self, size):
        self.lines += 1
        if self.error is None:
            self._fail(DoozerError(
                ErrCode.OTHER, f"value too large ({size} > {self.limits.max_value})"))

    def transaction(self):
        if self.error is not None:
            raise self.error
        return tuple(self.compares), tuple(self.success), tuple(self.failure)

    def _fail(self, error):
        self.error = DoozerError(error.code, f"line {self.lines}: {error.detail}".rstrip())
        self.compares, self.success, self.failure = [], [], []

    def _take(self, first, line, literal):
        self.ops += 1
        if self.ops > self.limits.max_txn_ops:
            raise DoozerError(ErrCode.OTHER,
                              f"too many txn lines (max_txn_ops {self.limits.max_txn_ops})")
        if first == b"if":
            if self.success or self.failure:
                raise DoozerError(ErrCode.OTHER, "if after then/else")
            item = _compare(line, literal, self.limits)
            self.compares.append(item)
        elif first in BRANCHES:
            rest = split_rest(line, 1)[1] or b""
            if (words(rest)[:1] or [b""])[0].lower() not in WRITE_VERBS:
                raise DoozerError(ErrCode.MISSING_ARG, "usage: then|else set|cas|del ...")
            item = write_op(rest, literal, self.limits)
            (self.success if first == b"then" else self.failure).append(item)
        else:
            raise DoozerError(ErrCode.OTHER, "expected if, then, else or end; usage: "
                              + TXN_USAGE)
        self.size += _cost(item)
        if self.size > self.limits.max_txn_bytes:
            raise DoozerError(ErrCode.OTHER,
                              f"txn too large (max_txn_bytes {self.limits.max_txn_bytes})")
