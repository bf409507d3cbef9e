"""A kvlab data node: serve keys, register in a group, follow its primary.

On start a data node listens on its address (``server.KVServer``), opens
a ``Session`` and registers itself with the ``Registry`` recipe at
``layout.nodes_dir(group)``: the file ``<node>`` holds its address and
lives as long as the session's lease. It then follows, through watches,

- its group's registrations (``Registry.watch``): the secondaries a
  primary replicates to;
- its group's primary file (written by the master): whether it is the
  primary, and the epoch (the file's revision) that fences replication.

A data node whose session is LOST stops (exit status 3): the master has
already replaced it, and a supervisor would start it again.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import Logger

from doozertw.client import DoozerClient, DoozerError, ErrCode, Event
from doozertw.client.recipes import Registry
from examples.kvlab import layout
from examples.kvlab.sessions import open_session
from examples.kvlab.lineclient import LinePool, fire
from examples.kvlab.server import KVServerFactory, Replica

log = Logger(namespace="kvlab.datanode")


def primary_from(event: Event) -> layout.Primary | None:
    """The primary a change of the primary file names (None: deleted or junk)."""
    return layout.decode_primary(event.value, event.rev) if event.is_set else None


async def register(registry: Registry, node: str, addr: str, ttl: int, reactor: Any) -> int:
    """Register ``node``; retries while an earlier life's registration is
    still there (it goes when that life's lease expires, within ``ttl``)."""
    for _ in range(4 * ttl):
        try:
            rev: int = await registry.register(node, addr)
            return rev
        except DoozerError as e:
            if e.code != ErrCode.REV_MISMATCH:
                raise
            log.info("{node}: an earlier registration is still there; waiting", node=node)
            await task.deferLater(reactor, 0.5, lambda: None)
    raise RuntimeError(f"{node} could not register")


async def follow_primary(client: DoozerClient, replica: Replica) -> Any:
    """Tell ``replica`` its group's primary now and at every change; the Watch."""
    path = layout.primary_path(replica.group)
    rev = await client.rev()
    value, file_rev = await client.get(path, rev)
    replica.set_primary(layout.decode_primary(value, file_rev) if file_rev > 0 else None)
    return client.watch(path, rev=rev + 1,
                        callback=lambda event: replica.set_primary(primary_from(event)))


async def run(reactor: Any, target: str, group: str, node: str, port: int, ttl: int) -> int:
    """Run data node ``node`` of ``group`` on loopback ``port`` until its
    session is lost; the exit status."""
    addr = f"127.0.0.1:{port}"
    pool = LinePool(reactor, timeout=2.0)
    replica = Replica(layout.check_name(group), layout.check_name(node), pool.request)
    endpoint: Any = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
        reactor, port, interface="127.0.0.1")
    await endpoint.listen(KVServerFactory(replica))
    client, session, lost = await open_session(reactor, target, ttl, node)
    watch = await follow_primary(client, replica)
    watch.done.addErrback(lambda f: fire(lost, 5))
    registry = Registry(session, layout.nodes_dir(group))
    rev = await register(registry, node, addr, ttl, reactor)
    log.info("{node}: serving {addr}, registered in {group} at rev {rev} (lease {lease})",
             node=node, addr=addr, group=group, rev=rev, lease=session.lease)
    registry.watch(lambda members: replica.set_members(
        {n: v.decode("ascii", "replace") for n, v in members.items()}))
    return await lost
