"""The current directory structure as a trie of path components (pure).

Each directory is a dict from entry name to either another directory (a
dict) or ``FILE``. A file at depth d costs d dict slots keyed by its own
components, so memory and time are linear in the path's bytes: no
directory is keyed by its full path (keying every level by its prefix made
a path of d levels cost O(d * len(path)), quadratic in the path).

Directories exist only while something is below them: unlinking the last
file under a directory removes it (the root stays).
"""

FILE = "file"
"""The marker stored for a file entry (directories are dicts)."""


def _components(path):
    """``/a/b`` -> ["a", "b"]; ``/`` -> []."""
    return path.split("/")[1:] if path != "/" else []


class Tree:
    """Which paths are files and which are directories, right now.

    The caller (Store) keeps values elsewhere; this only answers the
    structural questions: is it a directory, is a file in the way, what
    does a directory contain.
    """

    __slots__ = ("root",)

    def __init__(self):
        self.root = {}

    def _find(self, path):
        """The node at ``path`` (a dict or FILE), or None if absent."""
        node = self.root
        for name in _components(path):
            if node is FILE:
                return None
            node = node.get(name)
            if node is None:
                return None
        return node

    def is_dir(self, path):
        """True if ``path`` is the root or a directory with something below it."""
        return isinstance(self._find(path), dict)

    def under_file(self, path):
        """True if a proper ancestor of ``path`` is a file."""
        node = self.root
        for name in _components(path)[:-1]:
            node = node.get(name)
            if node is None:
                return False
            if node is FILE:
                return True
        return False

    def entries(self, path):
        """Sorted names in directory ``path``; [] if it is not a directory."""
        node = self._find(path)
        return sorted(node) if isinstance(node, dict) else []

    def link(self, path):
        """Record a new file at ``path``.

        Precondition (the store checks it): ``path`` is not the root, not a
        directory, and no ancestor is a file.
        """
        names = _components(path)
        node = self.root
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = FILE

    def unlink(self, path):
        """Forget the file at ``path`` and every directory left empty."""
        names = _components(path)
        trail = [self.root]
        for name in names[:-1]:
            trail.append(trail[-1][name])
        level = len(names) - 1
        del trail[level][names[level]]
        while level > 0 and not trail[level]:
            level -= 1
            del trail[level][names[level]]
