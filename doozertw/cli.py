"""``doozer``: the command-line client, compatible with the Go ``doozer`` tool.

Commands, arguments, output formats and exit statuses are those of the Go
command line so scripts can switch without edits: exit 0 on success, 1 on a
revision mismatch, 2 on any other error, 127 for a usage error (missing or
unknown command, wrong number of arguments). Global options may come before
or after the command name (before its arguments): ``-a URI``, ``-b URI``,
``-r REV``, ``-t DURATION``, ``-h``, ``-v``; ``DOOZER_URI`` and
``DOOZER_BOOT_URI`` give defaults for ``-a`` and ``-b``. ``--tls-ca FILE``
(``--tls-cert``, ``--tls-key``; ``DOOZER_TLS_CA`` ...) speak TLS to the
client port (and HTTPS for ``snapshot save``).

Beyond the Go tool: ``ls``, ``tree``, ``walk``, ``members``, ``--json``
(one JSON document per result; per event for ``wait``/``watch``),
``-a host:port`` as a shorthand URI, ``lease ...`` (doozertw.cli_lease)
and ``--lease ID`` for ``set``/``add`` (attach the file to a lease).
"""

import json
import os
import sys
import urllib.parse

import attrs

from doozertw import __version__, cli_lease, cli_snapshot
from doozertw.client.blocking import BlockingClient
from doozertw.client.core import WaitTimeout
from doozertw.client.uri import DEFAULT_URI, PREFIX, InvalidURI
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import DIR
from doozertw.tlsutil import TLSConfigError, client_tls

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR, EXIT_USAGE = 0, 1, 2, 127
CONNECT_TIMEOUT = 5.0
WATCH_SUSPEND_TIMEOUT = 30.0
"""Seconds ``watch`` keeps trying the other addresses after losing its node."""
GLOB_RULES = """Rules for <glob> pattern-matching:
 - '?' matches a single char in a single path component
 - '*' matches zero or more chars in a single path component
 - '**' matches zero or more chars in zero or more components
 - any other sequence matches itself
"""
EVENT_FORMAT = """Output is one record per change:

  <path> <rev> <set|del> <len> LF <body> LF

where <len> is the number of bytes in <body> and LF is a line feed.
"""


class Exit(Exception):
    """Stop the command with an exit status."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


@attrs.define
class Options:
    uri: str = DEFAULT_URI
    boot_uri: str = ""
    rev: int = -1
    timeout: float = 0.0
    help: bool = False
    version: bool = False
    json: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    lease: int = 0

    def tls(self):
        """The ClientTLS of --tls-ca/--tls-cert/--tls-key, or None (TLSConfigError)."""
        return client_tls(self.tls_ca, self.tls_cert, self.tls_key)


_VALUE_FLAGS = {"a": "uri", "b": "boot_uri", "r": "rev", "t": "timeout",
                "tls-ca": "tls_ca", "tls-cert": "tls_cert", "tls-key": "tls_key", "lease": "lease"}
_TLS_ENV = {"tls_ca": "DOOZER_TLS_CA", "tls_cert": "DOOZER_TLS_CERT",
            "tls_key": "DOOZER_TLS_KEY"}
_BOOL_FLAGS = {"h": "help", "help": "help", "v": "version", "version": "version", "json": "json"}
_FLAG_HELP = [
    ("-a", "string", "the address to bind to", DEFAULT_URI),
    ("-b", "string", "the DzNS uri", ""),
    ("-r", "int", "request rev", "-1"),
    ("-t", "duration", "wait timeout", "0s"),
    ("-h, --help", "", "show help", ""),
    ("-v, --version", "", "print version string", ""),
    ("--json", "", "print results as JSON", ""),
    ("--lease", "int", "set, add: attach the file to this lease", "0"),
    ("--tls-ca", "file", "speak TLS; verify the server against this CA (PEM)", ""),
    ("--tls-cert", "file", "TLS client certificate (PEM; needs --tls-ca)", ""),
    ("--tls-key", "file", "private key of --tls-cert (default: in that file)", ""),
]


class Context:
    """What a command runs with: options, streams and a lazily made client."""

    def __init__(self, options, stdin, stdout, stderr):
        self.options = options
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = dial(self.options)
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()

    def write(self, data):
        self.stdout.write(data)

    def line(self, *parts):
        self.write((" ".join(str(p) for p in parts) + "\n").encode("utf-8"))

    def json(self, document):
        self.line(json.dumps(document, sort_keys=True))

    def pinned_rev(self):
        """-r if given, else the current revision (as the Go tool does)."""
        if self.options.rev == -1:
            return self.client.rev()
        return self.options.rev

    def rev_or_none(self):
        return None if self.options.rev == -1 else self.options.rev


def dial(options):
    """A connected BlockingClient for -a (its cn= looked up in -b's DzNS, if given)."""
    target = options.uri
    query = _query(target)
    secret = query.get("sk", [None])[0]
    if options.boot_uri and query.get("cn"):
        with dial(attrs.evolve(options, uri=options.boot_uri, boot_uri="")) as boot:
            target = lookup(boot, query["cn"][0]) or target
    client = BlockingClient(target, secret=secret, connect_timeout=CONNECT_TIMEOUT,
                            suspend_timeout=0, tls=options.tls())
    return client.connect()


def _query(uri):
    if not uri.startswith(PREFIX):
        return {}
    return urllib.parse.parse_qs(uri[len(PREFIX):])


def lookup(boot, cluster):
    """Addresses listed under /ctl/ns/<cluster> in a DzNS store."""
    rev = boot.rev()
    directory = f"/ctl/ns/{cluster}"
    try:
        names = boot.getdir_all(directory, rev)
    except DoozerError as e:
        if e.code == ErrCode.NOENT:
            return []
        raise
    return [boot.get(f"{directory}/{name}", rev)[0].decode("utf-8") for name in names]


# -- flags --------------------------------------------------------------------


def parse_duration(text):
    """Seconds in a Go duration ("1m30s", "250ms", "2h"); a bare number is seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    total, i, sign = 0.0, 0, 1.0
    if text and text[0] in "+-":
        sign, text = (-1.0 if text[0] == "-" else 1.0), text[1:]
    if not text:
        raise ValueError("invalid duration")
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        k = j
        while k < len(text) and not (text[k].isdigit() or text[k] == "."):
            k += 1
        if j == i or text[j:k] not in units:
            raise ValueError(f"invalid duration {text}")
        total += float(text[i:j]) * units[text[j:k]]
        i = k
    return sign * total


def parse_flags(args, options):
    """Go ``flag`` rules: flags until the first non-flag or ``--``; returns the rest."""
    args = list(args)
    while args:
        arg = args[0]
        if len(arg) < 2 or not arg.startswith("-"):
            break
        args.pop(0)
        if arg == "--":
            break
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in _BOOL_FLAGS:
            setattr(options, _BOOL_FLAGS[name], value.lower() not in ("false", "0", "f")
                    if has_value else True)
            continue
        if name not in _VALUE_FLAGS:
            raise UsageError(f"flag provided but not defined: -{name}")
        if not has_value:
            if not args:
                raise UsageError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        _set_flag(options, name, value)
    return args


def _set_flag(options, name, value):
    field = _VALUE_FLAGS[name]
    try:
        if field in ("rev", "lease"):
            value = int(value)
        elif field == "timeout":
            value = parse_duration(value)
    except ValueError:
        raise UsageError(f'invalid value "{value}" for flag -{name}') from None
    setattr(options, field, value)


class UsageError(Exception):
    """Bad flags: Go's flag package prints the message and usage, exits 2."""


# -- commands ---------------------------------------------------------------------


def _event(ctx, event):
    if ctx.options.json:
        ctx.json(_event_json(event))
        return
    ctx.line(event.path, event.rev, event.kind, len(event.value))
    ctx.write(event.value + b"\n")


def _value_json(value):
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        import base64
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _event_json(event):
    return {"path": event.path, "rev": event.rev, "kind": event.kind,
            "len": len(event.value), **_value_json(event.value)}


def cmd_add(ctx, path):
    return cmd_set(ctx, path, "0")


def cmd_del(ctx, path, rev):
    rev = _atoi(rev)
    done = ctx.client.delete(path, rev)
    if ctx.options.json:
        ctx.json({"path": path, "rev": done})


def cmd_find(ctx, path):
    rev = ctx.pinned_rev()
    try:
        found = ctx.client.find(path, rev)
    except DoozerError as e:
        if e.code != ErrCode.NOENT:
            raise
        ctx.stderr.write("NOENT\n")
        return
    if ctx.options.json:
        ctx.json(found)
    else:
        for p in found:
            ctx.line(p)


def cmd_get(ctx, path):
    value, rev = ctx.client.get(path, ctx.rev_or_none())
    if ctx.options.json:
        ctx.json({"path": path, "rev": rev, **_value_json(value)})
    else:
        ctx.write(value)


def cmd_help(ctx, command):
    spec = COMMANDS.get(command)
    args, text = (spec[1], spec[3]) if spec else ("", "")
    ctx.write(f"Use: doozer [options] {command} [options] {args}\n\n{text}".encode("utf-8"))


def cmd_ls(ctx, path):
    names = ctx.client.getdir_all(path, ctx.pinned_rev())
    if ctx.options.json:
        ctx.json(names)
    else:
        ctx.write(("\n".join(names) + "\n").encode("utf-8"))


def cmd_members(ctx):
    members = read_members(ctx.client, ctx.pinned_rev())
    if ctx.options.json:
        ctx.json(members)
        return
    ctx.line("cluster", members["cluster"] or "-")
    ctx.line("leader", members["leader"] or "-")
    for m in members["nodes"]:
        applied = "-" if m["applied"] is None else m["applied"]
        ctx.line(m["id"], m["role"] or "-", m["addr"] or "-", applied)


def read_members(client, rev):
    """The cluster as /ctl describes it: name, leader, and each node's role.

    The leader is /ctl/leader (written by each new leader); voters are the
    names in /ctl/cal/*; nodes are /ctl/node/* plus any voter not described
    there. A role is None while no voter slot exists yet (a forming
    cluster); ``applied`` is /ctl/node/<id>/applied when something wrote it,
    else None (live applied revisions are on the web port's /v1/cluster).
    """

    def text(path):
        value, file_rev = client.get(path, rev)
        return value.decode("utf-8", "replace") if file_rev else None

    def names(path):
        length, dir_rev = client.stat(path, rev)
        return client.getdir_all(path, rev) if dir_rev == DIR else []

    slots = names("/ctl/cal")
    voters = {text(f"/ctl/cal/{slot}") for slot in slots} - {None, ""}
    described = names("/ctl/node")
    nodes = []
    for node_id in described + sorted(voters - set(described)):
        applied = text(f"/ctl/node/{node_id}/applied")
        role = None if not slots else "voter" if node_id in voters else "learner"
        nodes.append({
            "id": node_id,
            "role": role,
            "addr": text(f"/ctl/node/{node_id}/addr"),
            "applied": int(applied) if applied and applied.isdigit() else None,
        })
    return {"cluster": text("/ctl/name"), "leader": text("/ctl/leader"), "nodes": nodes}


def cmd_nop(ctx):
    ctx.client.nop()


def cmd_rev(ctx):
    rev = ctx.client.rev()
    ctx.json({"rev": rev}) if ctx.options.json else ctx.line(rev)


def cmd_self(ctx):
    node_id = ctx.client.self_id()
    if ctx.options.json:
        ctx.json({"id": node_id})
    else:
        ctx.write(node_id.encode("utf-8"))


def cmd_set(ctx, path, rev):
    rev = _atoi(rev)
    body = ctx.stdin.read()
    new_rev = ctx.client.set(path, rev, body, lease=ctx.options.lease)
    ctx.json({"path": path, "rev": new_rev}) if ctx.options.json else ctx.line(new_rev)


def cmd_stat(ctx, path):
    length, rev = ctx.client.stat(path, ctx.rev_or_none())
    if rev == 0:
        ctx.stderr.write(f"No such file or directory: {path}\n")
        raise Exit(EXIT_ERROR)
    if ctx.options.json:
        ctx.json({"path": path, "rev": rev, "len": length, "dir": rev == DIR})
    elif rev == DIR:
        ctx.line("d", length)
    else:
        ctx.line(rev, length)


def cmd_touch(ctx, path):
    value, rev = ctx.client.get(path)
    new_rev = ctx.client.set(path, rev, value)
    if ctx.options.json:
        ctx.json({"path": path, "rev": new_rev})


def cmd_tree(ctx, path):
    entries = ctx.client.tree(path, ctx.pinned_rev())
    if ctx.options.json:
        ctx.json([{"path": p, "dir": d, "len": n, "rev": r} for p, d, n, r in entries])
        return
    for p, is_dir, length, rev in entries:
        depth = 0 if p == path else p[len(path):].strip("/").count("/") + 1
        name = p if depth == 0 else p.rsplit("/", 1)[1]
        label = f"{name}/" if is_dir and name != "/" else name
        detail = f"  ({length} entries)" if is_dir else f"  rev {rev}, {length} bytes"
        ctx.line("  " * depth + label + detail)


def cmd_wait(ctx, glob):
    rev = ctx.pinned_rev()
    timeout = ctx.options.timeout if ctx.options.timeout > 0 else None
    _event(ctx, ctx.client.wait(glob, rev, timeout))


def cmd_walk(ctx, glob):
    for event in ctx.client.walk_all(glob, ctx.pinned_rev()):
        if ctx.options.json:
            ctx.json(_event_json(event))
        else:
            ctx.line(event.path, event.rev, len(event.value))
            ctx.write(event.value + b"\n")


def cmd_watch(ctx, glob):
    client = ctx.client
    client.suspend_timeout = WATCH_SUSPEND_TIMEOUT
    for event in client.watch(glob, ctx.pinned_rev()):
        _event(ctx, event)
        ctx.stdout.flush()


def _atoi(text):
    try:
        return int(text, 10)
    except ValueError:
        raise DoozerError(ErrCode.OTHER, f'strconv.ParseInt: parsing "{text}": invalid syntax') \
            from None


COMMANDS = {
    # name: (function, argument synopsis, short description, help text)
    "add": (cmd_add, "<path>", "add a key only if it isn't already set",
            "Creates the file at <path> with the body read from stdin, only if it\n"
            "does not exist yet (the same as 'set <path> 0').\n\n"
            "Prints the new revision on stdout, or an error message on stderr.\n"),
    "del": (cmd_del, "<path> <rev>", "delete a file",
            "Deletes the file at <path>.\n\nNothing changes unless <rev> is greater than "
            "or equal to the file's revision.\n"),
    "find": (cmd_find, "<path>", "list files",
             "Prints the tree rooted at <path>: the path of each file and\n"
             "directory, one per line.\n"),
    "get": (cmd_get, "<path>", "read a file",
            "Prints the body of the file at <path>.\n\nWith -r, reads it as of <rev>.\n"),
    "help": (cmd_help, "<command>", "provide detailed help on a command", ""),
    "lease": (cli_lease.main, cli_lease.SYNOPSIS, cli_lease.SUMMARY, cli_lease.HELP),
    "ls": (cmd_ls, "<dir>", "list files in a directory",
           "Prints the names of the entries of <dir>, one per line.\n"),
    "members": (cmd_members, "", "show cluster members",
                "Prints the cluster name, the leader (/ctl/leader), and one line\n"
                "per node (/ctl/node and the voters in /ctl/cal):\n\n"
                "  <id> <voter|learner> <addr> <applied rev>\n\n"
                "A field nobody has written prints as -. Nodes do not write their\n"
                "applied revision to /ctl; the web port's /v1/cluster shows it live.\n"),
    "nop": (cmd_nop, "", "consensus",
            "Performs a consensus round trip.\n\nNothing changes in the store.\n"),
    "rev": (cmd_rev, "", "print the current revision", "Prints the current revision.\n"),
    "self": (cmd_self, "", "identify a node", "Prints the node's ID.\n"),
    "set": (cmd_set, "<path> <rev>", "write a file",
            "Sets the body of the file at <path> to stdin.\n\nNothing changes unless <rev> "
            "is greater than or equal to the file's\nrevision (0: the file must not exist; "
            "-1: any).\n\nPrints the new revision on stdout, or an error message on stderr.\n"),
    "stat": (cmd_stat, "<path>", "print file status",
             "Prints the status of <path>.\n\nFor a directory, prints \"d\" and the number "
             "of entries;\nfor a file, its revision and length.\n"),
    "touch": (cmd_touch, "<path>", "update rev of a file",
              "Rewrites a file with its own body, giving it a new revision.\n"
              "Creates it (empty) if it does not exist.\n"),
    "tree": (cmd_tree, "<path>", "show a directory tree",
             "Prints the tree rooted at <path>, indented, with each file's\n"
             "revision and length and each directory's number of entries.\n"),
    "wait": (cmd_wait, "<glob>", "wait for a change",
             "Prints the next change to a file matching <glob>.\n\n"
             "With -r, the first change at or after <rev>; with -t (e.g. 1m30s,\n"
             "500ms), gives up after that long.\n\n" + GLOB_RULES + "\n" + EVENT_FORMAT),
    "walk": (cmd_walk, "<glob>", "read many files",
             "Prints each file matching <glob>:\n\n  <path> <rev> <len> LF <body> LF\n\n"
             + GLOB_RULES),
    "watch": (cmd_watch, "<glob>", "watch for a change",
              "Prints changes to any file matching <glob>, from -r <rev> if given.\n\n"
              + GLOB_RULES + "\n" + EVENT_FORMAT),
}


def usage(stderr):
    stderr.write("Use: doozer [options] <command> [options] [args]\n\n"
                 "Each command takes zero or more options and zero or more arguments.\n"
                 "Global options may also be given after the command name.\n"
                 "The exit status is 0 on success, 1 for a rev mismatch, and 2 otherwise.\n\n"
                 "Global Options:\n")
    for flag, kind, text, default in _FLAG_HELP:
        stderr.write(f"  {flag} {kind}\n    \t{text}")
        stderr.write(f' (default "{default}")\n' if default and kind == "string" else
                     f" (default {default})\n" if default else "\n")
    stderr.write("\nEnvironment:\n\n  DOOZER_URI - The doozer cluster to bind to; "
                 "overridden by -a.\n\n  DOOZER_BOOT_URI - The DzNS to look addresses up in; "
                 "overridden by -b.\n\n  DOOZER_TLS_CA, DOOZER_TLS_CERT, DOOZER_TLS_KEY - "
                 "defaults for --tls-ca, --tls-cert, --tls-key.\n\nCommands:\n")
    synopses = {name: f"{name} {spec[1]}" for name, spec in COMMANDS.items()}
    width = max(len(s) for s in synopses.values())
    for name in sorted(COMMANDS):
        stderr.write(f"  {synopses[name]:<{width}} - {COMMANDS[name][2]}\n")
    for synopsis, text in cli_snapshot.SYNOPSES:
        stderr.write(f"  {synopsis}\n  {'':<{width}} - {text}\n")


def _arity(fn):
    return fn.__code__.co_argcount - 1


def main(argv=None, stdin=None, stdout=None, stderr=None, environ=None):
    """Run one command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    stderr = stderr if stderr is not None else sys.stderr
    options = Options(uri=environ.get("DOOZER_URI") or DEFAULT_URI,
                      boot_uri=environ.get("DOOZER_BOOT_URI") or "",
                      **{field: environ.get(name) or "" for field, name in _TLS_ENV.items()})
    try:
        rest = parse_flags(argv, options)
        if options.help:
            usage(stderr)
            return EXIT_OK
        if options.version:
            stdout.write(f"doozer {__version__}\n".encode("utf-8"))
            return EXIT_OK
        if not rest:
            stderr.write("doozer: missing command\n")
            usage(stderr)
            return EXIT_USAGE
        name = rest[0]
        if name in cli_snapshot.COMMANDS:  # own flags (argparse): see cli_snapshot
            return cli_snapshot.main(rest, options, stdout, stderr)
        if name not in COMMANDS:
            stderr.write(f"Unknown command: {name}\n")
            usage(stderr)
            return EXIT_USAGE
        args = parse_flags(rest[1:], options)
    except UsageError as e:
        stderr.write(f"{e}\n")
        usage(stderr)
        return EXIT_ERROR
    ctx = Context(options, stdin, stdout, stderr)
    if options.help:
        cmd_help(ctx, name)
        return EXIT_OK
    if name == "help" and not args:  # `doozer help`: the usage, as -h prints it
        usage(stderr)
        return EXIT_OK
    if name == "lease":  # subcommands with their own flags: see cli_lease
        return cli_lease.main(args, ctx, run)
    fn = COMMANDS[name][0]
    if len(args) != _arity(fn):
        stderr.write(f"{name}: wrong number of arguments\n")
        cmd_help(ctx, name)
        return EXIT_USAGE
    return run(ctx, fn, args)


def run(ctx, fn, args):
    """Call a command; map its errors to the Go tool's messages and statuses."""
    try:
        fn(ctx, *args)
        ctx.stdout.flush()
        return EXIT_OK
    except Exit as e:
        return e.status
    except DoozerError as e:
        ctx.stderr.write(f"Error: {e}\n")
        if e.code == ErrCode.REV_MISMATCH and not isinstance(e, WaitTimeout):
            return EXIT_MISMATCH
        return EXIT_ERROR
    except (InvalidURI, OSError, TLSConfigError) as e:
        if isinstance(e, BrokenPipeError):
            return EXIT_ERROR
        ctx.stderr.write(f"Error: {e}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
