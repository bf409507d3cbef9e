"""The current directory structure as a trie of path components (pure).

Each directory is a dict from entry name to either another directory (a
dict) or ``FILE``. A file at depth d costs d dict slots keyed by its own
components, so memory and time are linear in the path's bytes: no
directory is keyed by its full path (keying every level by its prefix made
a path of d levels cost O(d * len(path)), quadratic in the path).

Directories exist only while something is below them: unlinking the last
file under a directory removes it (the root stays).
"""

from __future__ import annotations

from typing import TypeAlias

FILE = "file"
"""The marker stored for a file entry (directories are dicts)."""

Dir: TypeAlias = "dict[str, Dir | str]"
"""A directory: entry name -> a directory or FILE."""


def _components(path: str) -> list[str]:
    """``/a/b`` -> ["a", "b"]; ``/`` -> []."""
    return path.split("/")[1:] if path != "/" else []


class Tree:
    """Which paths are files and which are directories, right now.

    The caller (Store) keeps values elsewhere; this only answers the
    structural questions: is it a directory, is a file in the way, what
    does a directory contain.
    """

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root: Dir = {}

    def _find(self, path: str) -> Dir | str | None:
        """The node at ``path`` (a dict or FILE), or None if absent."""
        node: Dir | str | None = self.root
        for name in _components(path):
            if not isinstance(node, dict):
                return None
            node = node.get(name)
            if node is None:
                return None
        return node

    def is_dir(self, path: str) -> bool:
        """True if ``path`` is the root or a directory with something below it."""
        return isinstance(self._find(path), dict)

    def under_file(self, path: str) -> bool:
        """True if a proper ancestor of ``path`` is a file."""
        node = self.root
        for name in _components(path)[:-1]:
            child = node.get(name)
            if child is None:
                return False
            if not isinstance(child, dict):
                return True
            node = child
        return False

    def entries(self, path: str) -> list[str]:
        """Sorted names in directory ``path``; [] if it is not a directory."""
        node = self._find(path)
        return sorted(node) if isinstance(node, dict) else []

    def link(self, path: str) -> None:
        """Record a new file at ``path``.

        Precondition (the store checks it): ``path`` is not the root, not a
        directory, and no ancestor is a file.
        """
        names = _components(path)
        node = self.root
        for name in names[:-1]:
            child = node.setdefault(name, {})
            assert isinstance(child, dict)
            node = child
        node[names[-1]] = FILE

    def unlink(self, path: str) -> None:
        """Forget the file at ``path`` and every directory left empty."""
        names = _components(path)
        trail = [self.root]
        for name in names[:-1]:
            child = trail[-1][name]
            assert isinstance(child, dict)
            trail.append(child)
        level = len(names) - 1
        del trail[level][names[level]]
        while level > 0 and not trail[level]:
            level -= 1
            del trail[level][names[level]]
