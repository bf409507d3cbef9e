"""A kvlab coordinator: elect a master; the master places primaries.

Every coordinator campaigns in the ``Election`` at ``layout.MASTER`` on a
``Session`` of its own, and observes the election (logging who leads).
The one that leads is the *master*; the others just wait in the queue and
take over when the master's session ends (its process died, so its lease
expired, or it was partitioned away for longer than the lease's ttl).

The master (``Master``) watches everything under ``layout.GROUPS`` and,
after every change, reads every group at one revision (``read_groups``:
each group's registrations through ``Registry.members_with_revs``, which
gives their revisions, and its primary file), computes the changes
(``placement.plan``) and applies each in a transaction that checks what it
read still holds: the master's leadership (``Election.fence()``, so a
deposed master writes nothing), the primary file's revision and the
chosen node's registration.

A coordinator whose session is LOST stops (exit status 3): its leadership,
if it had one, is gone, and a supervisor would start it again.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw.client import (
    Compare, DeleteFile, DoozerClient, DoozerError, ErrCode, SetFile, TxnResult)
from doozertw.client.recipes import Election, Registry
from examples.kvlab import layout
from examples.kvlab.sessions import open_session
from examples.kvlab.lineclient import fire
from examples.kvlab.placement import Assign, Change, FileView, plan, read_state

log = Logger(namespace="kvlab.coordinator")
RETRY_DELAY = 0.5


def txn_for(change: Change, fence: Compare) -> tuple[list[Compare], list[SetFile | DeleteFile]]:
    """The (compares, success changes) of a transaction applying ``change``
    only if ``fence`` (the master's election file) and what was read hold."""
    primary = layout.primary_path(change.group)
    compares = [fence, Compare(primary, rev=change.primary_rev)]
    if isinstance(change, Assign):
        member = change.member
        compares.append(Compare(layout.node_path(change.group, member.node), rev=member.rev))
        value = layout.encode_primary(member.node, member.addr)
        return compares, [SetFile(primary, change.primary_rev, value)]
    return compares, [DeleteFile(primary, change.primary_rev)]


class Master:
    """The acting master's loop (see the module docstring). ``fence``
    holds while the master leads (``Election.fence()``)."""

    def __init__(self, client: DoozerClient, name: str, fence: Compare) -> None:
        self.client = client
        self.name = name
        self.fence = fence
        self.deposed: defer.Deferred[str] = defer.Deferred()
        self._busy = False
        self._again = False
        self._watch: Any = None

    async def start(self) -> None:
        rev = await self.client.rev()
        self._watch = self.client.watch(layout.GROUPS_GLOB, rev=rev + 1,
                                        callback=lambda _: self.poke())
        self._watch.done.addErrback(self._watch_failed)
        self.poke()

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    def _watch_failed(self, failure: Failure) -> None:
        log.warn("master watch failed ({why}): watching again", why=failure.getErrorMessage())
        if not self.deposed.called:
            defer.ensureDeferred(self.start()).addErrback(self._gone)

    def poke(self) -> None:
        """Something changed: reconcile (again, once the current round ends)."""
        if self.deposed.called:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        d = defer.ensureDeferred(self._reconcile())
        d.addErrback(self._round_failed)
        d.addBoth(self._round_done)

    def _round_done(self, _: object) -> None:
        self._busy = False
        if self._again and not self.deposed.called:
            self._again = False
            self.poke()

    def _round_failed(self, failure: Failure) -> None:
        log.warn("master round failed: {why}; again in {delay}s", why=failure.getErrorMessage(),
                 delay=RETRY_DELAY)
        self.client.reactor.callLater(RETRY_DELAY, self.poke)

    async def _reconcile(self) -> None:
        rev = await self.client.rev()
        members, primaries = read_state(await read_groups(self.client, rev))
        for change in plan(members, primaries):
            compares, success = txn_for(change, self.fence)
            result: TxnResult = await self.client.txn(compares, success, [])
            if result.succeeded:
                self._announce(change, result.rev)
                continue
            if (await self.client.get(self.fence.path))[1] != self.fence.rev:
                self._gone(Failure(RuntimeError("election file gone")))  # type: ignore[no-untyped-call]
                return
            self._again = True      # something moved under us: read again

    def _announce(self, change: Change, rev: int) -> None:
        if isinstance(change, Assign):
            log.info("MASTER {me}: primary of {group} := {node} ({addr}), epoch {rev}",
                     me=self.name, group=change.group, node=change.member.node,
                     addr=change.member.addr, rev=rev)
        else:
            log.info("MASTER {me}: {group} has no live node: primary cleared",
                     me=self.name, group=change.group)

    def _gone(self, failure: Failure) -> None:
        if not self.deposed.called:
            self.stop()
            self.deposed.callback(failure.getErrorMessage())


async def read_groups(client: DoozerClient, rev: int) -> list[FileView]:
    """Every group's registrations (``Registry.members_with_revs``) and
    primary file at revision ``rev``, for ``placement.read_state``. Names
    under ``layout.GROUPS`` that are not group names are skipped, and so is
    a primary that is a directory: anybody may write there."""
    try:
        names = await client.getdir_all(layout.GROUPS, rev)
    except DoozerError as e:
        if e.code not in (ErrCode.NOENT, ErrCode.NOTDIR):
            raise
        return []
    files: list[FileView] = []
    for group in names:
        try:
            nodes = layout.nodes_dir(group)
        except ValueError:
            continue
        registered = await Registry(client, nodes).members_with_revs(rev)
        files.extend(FileView(f"{nodes}/{m.name}", m.value, m.rev) for m in registered.values())
        try:
            value, file_rev = await client.get(layout.primary_path(group), rev)
        except DoozerError as e:
            if e.code != ErrCode.ISDIR:
                raise
            continue
        if file_rev > 0:
            files.append(FileView(layout.primary_path(group), value, file_rev))
    return files


async def run(reactor: Any, target: str, name: str, ttl: int) -> int:
    """Run coordinator ``name`` until its session is lost; the exit status."""
    client, session, lost = await open_session(reactor, target, ttl, name)
    log.info("{me}: session {lease} (ttl {ttl}s); campaigning for master",
             me=name, lease=session.lease, ttl=ttl)
    election = Election(session, layout.MASTER)
    election.observe(lambda value: log.info(
        "{me}: master is now {who}", me=name,
        who=value.decode("ascii", "replace") if value else "nobody"))
    campaign = election.campaign(name)
    campaign.addCallback(
        lambda token: defer.ensureDeferred(_lead(client, election, name, token, lost)))
    campaign.addErrback(lambda f: fire(lost, _failed(name, f)))
    return await lost


async def _lead(client: DoozerClient, election: Election, name: str, token: int,
                lost: defer.Deferred[int]) -> None:
    log.info("{me}: ELECTED master (fencing token {token})", me=name, token=token)
    master = Master(client, name, election.fence())
    await master.start()
    why = await master.deposed
    log.warn("{me}: no longer master ({why}): stopping", me=name, why=why)
    if not lost.called:
        lost.callback(3)


def _failed(name: str, failure: Failure) -> int:
    log.failure("{me}: campaign failed", failure, me=name)
    return 4
