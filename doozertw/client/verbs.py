"""The doozer verbs, shared by both clients.

Each method builds the request and hands it to ``self.request(call)``: the
Twisted client answers with a Deferred, the blocking client with the
result itself (or raises the DoozerError).

So the mixin's methods are typed ``Any`` here; each client declares them
again, for the type checker only, with its own result types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from doozertw.client import plans
from doozertw.client.core import Call, Op, call
from doozertw.store.mutation import Compare

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

    def set(self, path: str, rev: int, value: bytes | str, lease: int = 0) -> Any:
        """New revision; REV_MISMATCH if ``rev`` is older than the file's.

        ``lease`` (0: none) attaches the file to that lease (NOENT if it does
        not exist): the file is deleted when the lease expires or is revoked.
        A set without a lease detaches the file from any lease it had.
        """
        return self.request(call("SET", path=path, rev=rev, value=value, lease=lease or None))

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

    # -- leases and transactions (doozertw's extensions) -----------------------

    def grant_lease(self, ttl: int, id: int = 0) -> Any:  # noqa: A002 (the lease's id)
        """A new lease (LeaseInfo) of ``ttl`` seconds; ``id`` asks for that id
        (0: the server picks; REV_MISMATCH if taken). RANGE for a ttl the
        server does not allow. Not retried after a lost connection."""
        return self.request(call("LEASE_GRANT", ttl=ttl, lease=id or None))

    def keepalive(self, id: int) -> Any:  # noqa: A002
        """Restart the lease's countdown: its LeaseInfo (``remaining`` is the
        full ttl again); NOENT if it expired. Retried after a lost connection."""
        return self.request(call("LEASE_KEEPALIVE", lease=id))

    def revoke_lease(self, id: int) -> Any:  # noqa: A002
        """Delete the lease and every file attached to it in one step; the
        revision after it. NOENT if it does not exist."""
        return self.request(call("LEASE_REVOKE", lease=id))

    def lease_ttl(self, id: int) -> Any:  # noqa: A002
        """The lease (LeaseInfo) with the paths attached to it; NOENT if none."""
        return self.run_plan(plans.lease_ttl(id))

    def leases(self) -> Any:
        """Every lease (list of LeaseInfo, by id; ``paths`` left empty)."""
        return self.run_plan(plans.leases())

    def txn(self, compares: Iterable[Compare], success: Iterable[Op] = (),
            failure: Iterable[Op] = ()) -> Any:
        """One atomic step (TxnResult): if every Compare holds, apply the
        ``success`` ops (SetFile, DeleteFile), else the ``failure`` ops. An
        op that cannot apply fails the whole transaction with its error
        (REV_MISMATCH, ISDIR, ...) and changes nothing. Not retried after a
        lost connection."""
        return self.request(call("TXN", compares=compares, success=success, failure=failure))

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
