"""Path validation and glob compilation (pure).

A path is ``/`` or one or more components each introduced by ``/``. A
component is made of ASCII letters, digits, ``.``, ``-`` and ``_``: doozer's
set plus underscore. None of these is a glob character, so globs stay
unambiguous.

Globs: ``?`` matches one character within a component, ``*`` any run within
one component, ``**`` any run across components; anything else matches
itself.
"""

import re

from doozertw.errors import DoozerError, ErrCode

ROOT = "/"
MAX_PATH_BYTES = 4096

_COMPONENT_CHARS = r"[A-Za-z0-9._\-]"
_PATH_RE = re.compile(r"(?:/" + _COMPONENT_CHARS + r"+)+\Z")
_GLOB_RE = re.compile(r"(?:/[A-Za-z0-9._\-*?]+)+\Z")
_GLOB_TOKEN = re.compile(r"\*\*|\*|\?|[^*?]+")


def is_valid_path(path, max_bytes=MAX_PATH_BYTES):
    """True if ``path`` is a well-formed path no longer than ``max_bytes``."""
    if not isinstance(path, str) or len(path) > max_bytes:
        return False
    return path == ROOT or _PATH_RE.match(path) is not None


def check_path(path, max_bytes=MAX_PATH_BYTES):
    """Return ``path`` if valid, else raise DoozerError(BAD_PATH)."""
    if not is_valid_path(path, max_bytes):
        raise DoozerError(ErrCode.BAD_PATH, _describe(path))
    return path


def _describe(path):
    text = repr(path)
    return text if len(text) <= 80 else text[:77] + "..."


def parent_and_name(path):
    """Split ``/a/b/c`` into (``/a/b``, ``c``); the parent of ``/a`` is ``/``."""
    cut = path.rindex("/")
    return (path[:cut] or ROOT), path[cut + 1:]


def ancestors(path):
    """The directories above ``path``, nearest last, excluding ``/``: ``/a``, ``/a/b``."""
    out = []
    cut = path.find("/", 1)
    while cut != -1:
        out.append(path[:cut])
        cut = path.find("/", cut + 1)
    return out


def dir_links(path):
    """(directory, entry name) for every directory on the way to ``path``.

    ``/a/b/c`` gives (``/``, ``a``), (``/a``, ``b``), (``/a/b``, ``c``).
    """
    parts = path.split("/")
    return [("/".join(parts[:i]) or ROOT, parts[i]) for i in range(1, len(parts))]


def sort_key(path):
    """Order files the way a depth-first walk with sorted names visits them."""
    return path.split("/")


class Glob:
    """A compiled glob. ``match(path)`` is true when the whole path matches.

    ``literal`` is the glob itself when it has no wildcard (an exact path),
    else None; watch registries use it to index exact-path watches.
    """

    __slots__ = ("pattern", "literal", "_match")

    def __init__(self, pattern, max_bytes=MAX_PATH_BYTES):
        if not isinstance(pattern, str) or len(pattern) > max_bytes:
            raise DoozerError(ErrCode.BAD_PATH, "bad glob")
        if pattern != ROOT and _GLOB_RE.match(pattern) is None:
            raise DoozerError(ErrCode.BAD_PATH, f"bad glob {_describe(pattern)}")
        self.pattern = pattern
        wild = "*" in pattern or "?" in pattern
        self.literal = None if wild else pattern
        self._match = re.compile(_translate(pattern) + r"\Z").match

    def match(self, path):
        return self._match(path) is not None

    def __repr__(self):
        return f"Glob({self.pattern!r})"


def _translate(pattern):
    parts = []
    for token in _GLOB_TOKEN.findall(pattern):
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
