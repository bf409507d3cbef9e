"""ZooKeeper's four-letter admin words on the text protocol (a mixin of TextVerbs).

``ruok``, ``isro``, ``srvr``, ``stat`` (with no argument), ``mntr`` and
``cons`` are answered from this node's own figures (``node.metrics()``,
``node.applied_rev``, its optional ``cluster_status()``), at once: no read
barrier, no quorum, nothing waits for this connection's writes. ``ruok``
needs no right (a liveness probe, like the web port's /livez); the others
need the read right, as reads do.

``cons`` lists the text-protocol connections of this node, which the text
front end tracks itself (``TEXT_CONNECTIONS``); connections that speak the
doozer protocol are counted in ``srvr``'s ``Connections`` but not listed.
"""

import weakref

from doozertw import __version__
from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.text.replies import clean

STANDALONE = "standalone"


class TextConnections:
    """The open text-protocol connections of each node (weakly held)."""

    def __init__(self):
        self._by_node = weakref.WeakKeyDictionary()

    def add(self, node, proto):
        try:
            self._by_node.setdefault(node, weakref.WeakSet()).add(proto)
        except TypeError:     # a node that cannot be weakly referenced: list none
            pass

    def discard(self, node, proto):
        try:
            found = self._by_node.get(node)
        except TypeError:
            return
        if found is not None:
            found.discard(proto)

    def of(self, node):
        try:
            found = self._by_node.get(node)
        except TypeError:
            return []
        return sorted(found or (), key=lambda p: p.serial)


TEXT_CONNECTIONS = TextConnections()


def cluster_view(node):
    """The node's ClusterView, or None for a node alone (no ``cluster_status``)."""
    provided = getattr(node, "cluster_status", None)
    return provided() if callable(provided) else None


def role_of(node, view):
    """``leader``, ``follower``, ``candidate``, ``learner`` or ``standalone``."""
    if view is None:
        return STANDALONE
    me = view.member(node.name)
    if me is not None:
        return me.role
    return "leader" if view.leader == node.name else "learner"


def figures(node):
    """(key, value) pairs describing the node now, for srvr/stat and mntr."""
    m = node.metrics()
    view = cluster_view(node)
    pairs = [
        ("version", __version__), ("node", node.name), ("cluster", node.cluster_name),
        ("server_state", role_of(node, view)),
        ("leader", (view.leader or "none") if view is not None else node.name),
        ("revision", node.applied_rev), ("znode_count", m.files),
        ("watch_count", m.watchers), ("num_alive_connections", m.connections),
        ("reads", m.reads), ("writes", m.writes), ("write_errors", m.write_errors),
    ]
    if view is not None:
        pairs += [("term", view.term), ("has_quorum", 1 if view.has_quorum else 0)]
    return pairs


SRVR_NAMES = {
    "version": "Doozer version", "node": "Node", "cluster": "Cluster",
    "server_state": "Mode", "leader": "Leader", "revision": "Revision",
    "znode_count": "Files", "watch_count": "Watchers",
    "num_alive_connections": "Connections", "reads": "Reads", "writes": "Writes",
    "write_errors": "Write errors", "term": "Term", "has_quorum": "Quorum",
}


def _text(value):
    return clean(value).encode("ascii")


def block(kind, lines):
    """``OK <kind> <n>`` then the n lines."""
    return b"OK %s %d\r\n" % (kind, len(lines)) + b"".join(line + b"\r\n" for line in lines)


def peer_address(transport):
    """``host:port`` of a transport's peer, or ``?``."""
    try:
        peer = transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "?"


class AdminVerbs:
    """The admin words for TextVerbs; ``cons`` and ``stat`` use TEXT_CONNECTIONS."""

    def cmd_ruok(self, line, literal, reply):
        self._no_args(line)
        return b"OK imok\r\n"

    def cmd_isro(self, line, literal, reply):
        self._no_args(line)
        return b"OK rw\r\n" if self.access.can_write else b"OK ro\r\n"

    def cmd_srvr(self, line, literal, reply):
        self._no_args(line)
        return block(b"SRVR", self._srvr_lines())

    def cmd_mntr(self, line, literal, reply):
        self._no_args(line)
        return block(b"MNTR", [b"doozer_%s\t%s" % (_text(k), _text(v))
                               for k, v in figures(self.node)])

    def cmd_cons(self, line, literal, reply):
        self._no_args(line)
        return block(b"CONS", self._cons_lines())

    def admin_stat(self):
        """``stat`` with no argument: srvr's lines, then ``Clients: <k>`` and k cons lines."""
        clients = self._cons_lines()
        lines = self._srvr_lines() + [b"Clients: %d" % len(clients)] + clients
        return block(b"STATS", lines)

    def _no_args(self, line):
        extra = line.split(b" ", 1)[1:]
        if extra and extra[0].strip(b" "):
            verb = line.split(b" ", 1)[0].lower().decode("ascii", "replace")
            raise DoozerError(ErrCode.OTHER, "too many arguments; usage: " + verb)

    def _srvr_lines(self):
        return [b"%s: %s" % (SRVR_NAMES[k].encode("ascii"), _text(v))
                for k, v in figures(self.node)]

    def _cons_lines(self):
        return [b"%s proto=text recved=%d sent=%d watches=%d%s" % (
            _text(peer_address(p.transport)), p.served, p.answered, p.watches,
            b" self=1" if p is self else b"")
            for p in TEXT_CONNECTIONS.of(self.node)]
