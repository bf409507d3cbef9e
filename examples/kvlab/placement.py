"""Which data node of a group is its primary (pure).

The master keeps one primary per group: the current one while its
registration lives, else the *lowest* live registration, i.e. the oldest
(lowest doozer revision; the name breaks ties). A group whose last node
vanished gets its primary file deleted, so clients stop routing to it.

``plan`` turns what the master read (at one revision) into the changes to
make; the master applies each one in a transaction that checks that what it
read still holds (see ``coordinator``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from examples.kvlab.layout import Primary, check_address, decode_primary, parse_path


@attrs.frozen
class Member:
    """A live registration: the node, its address and the revision of its
    registration file."""

    node: str
    addr: str
    rev: int


@attrs.frozen
class Assign:
    """Make ``member`` the primary of ``group``; ``primary_rev`` is the
    revision of the primary file read (0: none)."""

    group: str
    member: Member
    primary_rev: int


@attrs.frozen
class Clear:
    """Delete ``group``'s primary file (read at ``primary_rev``): no node is left."""

    group: str
    primary_rev: int


Change = Assign | Clear


def choose_primary(current: str | None, live: Iterable[Member]) -> Member | None:
    """The member that should be primary: ``current`` if it is live, else
    the member with the lowest (rev, node); None if nobody is live."""
    members = list(live)
    for member in members:
        if member.node == current:
            return member
    return min(members, key=lambda m: (m.rev, m.node), default=None)


def plan(members: Mapping[str, Iterable[Member]],
         primaries: Mapping[str, Primary]) -> list[Change]:
    """The changes that give every group the right primary, in group order.

    ``members``: live registrations per group; ``primaries``: the primary
    files read (their revision is ``Primary.epoch``). A primary file that
    already names the right member at the right address needs nothing.
    """
    changes: list[Change] = []
    for group in sorted(set(members) | set(primaries)):
        current = primaries.get(group)
        chosen = choose_primary(current.node if current else None, members.get(group, ()))
        rev = current.epoch if current else 0
        if chosen is None:
            if current is not None:
                changes.append(Clear(group, rev))
        elif current is None or (current.node, current.addr) != (chosen.node, chosen.addr):
            changes.append(Assign(group, chosen, rev))
    return changes


@attrs.frozen
class FileView:
    """One file as read from doozertw (a walk's event, say)."""

    path: str
    value: bytes
    rev: int


def read_state(files: Iterable[FileView]) -> tuple[dict[str, list[Member]],
                                                    dict[str, Primary]]:
    """Live members per group and primary files per group, from the files
    under ``layout.GROUPS``. A registration whose value is not an address is
    ignored; a primary file that does not parse is kept as ``Primary("",
    "", rev)`` so that the master overwrites it (at that revision)."""
    members: dict[str, list[Member]] = {}
    primaries: dict[str, Primary] = {}
    for f in files:
        where = parse_path(f.path)
        if where is None:
            continue
        if where.node is None:
            primaries[where.group] = (decode_primary(f.value, f.rev)
                                      or Primary("", "", f.rev))
            continue
        try:
            addr = check_address(f.value.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            continue
        members.setdefault(where.group, []).append(Member(where.node, addr, f.rev))
    return members, primaries
