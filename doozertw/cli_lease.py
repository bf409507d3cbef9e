"""``doozer lease ...``: leases from the command line (doozertw's extension).

    doozer [options] lease grant <ttl> [--id ID]     prints the lease's id
    doozer [options] lease keepalive <id> [--every DURATION]
                                                     prints the seconds left
    doozer [options] lease revoke <id>               prints the revision
    doozer [options] lease ttl <id>                  <id> <ttl> <left>, then its files
    doozer [options] lease list                      <id> <ttl> <left> per lease

A file joins a lease with ``doozer set --lease ID <path> <rev>`` (or
``add --lease ID``); it is deleted when the lease expires or is revoked.
``keepalive --every 2s`` keeps the lease alive until interrupted (exit 0;
the lease then runs out on its own); while its node is unreachable it
tries the other addresses for up to the lease's ttl. ``--json`` prints
JSON documents instead. Exit status as for the other commands: 1 for a
grant whose id is taken (REV_MISMATCH), 2 for any other error (NOENT: no
such lease, or it expired), 127 for a usage error.
"""

from __future__ import annotations

import argparse
import time

SYNOPSIS = "<verb> [args]"
SUMMARY = "leases: grant, keepalive, revoke, ttl, list"
HELP = """Verbs:

  grant <ttl> [--id ID]              grant a lease of <ttl> seconds; prints its id
  keepalive <id> [--every DURATION]  restart its countdown; prints the seconds left
                                     (with --every: again and again until interrupted)
  revoke <id>                        delete the lease and its files; prints the rev
  ttl <id>                           prints "<id> <ttl> <left>", then each of its files
  list                               prints "<id> <ttl> <left>" for every lease

Files join a lease with 'set --lease ID <path> <rev>' or 'add --lease ID <path>';
they are deleted when it expires or is revoked. Exit status: 1 for a grant whose
id is taken (REV_MISMATCH), 2 for other errors (NOENT: no such lease).
"""

sleep = time.sleep
"""How ``keepalive --every`` waits (replaced by the tests)."""


class _Usage(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def exit(self, status=0, message=None):
        raise _Usage(message or "")

    def error(self, message):
        raise _Usage(f"doozer lease: {message}\n")


def _duration(text):
    from doozertw.cli import parse_duration
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("a duration above 0")
    return seconds


def _parser():
    parser = _Parser(prog="doozer lease", add_help=False)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true")
    grant = verbs.add_parser("grant", parents=[common], add_help=False)
    grant.add_argument("ttl", type=int)
    grant.add_argument("--id", type=int, default=0)
    keep = verbs.add_parser("keepalive", parents=[common], add_help=False)
    keep.add_argument("id", type=int)
    keep.add_argument("--every", type=_duration, default=None)
    for name in ("revoke", "ttl"):
        verbs.add_parser(name, parents=[common], add_help=False).add_argument("id", type=int)
    verbs.add_parser("list", parents=[common], add_help=False)
    return parser


def main(argv, ctx, run):
    """Run ``doozer lease argv`` with cli's Context ``ctx``; ``run(ctx, fn,
    args)`` is cli.run (maps errors to exit statuses). Returns the status."""
    try:
        args = _parser().parse_args(argv)
    except _Usage as e:
        ctx.stderr.write(e.message or "doozer lease: bad arguments\n")
        ctx.stderr.write(f"Use: doozer [options] lease {SYNOPSIS}\n")
        return 127
    ctx.options.json = ctx.options.json or args.json
    return run(ctx, _COMMANDS[args.verb], [args])


def _seconds(value):
    """Seconds for printing: 10, 9.5, 0.125."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _info_json(info):
    return {"id": info.id, "ttl": info.ttl, "remaining": info.remaining}


def cmd_grant(ctx, args):
    info = ctx.client.grant_lease(args.ttl, id=args.id)
    ctx.json(_info_json(info)) if ctx.options.json else ctx.line(info.id)


def cmd_keepalive(ctx, args):
    client = ctx.client
    info = _keep(ctx, client, args.id)
    if args.every is None:
        return
    if args.every >= info.ttl:
        ctx.stderr.write(f"warning: --every {_seconds(args.every)}s is not below the "
                         f"lease's ttl of {info.ttl}s\n")
    client.suspend_timeout = info.ttl    # fail over for as long as the lease can live
    try:
        while True:
            sleep(args.every)
            _keep(ctx, client, args.id)
    except KeyboardInterrupt:
        return


def _keep(ctx, client, lease):
    info = client.keepalive(lease)
    if ctx.options.json:
        ctx.json(_info_json(info))
    else:
        ctx.line(_seconds(info.remaining))
    ctx.stdout.flush()
    return info


def cmd_revoke(ctx, args):
    rev = ctx.client.revoke_lease(args.id)
    ctx.json({"id": args.id, "rev": rev}) if ctx.options.json else ctx.line(rev)


def cmd_ttl(ctx, args):
    info = ctx.client.lease_ttl(args.id)
    if ctx.options.json:
        ctx.json({**_info_json(info), "paths": list(info.paths)})
        return
    ctx.line(info.id, info.ttl, _seconds(info.remaining))
    for path in info.paths:
        ctx.line(path)


def cmd_list(ctx, args):
    leases = ctx.client.leases()
    if ctx.options.json:
        ctx.json([_info_json(info) for info in leases])
        return
    for info in leases:
        ctx.line(info.id, info.ttl, _seconds(info.remaining))


_COMMANDS = {"grant": cmd_grant, "keepalive": cmd_keepalive, "revoke": cmd_revoke,
             "ttl": cmd_ttl, "list": cmd_list}
