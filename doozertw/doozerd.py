"""``doozerd``: a drop-in for the Go ``doozerd`` command line.

``doozerd -l 127.0.0.1:8046 -w :8080 -a ADDR -c NAME -timeout N`` takes
doozerd's flags (Go ``flag`` package rules: ``-flag value``,
``-flag=value``, ``--flag`` alike; flags end at the first non-flag or
``--``), translates them into ``twistd doozer`` options and runs exactly
the service ``twistd -n --pidfile= doozer ...`` runs, in this process.

``FLAGS`` is the one table of the flags: the parser, the Go-style usage
(``-h``) and the doozerd(8) man page (doozertw.manpages) all read it. Each
``Flag`` says what doozertw option it becomes (``option``, ``maps_to`` for
people) or, for a flag doozertw has no use for, the one-line ``note``
printed on stderr when it is given.

What doozerd did that doozertw does differently (docs/doozerd.md):

- peers talk over TCP on their own port: by default the port of ``-l``
  minus 1000 on the host of ``-l`` (8046 -> 7046, doozertw's defaults);
- a node needs a stable name (its data directory and ``/ctl/cal`` slot):
  ``HOST-PORT`` of ``-l`` (the machine's host name for a wildcard host);
- state is kept on disk in ``doozer-data/<name>`` of the working
  directory (doozerd kept none);
- peers are not authenticated, as with doozerd, unless a peer secret or
  certificate is configured (``DOOZER_PEER_SECRET_FILE``, ``--config``,
  or options after ``--``);
- ``-timeout`` defaults to off (doozerd: 60 s), see docs/cluster.md.

Everything after ``--`` is passed to ``twistd doozer`` as it is (e.g.
``doozerd -l :8046 -- --peer-secret-file s``); ``DOOZER_<OPTION>``
variables configure every other ``twistd doozer`` option.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import attrs

from doozertw import __version__
from doozertw.store import DEFAULT_HISTORY

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_LISTEN = "127.0.0.1:8046"
DEFAULT_WEB_PORT = 8000
PEER_PORT_OFFSET = 1000
ATTACH_PROBE_TIMEOUT = 2.0
MAX_FLAG_VALUE = 4096
"""Bytes a flag value may have (a path or an address; bounds what reaches twistd)."""

Parsed = dict


class UsageError(Exception):
    """Bad flags: like Go's flag package, the message, the usage, exit 2."""


class AddressError(Exception):
    """An address flag that is not host:port (the message; exit 2)."""


@attrs.frozen
class Flag:
    """One doozerd flag.

    ``kind`` is Go's type word in the usage (``string``, ``float``, ``int``,
    ``value`` for a repeatable one, ``""`` for a boolean); ``default`` the
    default as the usage shows it (``""``: none shown); ``option`` the
    ``twistd doozer`` option it becomes (None: none); ``maps_to`` how, for
    people; ``note`` the stderr line when a flag doozertw ignores is given;
    ``extension`` marks flags doozerd did not have.
    """

    name: str
    kind: str
    default: str
    help: str
    option: str | None = None
    maps_to: str = ""
    note: str = ""
    extension: bool = False

    def parse(self, text: str) -> object:
        """The flag's value from ``text``; ValueError if it does not parse."""
        if len(text) > MAX_FLAG_VALUE:
            raise ValueError("too long")
        if self.kind == "float":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("not a finite number")
            return value
        if self.kind == "int":
            return int(text, 10)
        if self.kind == "":
            return parse_bool(text)
        return text


FLAGS: tuple[Flag, ...] = (
    Flag("a", "value", "",
         "attach address (may be given multiple times): join the cluster of the node "
         "whose client port is there (ip:port)",
         "--attach", "--attach ADDR (the first -a whose port accepts a connection)"),
    Flag("b", "string", "", "boot cluster uri (tried after -a)", None,
         "none: doozertw has no DzNS boot",
         note="-b (DzNS boot) is ignored: doozertw does not boot through DzNS; "
              "give -a a member's address"),
    Flag("c", "string", "local", "The non-empty cluster name.", "--cluster",
         "--cluster NAME when given (an attaching node without -c takes the "
         "cluster's name)"),
    Flag("fill", "float", "0.1", "delay (in seconds) to fill unowned seqns", None,
         "none: Raft has no unowned sequence numbers",
         note="-fill is ignored: doozertw's Raft log has no unowned sequence numbers "
              "to fill"),
    Flag("hist", "int", str(DEFAULT_HISTORY), "length of history/revisions to keep",
         "--history", "--history N"),
    Flag("l", "string", DEFAULT_LISTEN, "The address to bind to.", "--listen",
         "--listen tcp:PORT:interface=HOST (ssl: with -tlscert and -tlskey)"),
    Flag("pulse", "float", "1", "how often (in seconds) to set applied key", None,
         "none: nodes do not write /ctl/node/ID/applied",
         note="-pulse is ignored: doozertw nodes do not write /ctl/node/<id>/applied; "
              "their web port's /v1/cluster shows applied revisions live"),
    Flag("timeout", "float", "0",
         "timeout (in seconds) to kick inactive nodes (0: never; doozerd's default "
         "was 60)",
         "--silent-voter-timeout", "--silent-voter-timeout N when above 0"),
    Flag("tlscert", "string", "", "TLS public certificate", "--listen",
         "--listen ssl:...:certKey=FILE (with -tlskey)"),
    Flag("tlskey", "string", "", "TLS private key", "--listen",
         "--listen ssl:...:privateKey=FILE (with -tlscert)"),
    Flag("v", "", "", "print doozerd's version string"),
    Flag("w", "string", "", "web listen addr (default: see below)", "--web",
         "--web tcp:PORT:interface=HOST, or --web none for -w false"),
    Flag("name", "string", "", "this node's name (default: HOST-PORT of -l)", "--name",
         "--name NAME", extension=True),
    Flag("peer", "string", "",
         "peer address: HOST:PORT where other nodes reach this one (default: the "
         "host of -l and its port minus 1000)",
         "--peer-listen", "--peer-listen tcp:PORT:interface=HOST", extension=True),
)
BY_NAME = {flag.name: flag for flag in FLAGS}
HELP_FLAGS = ("h", "help")

USAGE_EPILOGUE = """
The default for -w is to use the addr from -l,
and change the port to 8000. If you give "-w false",
doozerd will not listen for web connections.

Options after -- are given to 'twistd doozer' as they are;
DOOZER_<OPTION> variables set any other option (doozerd(8),
docs/doozerd.md).
"""

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool; ValueError for anything else."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}")


# -- parsing ------------------------------------------------------------------


def parse(argv: Sequence[str]) -> tuple[Parsed, list[str]]:
    """Go ``flag`` rules over ``argv``: ({flag name: value} of the flags
    given (``a``: a list), the arguments after ``--``). ``{"h": True}``
    for -h/-help. UsageError for an unknown flag, a missing or bad value,
    or an argument that is not a flag before ``--``."""
    args = list(argv)
    parsed: Parsed = {}
    while args:
        arg = args.pop(0)
        if arg == "--":
            return parsed, args
        if len(arg) < 2 or not arg.startswith("-") or arg.startswith("---"):
            raise UsageError(f"unexpected argument {arg!r} (doozerd takes flags only; "
                             "give twistd doozer options after --)")
        name, has_value, text = arg.lstrip("-").partition("=")
        if name in HELP_FLAGS:
            return {"h": True}, []
        flag = BY_NAME.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if flag.kind == "" and not has_value:
            text = "true"
        elif not has_value:
            if not args:
                raise UsageError(f"flag needs an argument: -{name}")
            text = args.pop(0)
        try:
            value = flag.parse(text)
        except ValueError:
            raise UsageError(f'invalid value "{_shown(text)}" for flag -{name}: '
                             "parse error") from None
        if flag.kind == "value":
            parsed.setdefault(name, []).append(value)
        else:
            parsed[name] = value
    return parsed, []


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:80] + "..."


def usage(program: str = "doozerd") -> str:
    """The usage text, as Go's flag.PrintDefaults lays it out."""
    lines = [f"Usage: {program} [OPTIONS] [-- TWISTD-DOOZER-OPTIONS]", "", "Options:"]
    for flag in sorted(FLAGS, key=lambda f: f.name):
        head = f"  -{flag.name}" + (f" {flag.kind}" if flag.kind else "")
        help_text = flag.help + (" (doozertw)" if flag.extension else "")
        if flag.default and flag.default != "0":
            shown = f'"{flag.default}"' if flag.kind == "string" else flag.default
            help_text += f" (default {shown})"
        sep = "\t" if len(head) <= 4 else "\n    \t"
        lines.append(f"{head}{sep}{help_text}")
    return "\n".join(lines) + "\n" + USAGE_EPILOGUE


# -- translation ----------------------------------------------------------------


def split_host_port(address: str, flag: str) -> tuple[str, int]:
    """Go's net.SplitHostPort for ``HOST:PORT``, ``:PORT``, ``[V6]:PORT``;
    AddressError naming ``flag`` otherwise."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise AddressError(f"-{flag} {_shown(address)!r}: expected host:port")
    return host, int(port)


def _escape(text: str) -> str:
    """``text`` as one field of a Twisted endpoint string."""
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def endpoint(host: str, port: int, kind: str = "tcp", extra: Sequence[str] = ()) -> str:
    """The server endpoint string of ``host:port`` (an empty host: every interface)."""
    fields = [kind, str(port)]
    if host:
        fields.append("interface=" + _escape(host))
    return ":".join([*fields, *extra])


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def node_name(host: str, port: int, hostname: Callable[[], str] = socket.gethostname) -> str:
    """``HOST-PORT`` as a doozertw node name (letters, digits, '.', '-');
    a wildcard host is the machine's host name."""
    base = hostname() if is_wildcard(host) else host
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "-" for c in base)
    return f"{cleaned.strip('-') or 'node'}-{port}"


def peer_port(port: int) -> int:
    """The default peer port of client port ``port`` (0 stays 0: any)."""
    if port == 0:
        return 0
    return port - PEER_PORT_OFFSET if port > PEER_PORT_OFFSET else port + PEER_PORT_OFFSET


def can_connect(address: str, timeout: float = ATTACH_PROBE_TIMEOUT) -> bool:
    """True when something accepts a TCP connection at ``address`` (host:port)."""
    try:
        host, port = split_host_port(address, "a")
        socket.create_connection((host or "127.0.0.1", port), timeout=timeout).close()
        return True
    except (OSError, AddressError):
        return False


@attrs.frozen
class Translation:
    """What doozerd's flags become: the ``twistd`` argv and the stderr notes."""

    twistd_args: list[str]
    notes: list[str]


PEER_AUTH_OPTIONS = ("--peer-secret-file", "--peer-cert", "--config", "--insecure-peers")
PEER_AUTH_ENV = ("DOOZER_PEER_SECRET_FILE", "DOOZER_PEER_CERT", "DOOZER_CONFIG",
                 "DOOZER_INSECURE_PEERS")


def env_name(option: str) -> str:
    """``--peer-listen`` -> ``DOOZER_PEER_LISTEN``."""
    return "DOOZER_" + option.lstrip("-").replace("-", "_").upper()


def translate(parsed: Parsed, extra: Sequence[str] = (),
              environ: Mapping[str, str] | None = None,
              reachable: Callable[[str], bool] = can_connect,
              hostname: Callable[[], str] = socket.gethostname) -> Translation:
    """The ``twistd`` argv (``-n --pidfile= doozer OPTIONS``) for ``parsed``
    flags and ``extra`` twistd doozer options (appended last, so they win).

    A value doozerd derives rather than being given (the node name, the
    peer port) is left out when its ``DOOZER_<OPTION>`` variable is set.
    AddressError for an address flag that is not host:port; UsageError
    for half a TLS configuration.
    """
    environ = os.environ if environ is None else environ
    notes = [BY_NAME[name].note for name in sorted(parsed) if BY_NAME[name].note]
    if "b" not in parsed and environ.get("DOOZER_BOOT_URI"):
        notes.append("DOOZER_BOOT_URI is ignored: doozertw does not boot through DzNS")
    host, port, options = _addresses(parsed, environ)
    derived = [] if host is None else [("--name", node_name(host, port, hostname)),
                                       ("--peer-listen", endpoint(host, peer_port(port)))]
    if "name" in parsed:
        options += ["--name", parsed["name"]]
    if "peer" in parsed:
        options += ["--peer-listen", endpoint(*split_host_port(parsed["peer"], "peer"))]
    for option, value in derived:
        if option not in options and not environ.get(env_name(option)):
            options += [option, value]
    if "a" in parsed:
        options += ["--attach", pick_attach(parsed["a"], reachable)]
    if "c" in parsed:
        options += ["--cluster", parsed["c"]]
    if parsed.get("timeout", 0) > 0:
        options += ["--silent-voter-timeout", _number(parsed["timeout"])]
    if "hist" in parsed:
        options += ["--history", str(parsed["hist"])]
    if not _peer_auth_configured(extra, environ):
        options.append("--insecure-peers")
    return Translation(["-n", "--pidfile=", "doozer", *options, *extra], notes)


def _addresses(parsed: Parsed, environ: Mapping[str, str]
               ) -> tuple[str | None, int, list[str]]:
    """(host, port of the client port if known, --listen/--web options).

    -l and -w win. Without them, DOOZER_LISTEN and DOOZER_WEB in doozerd's
    own HOST:PORT form (and ``false`` for the web) are read as if given as
    -l and -w; in twistd's endpoint form they are left to twistd doozer
    (flag > environment), and no name or peer port is derived."""
    parsed = dict(parsed)
    for flag, variable in (("l", "DOOZER_LISTEN"), ("w", "DOOZER_WEB")):
        value = environ.get(variable, "")
        if flag not in parsed and value and _doozerd_form(value, flag):
            parsed[flag] = value
    options: list[str] = []
    host: str | None = None
    port = 0
    if "l" in parsed or not environ.get("DOOZER_LISTEN"):
        host, port = split_host_port(parsed.get("l", DEFAULT_LISTEN), "l")
        options += ["--listen", _listen(host, port, parsed)]
    if "w" in parsed or not environ.get("DOOZER_WEB"):
        options += ["--web", _web(host or "127.0.0.1", parsed)]
    return host, port, options


ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "tls", "unix", "systemd", "none"})


def _doozerd_form(value: str, flag: str) -> bool:
    """Whether ``value`` is doozerd's HOST:PORT (or, for -w, a boolean), not
    a twistd endpoint (``tcp:PORT:...``, ``ssl:...``, ``unix:...``)."""
    if value.split(":", 1)[0].lower() in ENDPOINT_TYPES:
        return False
    if flag == "w":
        try:
            parse_bool(value)
            return True
        except ValueError:
            pass
    try:
        split_host_port(value, flag)
        return True
    except AddressError:
        return False


def _listen(host: str, port: int, parsed: Parsed) -> str:
    cert, key = parsed.get("tlscert", ""), parsed.get("tlskey", "")
    if not cert and not key:
        return endpoint(host, port)
    if not cert or not key:
        raise UsageError("need both cert file and key file (-tlscert and -tlskey)")
    return endpoint(host, port, "ssl",
                    ["certKey=" + _escape(cert), "privateKey=" + _escape(key)])


def _web(listen_host: str, parsed: Parsed) -> str:
    """doozerd's -w: unset is the host of -l with port 8000; a value Go's
    ParseBool accepts (``false``, ``0``, ...) is no web port."""
    web = parsed.get("w", "")
    if not web:
        return endpoint(listen_host, DEFAULT_WEB_PORT)
    try:
        parse_bool(web)
        return "none"
    except ValueError:
        return endpoint(*split_host_port(web, "w"))


def pick_attach(addresses: Sequence[str], reachable: Callable[[str], bool]) -> str:
    """The address ``--attach`` gets from doozerd's -a list: the only one,
    else the first ``reachable``, else the first (twistd reports it)."""
    for address in addresses:
        split_host_port(address, "a")
    if len(addresses) == 1:
        return addresses[0]
    return next((a for a in addresses if reachable(a)), addresses[0])


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _peer_auth_configured(extra: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True when options after ``--`` or DOOZER_* variables say how peers
    authenticate (or give a config file, which may)."""
    given = any(arg.split("=", 1)[0] in PEER_AUTH_OPTIONS for arg in extra)
    return given or any(environ.get(name) for name in PEER_AUTH_ENV)


# -- running ----------------------------------------------------------------------


def run_twistd(args: Sequence[str]) -> int:
    """Run ``twistd ARGS`` in this process (returns when the node stops)."""
    from twisted.scripts.twistd import run
    sys.argv = ["twistd", *args]
    run()
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None,
         runner: Callable[[Sequence[str]], int] = run_twistd) -> int:
    """``doozerd FLAGS``: the exit status (0 after -h or -v; 2 for bad
    flags, with the usage, as Go's flag package does)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        parsed, extra = parse(argv)
        if parsed.get("h"):
            stderr.write(usage())
            return EXIT_OK
        if parsed.get("v"):
            stdout.write(f"doozerd {__version__} (doozertw)\n")
            return EXIT_OK
        translation = translate(parsed, extra, environ)
    except UsageError as e:
        stderr.write(f"{e}\n{usage()}")
        return EXIT_USAGE
    except AddressError as e:
        stderr.write(f"doozerd: {e}\n")
        return EXIT_USAGE
    for note in translation.notes:
        stderr.write(f"doozerd: {note}\n")
    stderr.flush()
    return runner(translation.twistd_args)


if __name__ == "__main__":
    sys.exit(main())
