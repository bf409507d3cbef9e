"""Path validation and glob compilation (pure).

A path is ``/`` or one or more components each introduced by ``/``. A
component is made of ASCII letters, digits, ``.``, ``-`` and ``_``: doozer's
set plus underscore. None of these is a glob character, so globs stay
unambiguous.

Globs: ``?`` matches one character within a component, ``*`` any run within
one component, ``**`` any run across components; anything else matches
itself.

Globs match in time linear in the path for any pattern: a pattern whose
wildcards cannot make a backtracking regex blow up (at most a trailing
``**``, and every ``*`` followed by ``/`` or the end) uses ``re``; any other
runs a bit-parallel NFA (one pass over the path), because a pattern such as
``/**a**a**b`` makes ``re`` take time exponential in the wildcards.

Depth: ``check_path`` (what front ends call on a client's path) refuses
more than ``max_depth`` components (MAX_DEPTH unless told). The store's
own apply path enforces only the byte limit, so a log written before the
depth limit replays unchanged on every replica.
"""

import re
from collections.abc import Callable

from doozertw.errors import DoozerError, ErrCode

ROOT = "/"
MAX_PATH_BYTES = 4096
MAX_DEPTH = 256

_COMPONENT_CHARS = r"[A-Za-z0-9._\-]"
_PATH_RE = re.compile(r"(?:/" + _COMPONENT_CHARS + r"+)+\Z")
_GLOB_RE = re.compile(r"(?:/[A-Za-z0-9._\-*?]+)+\Z")
_GLOB_TOKEN = re.compile(r"\*\*|\*|\?|[^*?]+")


def is_valid_path(path: object, max_bytes: int = MAX_PATH_BYTES,
                  max_depth: int | None = None) -> bool:
    """True if ``path`` is a well-formed path no longer than ``max_bytes``
    and (unless ``max_depth`` is None) of at most ``max_depth`` components."""
    if not isinstance(path, str) or len(path) > max_bytes:
        return False
    if max_depth is not None and depth(path) > max_depth:
        return False
    return path == ROOT or _PATH_RE.match(path) is not None


def check_path(path: str, max_bytes: int = MAX_PATH_BYTES,
               max_depth: int | None = MAX_DEPTH) -> str:
    """Return ``path`` if valid, else raise DoozerError(BAD_PATH).

    Beyond ``max_depth`` components (``/a/b`` has 2) the detail says so.
    """
    if not is_valid_path(path, max_bytes):
        raise DoozerError(ErrCode.BAD_PATH, _describe(path))
    if max_depth is not None and depth(path) > max_depth:
        raise DoozerError(ErrCode.BAD_PATH, f"path deeper than {max_depth} levels")
    return path


def depth(path: str) -> int:
    """Components in a path string: 0 for ``/``, 2 for ``/a/b``."""
    return 0 if path == ROOT else path.count("/")


def _describe(path: object) -> str:
    text = repr(path)
    return text if len(text) <= 80 else text[:77] + "..."


def dir_links(path: str) -> list[tuple[str, str]]:
    """(directory, entry name) for every directory on the way to ``path``.

    ``/a/b/c`` gives (``/``, ``a``), (``/a``, ``b``), (``/a/b``, ``c``).
    """
    parts = path.split("/")
    return [("/".join(parts[:i]) or ROOT, parts[i]) for i in range(1, len(parts))]


def sort_key(path: str) -> list[str]:
    """Order files the way a depth-first walk with sorted names visits them."""
    return path.split("/")


class Glob:
    """A compiled glob. ``match(path)`` is true when the whole path matches.

    ``literal`` is the glob itself when it has no wildcard (an exact path),
    else None; watch registries use it to index exact-path watches.
    """

    __slots__ = ("pattern", "literal", "_match")

    def __init__(self, pattern: str, max_bytes: int = MAX_PATH_BYTES) -> None:
        if not isinstance(pattern, str) or len(pattern) > max_bytes:
            raise DoozerError(ErrCode.BAD_PATH, "bad glob")
        if pattern != ROOT and _GLOB_RE.match(pattern) is None:
            raise DoozerError(ErrCode.BAD_PATH, f"bad glob {_describe(pattern)}")
        self.pattern: str = pattern
        wild = "*" in pattern or "?" in pattern
        self.literal: str | None = None if wild else pattern
        tokens: list[str] = _GLOB_TOKEN.findall(pattern)
        self._match: Callable[[str], bool]
        if _regex_is_safe(tokens):
            regex = re.compile(_translate(tokens) + r"\Z").match
            self._match = lambda path: regex(path) is not None
        else:
            self._match = _Nfa(tokens).match

    def match(self, path: str) -> bool:
        """True when the whole of ``path`` matches the pattern."""
        return self._match(path)

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


def _regex_is_safe(tokens: list[str]) -> bool:
    """True if ``re`` matches these tokens without super-linear backtracking:
    ``**`` only as the last token, every ``*`` followed by ``/`` or the end."""
    for i, token in enumerate(tokens):
        if token == "**" and i != len(tokens) - 1:
            return False
        if token == "*" and i + 1 < len(tokens) and not tokens[i + 1].startswith("/"):
            return False
    return True


class _Nfa:
    """Bit-parallel simulation of a glob: bit i set = the first i pattern
    items matched. One pass over the path; a few big-int operations per
    character, whatever the wildcards."""

    __slots__ = ("_chars", "_one", "_star", "_dstar", "_accept", "_runs")

    def __init__(self, tokens: list[str]) -> None:
        items: list[str] = []
        for token in tokens:
            items.extend([token] if token in ("*", "**", "?") else token)
        self._chars: dict[str, int] = {}
        self._one, self._star, self._dstar = 0, 0, 0
        run = longest = 0
        for i, item in enumerate(items):
            bit = 1 << i
            if item == "?":
                self._one |= bit
            elif item == "*":
                self._star |= bit
            elif item == "**":
                self._dstar |= bit
            else:
                self._chars[item] = self._chars.get(item, 0) | bit
            run = run + 1 if item in ("*", "**") else 0
            longest = max(longest, run)
        self._accept = 1 << len(items)
        self._runs = longest

    def _close(self, state: int) -> int:
        """Add the states reachable by letting wildcards match nothing."""
        loops = self._star | self._dstar
        for _ in range(self._runs):
            state |= (state & loops) << 1
        return state

    def match(self, path: str) -> bool:
        """True when the whole of ``path`` matches."""
        state = self._close(1)
        for c in path:
            if c == "/":
                step, stay = self._chars.get(c, 0), self._dstar
            else:
                step, stay = self._chars.get(c, 0) | self._one, self._star | self._dstar
            state = self._close(((state & step) << 1) | (state & stay))
            if not state:
                return False
        return bool(state & self._accept)


def _translate(tokens: list[str]) -> str:
    parts = []
    for token in tokens:
        if token == "**":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(token))
    return "".join(parts)


ANY = Glob("/**")
