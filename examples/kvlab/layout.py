"""Where kvlab keeps its state in doozertw (pure).

::

    /kvlab/master                      the Election recipe's namespace
    /kvlab/groups/<g>/nodes/<node>     a data node's registration: its address
                                       (ephemeral: attached to the node's lease)
    /kvlab/groups/<g>/primary          "<node> <host:port>", written by the master

Registrations live one level below the group so that ``primary`` can never
be mistaken for a node. Names are doozer path components restricted to
``[A-Za-z0-9.-]`` (no ``_``: doozer's own rule), 1 to 64 characters.
"""

from __future__ import annotations

import re

import attrs

ROOT = "/kvlab"
MASTER = f"{ROOT}/master"
GROUPS = f"{ROOT}/groups"
PRIMARIES_GLOB = f"{GROUPS}/*/primary"
NODES_GLOB = f"{GROUPS}/*/nodes/*"
GROUPS_GLOB = f"{GROUPS}/**"

_NAME = re.compile(r"[A-Za-z0-9.-]{1,64}\Z")
_ADDR = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}\Z")


def check_name(name: str) -> str:
    """``name`` if it is a valid group or node name, else ValueError."""
    if not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"bad kvlab name {name!r}: 1-64 of [A-Za-z0-9.-]")
    return name


def group_dir(group: str) -> str:
    return f"{GROUPS}/{check_name(group)}"


def nodes_dir(group: str) -> str:
    return f"{group_dir(group)}/nodes"


def node_path(group: str, node: str) -> str:
    return f"{nodes_dir(group)}/{check_name(node)}"


def primary_path(group: str) -> str:
    return f"{group_dir(group)}/primary"


@attrs.frozen
class Where:
    """What a path under GROUPS names: the group, and the node for a
    registration (None for the primary file)."""

    group: str
    node: str | None


def parse_path(path: str) -> Where | None:
    """The group (and node) a kvlab path names; None for any other path."""
    prefix = GROUPS + "/"
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix):].split("/")
    try:
        if len(parts) == 2 and parts[1] == "primary":
            return Where(check_name(parts[0]), None)
        if len(parts) == 3 and parts[1] == "nodes":
            return Where(check_name(parts[0]), check_name(parts[2]))
    except ValueError:
        return None
    return None


@attrs.frozen
class Primary:
    """The content of a primary file, with the file's revision: ``epoch``
    grows with every change of primary, so it fences stale primaries."""

    node: str
    addr: str
    epoch: int


def encode_primary(node: str, addr: str) -> bytes:
    check_address(addr)
    return f"{check_name(node)} {addr}".encode()


def decode_primary(value: bytes, epoch: int) -> Primary | None:
    """The primary a file names; None if the value is not one (a file
    anybody may have written is input like any other)."""
    try:
        node, addr = value.decode("ascii").split(" ")
        return Primary(check_name(node), check_address(addr), epoch)
    except ValueError:
        return None


def check_address(addr: str) -> str:
    """``addr`` if it looks like host:port, else ValueError."""
    if not _ADDR.match(addr) or not 0 < int(addr.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"bad address {addr!r}")
    return addr


def split_address(addr: str) -> tuple[str, int]:
    host, port = check_address(addr).rsplit(":", 1)
    return host, int(port)
