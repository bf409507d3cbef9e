"""The doozer verbs, shared by both clients.

Each method builds the request and hands it to ``self.request(call)``: the
Twisted client answers with a Deferred, the blocking client with the
result itself (or raises the DoozerError).
"""

from doozertw.client import plans
from doozertw.client.core import call


class Verbs:
    """Mixin: doozer's verbs over ``request(call)``, and the multi-request
    helpers over ``run_plan(plan)``."""

    def get(self, path, rev=None):
        """(value, rev); (b"", 0) for a missing file."""
        return self.request(call("GET", path=path, rev=rev))

    def set(self, path, rev, value):
        """New revision; REV_MISMATCH if ``rev`` is older than the file's."""
        return self.request(call("SET", path=path, rev=rev, value=value))

    def delete(self, path, rev):
        """Revision of the deletion."""
        return self.request(call("DEL", path=path, rev=rev))

    def rev(self):
        """The latest committed revision."""
        return self.request(call("REV"))

    def stat(self, path, rev=None):
        """(length, rev): rev -2 (DIR) for a directory, 0 if missing."""
        return self.request(call("STAT", path=path, rev=rev))

    def getdir(self, path, rev=None, offset=0):
        """Name of the ``offset``-th entry of a directory."""
        return self.request(call("GETDIR", path=path, rev=rev, offset=offset))

    def walk(self, glob, rev=None, offset=0):
        """Event of the ``offset``-th file matching ``glob``."""
        return self.request(call("WALK", path=glob, rev=rev, offset=offset))

    def nop(self):
        """A round trip through the cluster's commit path."""
        return self.request(call("NOP"))

    def self_id(self):
        """Id of the node this client is connected to."""
        return self.request(call("SELF"))

    self = self_id

    def access(self, secret):
        """Present ``secret``; it is presented again on every reconnect."""
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        self._secret = secret
        return self.request(call("ACCESS", value=secret))

    # -- helpers made of many requests (doozertw.client.plans) -----------------

    def getdir_all(self, path, rev=None):
        """Sorted list of every entry name in a directory."""
        return self.run_plan(plans.getdir_all(path, rev))

    def walk_all(self, glob, rev=None):
        """List of Events for every file matching ``glob``."""
        return self.run_plan(plans.walk_all(glob, rev))

    def find(self, root="/", rev=None):
        """List of ``root`` and every path under it, depth first."""
        return self.run_plan(plans.find(root, rev))

    def tree(self, root="/", rev=None):
        """List of (path, is_dir, length, rev) under ``root``."""
        return self.run_plan(plans.tree(root, rev))
