"""The doozer verbs, shared by both clients.

Each method builds the request and hands it to ``self.request(call)``: the
Twisted client answers with a Deferred, the blocking client with the
result itself (or raises the DoozerError).

So the mixin's methods are typed ``Any`` here; each client declares them
again, for the type checker only, with its own result types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from doozertw.client import plans
from doozertw.client.core import Call, call

T = TypeVar("T")


class Verbs:
    """Mixin: doozer's verbs over ``request(call)``, and the multi-request
    helpers over ``run_plan(plan)``."""

    if TYPE_CHECKING:
        _secret: bytes | None

        def request(self, call_: Call) -> Any: ...

        def run_plan(self, plan: plans.Plan[T]) -> Any: ...

    def get(self, path: str, rev: int | None = None) -> Any:
        """(value, rev); (b"", 0) for a missing file."""
        return self.request(call("GET", path=path, rev=rev))

    def set(self, path: str, rev: int, value: bytes | str) -> Any:
        """New revision; REV_MISMATCH if ``rev`` is older than the file's."""
        return self.request(call("SET", path=path, rev=rev, value=value))

    def delete(self, path: str, rev: int) -> Any:
        """Revision of the deletion."""
        return self.request(call("DEL", path=path, rev=rev))

    def rev(self) -> Any:
        """The latest committed revision."""
        return self.request(call("REV"))

    def stat(self, path: str, rev: int | None = None) -> Any:
        """(length, rev): rev -2 (DIR) for a directory, 0 if missing."""
        return self.request(call("STAT", path=path, rev=rev))

    def getdir(self, path: str, rev: int | None = None, offset: int = 0) -> Any:
        """Name of the ``offset``-th entry of a directory."""
        return self.request(call("GETDIR", path=path, rev=rev, offset=offset))

    def walk(self, glob: str, rev: int | None = None, offset: int = 0) -> Any:
        """Event of the ``offset``-th file matching ``glob``."""
        return self.request(call("WALK", path=glob, rev=rev, offset=offset))

    def nop(self) -> Any:
        """A round trip through the cluster's commit path."""
        return self.request(call("NOP"))

    def self_id(self) -> Any:
        """Id of the node this client is connected to."""
        return self.request(call("SELF"))

    self = self_id

    def access(self, secret: bytes | str) -> Any:
        """Present ``secret``; it is presented again on every reconnect."""
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        self._secret = secret
        return self.request(call("ACCESS", value=secret))

    # -- helpers made of many requests (doozertw.client.plans) -----------------

    def getdir_all(self, path: str, rev: int | None = None) -> Any:
        """Sorted list of every entry name in a directory."""
        return self.run_plan(plans.getdir_all(path, rev))

    def walk_all(self, glob: str, rev: int | None = None) -> Any:
        """List of Events for every file matching ``glob``."""
        return self.run_plan(plans.walk_all(glob, rev))

    def find(self, root: str = "/", rev: int | None = None) -> Any:
        """List of ``root`` and every path under it, depth first."""
        return self.run_plan(plans.find(root, rev))

    def tree(self, root: str = "/", rev: int | None = None) -> Any:
        """List of (path, is_dir, length, rev) under ``root``."""
        return self.run_plan(plans.tree(root, rev))
