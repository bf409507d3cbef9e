"""``python -m examples.kvlab coordinator|datanode ...``: one kvlab process.

    coordinator --doozer URI --name c1 [--ttl 3]
    datanode --doozer URI --group g1 --name d1 --port 9101 [--ttl 3]

Logs (twisted.logger, text) go to stdout. The exit status is 3 when the
process's session was lost (see ``coordinator`` and ``datanode``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import defer, task
from twisted.logger import ILogObserver, globalLogBeginner, textFileLogObserver


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.kvlab")
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("coordinator", "datanode"):
        p = sub.add_parser(role)
        p.add_argument("--doozer", required=True, help="doozer URI or host:port")
        p.add_argument("--name", required=True)
        p.add_argument("--ttl", type=int, default=3, help="session lease ttl, seconds")
        if role == "datanode":
            p.add_argument("--group", required=True)
            p.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    observer = cast(ILogObserver, textFileLogObserver(sys.stdout))
    globalLogBeginner.beginLoggingTo([observer],
                                     redirectStandardIO=False)

    async def run(reactor: Any) -> None:
        if args.role == "coordinator":
            from examples.kvlab import coordinator
            status = await coordinator.run(reactor, args.doozer, args.name, args.ttl)
        else:
            from examples.kvlab import datanode
            status = await datanode.run(reactor, args.doozer, args.group, args.name,
                                        args.port, args.ttl)
        raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
