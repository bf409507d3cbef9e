"""Offline restore and disaster recovery of data directories.

Both write a NEW data directory (doozertw.persist) whose Raft storage holds
exactly one snapshot and a matching hard state, so a node started on it
resumes (doozertw.cluster.bootstrap) as a member of a new cluster:

- ``restore_data_dir`` (``doozer snapshot restore``, etcd's ``snapshot
  restore``): from a backup file (doozertw.persist.backup). The snapshot
  sits at index ``RESTORE_INDEX`` = 1, term ``RESTORE_TERM`` = 1, with the
  configuration ``voters`` (member id = node name), and the hard state is
  (term 1, no vote, commit 1). Every voter restored from the SAME backup
  with the SAME voters gets byte-for-byte the same snapshot, so together
  they form one cluster; revisions continue after the backup's.
- ``rebuild_survivor`` + ``write_recovered`` (``doozer recover``, etcd's
  ``--force-new-cluster``): one surviving node's directory becomes a
  single-voter cluster of that node. The store is rebuilt from the stored
  snapshot plus EVERY entry of the log, committed or not (as etcd does:
  what the survivor holds becomes the truth), applied exactly as
  ClusterDriver applies them (the driver's own code, dedup table
  included); the snapshot sits at the last index and term, with the
  configuration {the survivor's member id}.

In both, the store's /ctl tree is made to describe the new cluster
(``adopt_membership``) with ordinary store mutations, so they take the
revisions after the backup's (or the survivor's) last one: /ctl entries of
nodes that are not voters are deleted, every /ctl/node/<name>/peer is
deleted (each node rewrites its own when it starts; a stale address would
be dialled instead of the configured one), each voter's
/ctl/node/<name>/member names its member id, slots in /ctl/cal naming a
non-voter are deleted, a voter without a slot gets one, and /ctl/name is
the cluster's name. Files outside /ctl keep their values and revisions.
No reactor, socket or clock is used.
"""

from __future__ import annotations

import attrs

from doozertw.cluster.dedup import AppliedProposals, EntryApplier, pack_snapshot
from doozertw.cluster.membership import member_path, peer_path
from doozertw.consensus import ConfState, HardState, Ready, Snapshot, SnapshotMeta
from doozertw.persist.backup import Backup
from doozertw.persist.errors import DataDirError
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
from doozertw.persist.storage import DiskStorage
from doozertw.store import CLOBBER, DeleteFile, Glob, Mutation, SetFile, Store

RESTORE_INDEX = 1
RESTORE_TERM = 1
_UNBOUNDED = 1 << 62  # rebuild with the whole history window; the node trims it
_NODE_FILES = Glob("/ctl/node/**")
_SLOTS = Glob("/ctl/cal/*")
_NAME = "/ctl/name"


@attrs.frozen
class Written:
    """What a restore or a recovery put into a new data directory."""

    path: str
    member_id: str
    voters: tuple[str, ...]
    index: int
    term: int
    revision: int
    files: int
    ctl_changes: int


@attrs.frozen
class Survivor:
    """A surviving node's state, rebuilt from its data directory."""

    cluster: str
    node: str
    member_id: str
    store_snapshot: bytes
    table: bytes
    index: int
    term: int
    hard_term: int
    commit: int
    snapshot_index: int
    replayed: int


def open_store(store_bytes: bytes) -> Store:
    """A store restored from DZS2/DZS1 bytes with the whole history window
    kept (DoozerError if they are not a valid snapshot)."""
    store = Store(history=_UNBOUNDED, history_bytes=_UNBOUNDED)
    store.restore(store_bytes)
    return store


def adopt_membership(store: Store, voters: dict[str, str], cluster: str) -> int:
    """Make /ctl describe a cluster of ``voters`` ({node name: member id})
    named ``cluster`` (see the module docstring); deterministic for the
    same store and arguments. Returns the number of changes applied."""
    changes: list[Mutation] = []
    for event in sorted(store.files(_NODE_FILES), key=lambda e: e.path):
        name = event.path.split("/")[3]
        if name not in voters or event.path == peer_path(name):
            changes.append(DeleteFile(event.path, CLOBBER))
    for name, member in sorted(voters.items()):
        value, rev = store.get(member_path(name))
        if rev == 0 or value != member.encode("utf-8"):
            changes.append(SetFile(member_path(name), CLOBBER, member.encode("utf-8")))
    slots = {e.path: e.value.decode("utf-8", "replace") for e in store.files(_SLOTS)}
    for path, holder in sorted(slots.items()):
        if holder and holder not in voters:
            changes.append(DeleteFile(path, CLOBBER))
    held = set(slots.values())
    used = {p.rsplit("/", 1)[1] for p in slots}
    number = 0
    for name in sorted(voters):
        if name in held:
            continue
        while str(number) in used:
            number += 1
        used.add(str(number))
        changes.append(SetFile(f"/ctl/cal/{number}", CLOBBER, name.encode("utf-8")))
    if store.get(_NAME)[0] != cluster.encode("utf-8"):
        changes.append(SetFile(_NAME, CLOBBER, cluster.encode("utf-8")))
    for mutation in changes:
        outcome = store.apply(mutation)
        if outcome.error is not None:
            raise ValueError(f"cannot rewrite /ctl: {mutation} failed with "
                             f"{outcome.error.name}")
    return len(changes)


def write_data_dir(fs, path: str, meta: DataDirMeta, snapshot: Snapshot,
                   hard_state: HardState) -> None:
    """Create a data directory at ``path`` (absent or empty, else
    DataDirError) holding ``snapshot`` and ``hard_state``, durably."""
    storage = DiskStorage.create(fs, path, meta)
    try:
        storage.save(Ready(snapshot=snapshot, hard_state=hard_state))
    finally:
        storage.close()


def _written(path, member_id, conf, index, term, store, changes):
    return Written(path=path, member_id=member_id, voters=tuple(sorted(conf.voters)),
                   index=index, term=term, revision=store.rev, files=store.file_count,
                   ctl_changes=changes)


# -- restore ----------------------------------------------------------------------


def restore_data_dir(fs, path: str, backup: Backup, name: str, cluster: str,
                     voters) -> Written:
    """Write the data directory of voter ``name`` of a new cluster
    ``cluster`` with ``voters`` (node names), holding ``backup``'s store.
    ValueError for a bad voter list; DataDirError if ``path`` is not empty."""
    voters = sorted(set(voters))
    if name not in voters:
        raise ValueError(f"{name} is not one of the voters {voters}")
    if fs.exists(path) and (not fs.isdir(path) or fs.listdir(path)):
        raise DataDirError(f"{path}: not empty; restore writes a NEW data directory")
    store = open_store(backup.store_snapshot)
    changes = adopt_membership(store, {v: v for v in voters}, cluster)
    conf = ConfState(voters=frozenset(voters))
    snapshot = Snapshot(SnapshotMeta(RESTORE_INDEX, RESTORE_TERM, conf),
                        pack_snapshot(store.snapshot(), AppliedProposals()))
    meta = DataDirMeta(FORMAT_VERSION, cluster, name, name)
    write_data_dir(fs, path, meta, snapshot,
                   HardState(term=RESTORE_TERM, vote="", commit=RESTORE_INDEX))
    return _written(path, name, conf, RESTORE_INDEX, RESTORE_TERM, store, changes)


# -- disaster recovery ------------------------------------------------------------


def rebuild_survivor(fs, path: str, cluster: str, name: str) -> Survivor:
    """Load node ``name``'s data directory (DiskStorage.open: DataDirError,
    CorruptLog) and rebuild its store from the snapshot plus every logged
    entry. The directory is only read; its lock is held meanwhile."""
    storage = DiskStorage.open(fs, path, cluster, name)
    try:
        store = Store(history=_UNBOUNDED, history_bytes=_UNBOUNDED)
        replayer = EntryApplier(store)  # the driver's own apply code and dedup
        if storage.snapshot.index > 0 and storage.snapshot.data:
            replayer.restore(storage.snapshot.data)
        for entry in storage.entries:
            replayer.apply(entry)
        snap = storage.snapshot
        last = storage.entries[-1] if storage.entries else None
        return Survivor(
            cluster=cluster, node=name, member_id=storage.meta.member_id,
            store_snapshot=store.snapshot(), table=replayer.proposals.encode(),
            index=last.index if last else snap.index,
            term=last.term if last else snap.term,
            hard_term=storage.hard_state.term, commit=storage.hard_state.commit,
            snapshot_index=snap.index, replayed=len(storage.entries))
    finally:
        storage.close()


def write_recovered(fs, path: str, survivor: Survivor) -> Written:
    """Write the single-voter data directory of ``survivor`` at ``path``
    (absent or empty): snapshot at its last index and term, configuration
    {its member id}, /ctl adopted, hard state (its term, no vote, commit
    = that index)."""
    if survivor.index == 0:
        raise DataDirError(f"{survivor.node}: the data directory holds no log or "
                           f"snapshot; nothing to recover")
    store = open_store(survivor.store_snapshot)
    member = survivor.member_id
    changes = adopt_membership(store, {survivor.node: member}, survivor.cluster)
    table = AppliedProposals()
    table.restore(survivor.table)
    conf = ConfState(voters=frozenset({member}))
    snapshot = Snapshot(SnapshotMeta(survivor.index, survivor.term, conf),
                        pack_snapshot(store.snapshot(), table))
    term = max(survivor.hard_term, survivor.term)
    meta = DataDirMeta(FORMAT_VERSION, survivor.cluster, survivor.node, member)
    write_data_dir(fs, path, meta, snapshot,
                   HardState(term=term, vote="", commit=survivor.index))
    return _written(path, member, conf, survivor.index, survivor.term, store, changes)


__all__ = ["RESTORE_INDEX", "RESTORE_TERM", "Survivor", "Written", "adopt_membership",
           "open_store", "rebuild_survivor", "restore_data_dir", "write_data_dir",
           "write_recovered"]
