"""Cluster administration through the /ctl tree, from the command line.

    python -m doozertw.cluster.admin status          -a 127.0.0.1:8046
    python -m doozertw.cluster.admin promote n4      -a 127.0.0.1:8046
    python -m doozertw.cluster.admin demote n4       -a 127.0.0.1:8046
    python -m doozertw.cluster.admin remove n4       -a 127.0.0.1:8046

Every command is an ordinary doozer write, so the same can be done with
any doozer client: ``promote`` writes the name into an empty (or new)
/ctl/cal/<n>; ``demote`` deletes its slot (the node stays a learner);
``remove`` also deletes /ctl/node/<name>/member, after which the leader
removes the node from the cluster. The secret comes from ``--secret`` or
DOOZER_RWSECRET.
"""

from __future__ import annotations

import argparse
import os
import sys

from doozertw.client import BlockingClient
from doozertw.errors import DoozerError, ErrCode

CAL_GLOB = "/ctl/cal/*"


def _all(client, glob):
    """Every (path, value, rev) matching ``glob``."""
    out = []
    offset = 0
    while True:
        try:
            event = client.walk(glob, None, offset)
        except DoozerError as e:
            if e.code == ErrCode.RANGE:
                return out
            raise
        out.append((event.path, event.value.decode("utf-8", "replace"), event.rev))
        offset += 1


def slots(client):
    return {path: (value, rev) for path, value, rev in _all(client, CAL_GLOB)}


def promote(client, name):
    """Put ``name`` into an empty slot, or a new one; returns the slot path."""
    current = slots(client)
    for path, (value, _) in current.items():
        if value == name:
            return path
    for path, (value, rev) in sorted(current.items()):
        if not value:
            client.set(path, rev, name.encode("utf-8"))
            return path
    numbers = [int(p.rsplit("/", 1)[1]) for p in current if p.rsplit("/", 1)[1].isdigit()]
    path = f"/ctl/cal/{max(numbers, default=-1) + 1}"
    client.set(path, 0, name.encode("utf-8"))
    return path


def demote(client, name):
    """Delete the slots holding ``name``; returns their paths."""
    freed = []
    for path, (value, rev) in sorted(slots(client).items()):
        if value == name:
            client.delete(path, rev)
            freed.append(path)
    return freed


def remove(client, name):
    freed = demote(client, name)
    _, rev = client.get(f"/ctl/node/{name}/member")
    if rev:
        client.delete(f"/ctl/node/{name}/member", rev)
    return freed


def status(client):
    lines = []
    for path, (value, _) in sorted(slots(client).items()):
        lines.append(f"{path} = {value or '(empty)'}")
    for path, value, _ in _all(client, "/ctl/node/*/*"):
        lines.append(f"{path} = {value}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m doozertw.cluster.admin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["status", "promote", "demote", "remove"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("-a", "--address", default="127.0.0.1:8046",
                        help="client address of any member")
    parser.add_argument("--secret", default=os.environ.get("DOOZER_RWSECRET"))
    args = parser.parse_args(argv)
    if args.command != "status" and not args.name:
        parser.error(f"{args.command} needs a node name")
    with BlockingClient(args.address, secret=args.secret) as client:
        try:
            if args.command == "status":
                print(status(client))
            elif args.command == "promote":
                print(f"{args.name} holds {promote(client, args.name)}")
            elif args.command == "demote":
                print(f"freed {', '.join(demote(client, args.name)) or 'no slot'}")
            else:
                freed = ", ".join(remove(client, args.name)) or "no slot"
                print(f"removing {args.name}; freed {freed}")
        except DoozerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
