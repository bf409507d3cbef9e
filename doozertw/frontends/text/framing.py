"""Text protocol framing: cutting a byte stream into commands, and parsing words.

Pure: no Twisted, no sockets, no clock.
"""

import re

import attrs

from doozertw.errors import DoozerError, ErrCode

CRLF = b"\r\n"
MAX_LITERAL_DIGITS = 19

_LITERAL = re.compile(rb"\{([0-9]+)\}\Z")
_NUMBER = re.compile(rb"-?[0-9]{1,19}\Z")
_INT64 = 2 ** 63


class FramingError(Exception):
    """The client broke the framing; the connection must be closed."""


@attrs.frozen
class Command:
    """One complete request: its line (no line end) and its literal value, if any."""

    line: bytes
    literal: bytes | None = None


@attrs.frozen
class Rejected:
    """A request whose ``{size}`` literal exceeds the value limit; its bytes are skipped."""

    line: bytes
    size: int


def words(line):
    """The space-separated words of a line."""
    return [w for w in line.split(b" ") if w]


def split_rest(line, count):
    """The first ``count`` words (None where missing) and the rest of the line.

    The rest follows the single space after the last of those words; it is
    None when the line has no more than ``count`` words. Spaces inside it
    (even leading ones past the first) are kept.
    """
    out = []
    pos, end = 0, len(line)
    while len(out) < count:
        while pos < end and line[pos] == 0x20:
            pos += 1
        stop = line.find(b" ", pos)
        if pos == end or stop == -1:
            if pos < end:
                out.append(line[pos:])
            return out + [None] * (count - len(out)), None
        out.append(line[pos:stop])
        pos = stop
    return out, line[pos + 1:]


_VALUE_WORDS = {b"set": 2, b"cas": 3}
LEASE_OPTION = b"lease="
BRANCHES = (b"then", b"else")


def _value_words(first):
    """How many words precede the VALUE field, given a line's first five
    words (None where missing); None when the line has no VALUE field.

    ``set``/``cas`` take one more word when their second is a
    ``lease=ID`` option; a transaction line ``then``/``else`` adds one word
    to the write it carries; ``if PATH value VALUE`` has three.
    """
    verb = (first[0] or b"").lower()
    skip = 0
    if verb in BRANCHES:
        skip, verb = 1, (first[1] or b"").lower()
    elif verb == b"if":
        return 3 if (first[2] or b"").lower() == b"value" else None
    count = _VALUE_WORDS.get(verb)
    if count is None:
        return None
    if (first[skip + 1] or b"").startswith(LEASE_OPTION):
        count += 1
    return skip + count


def value_field(line):
    """(verb in lower case, the VALUE field or None) of a line."""
    first = split_rest(line, 5)[0]
    count = _value_words(first)
    verb = (first[0] or b"").lower()
    if count is None:
        return verb, None
    return verb, split_rest(line, count)[1]


def literal_size(line):
    """N if the line has a VALUE field (``set``, ``cas``, their ``then``/``else``
    forms, ``if PATH value``) that is exactly ``{N}``, else None."""
    _, value = value_field(line)
    if value is None:
        return None
    match = _LITERAL.match(value)
    if match is None:
        return None
    if len(match.group(1)) > MAX_LITERAL_DIGITS:
        raise FramingError("literal length too long")
    return int(match.group(1))


class Framer:
    """Cuts a byte stream into Commands; bytes may arrive in any pieces.

    ``next()`` returns a Command, a Rejected, or None when more bytes are
    needed; it raises FramingError for a line over ``max_line`` bytes.
    Blank lines are skipped (so the line end after a literal is optional).
    """

    def __init__(self, max_line, max_value):
        self.max_line = max_line
        self.max_value = max_value
        self._buf = bytearray()
        self._pos = 0
        self._scanned = 0
        self._literal_line = None
        self._need = 0
        self._skip = 0

    def feed(self, data):
        self._buf += data

    @property
    def buffered(self):
        return len(self._buf) - self._pos

    @property
    def partial(self):
        """True while a request has begun but is not complete."""
        return self.buffered > 0 or self._literal_line is not None or self._skip > 0

    def next(self):
        while True:
            if self._skip:
                taken = min(self._skip, self.buffered)
                self._pos += taken
                self._skip -= taken
                if self._skip:
                    return self._starve()
                continue
            if self._literal_line is not None:
                return self._take_literal()
            line = self._take_line()
            if line is None:
                return self._starve()
            if not line.strip(b" \t"):
                continue
            size = literal_size(line)
            if size is None:
                return Command(line)
            if size > self.max_value:
                self._skip = size
                return Rejected(line, size)
            self._literal_line, self._need = line, size

    def _take_literal(self):
        if self.buffered < self._need:
            return self._starve()
        start = self._pos
        self._pos += self._need
        line, self._literal_line = self._literal_line, None
        return Command(line, bytes(self._buf[start:self._pos]))

    def _take_line(self):
        newline = self._buf.find(b"\n", max(self._pos, self._scanned))
        if newline == -1:
            self._scanned = len(self._buf)
            if self.buffered > self.max_line + 1:
                raise FramingError("line too long")
            return None
        line = bytes(self._buf[self._pos:newline])
        self._pos = self._scanned = newline + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            raise FramingError("line too long")
        return line

    def _starve(self):
        if self._pos:
            del self._buf[:self._pos]
            self._scanned = max(0, self._scanned - self._pos)
            self._pos = 0
        return None


def parse_number(word, what, least):
    """``word`` as an int64 >= ``least``, None for no word; else ERR OTHER bad <what>."""
    if word is None:
        return None
    if _NUMBER.match(word) is None:
        raise DoozerError(ErrCode.OTHER, f"bad {what}")
    value = int(word)
    if not least <= value < _INT64:
        raise DoozerError(ErrCode.OTHER, f"bad {what}")
    return value


def parse_lease(word):
    """The ID of a ``lease=ID`` option word (0: no lease); else ERR OTHER bad lease id."""
    return parse_number(word[len(LEASE_OPTION):], "lease id", 0)
