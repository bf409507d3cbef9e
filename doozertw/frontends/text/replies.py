"""Text protocol replies: pure formatting of OK/ERR lines and value units."""

from doozertw.errors import ErrCode
from doozertw.frontends.text.framing import CRLF, value_field

HELP = (
    ("get PATH [REV]", "read a file -> OK VALUE <rev> <len>, the bytes, CRLF"),
    ("set [lease=ID] PATH VALUE", "write a file whatever its revision -> OK REV <rev>"),
    ("cas [lease=ID] PATH REV VALUE",
     "write if REV >= the file's rev (0 create, -1 any) -> OK REV <rev>"),
    ("del PATH [REV]", "delete a file (REV default -1) -> OK REV <rev>"),
    ("rev", "current revision -> OK REV <rev>"),
    ("stat PATH [REV]", "size and revision -> OK STAT <rev> <len> (dir: rev -2, len entries)"),
    ("getdir PATH [REV [OFFSET]]", "entries of a directory -> OK DIR <rev> <n>, n names"),
    ("walk GLOB [REV [OFFSET]]", "matching files -> OK WALK <rev> <n>, n FILE units"),
    ("wait GLOB [REV]", "first change at or after REV -> OK EVENT <set|del> <rev> <path> <len>"),
    ("watch GLOB [REV]", "stream changes -> OK WATCHING <id>, then EVENT <id> units"),
    ("unwatch ID", "stop a watch -> OK"),
    ("nop", "a round trip through consensus -> OK"),
    ("self", "this node's id -> OK SELF <id>"),
    ("lease grant TTL [ID]", "a lease of TTL seconds -> OK LEASE <id> <ttl>"),
    ("lease keepalive ID", "restart a lease's countdown -> OK LEASE <id> <remaining>"),
    ("lease revoke ID", "delete a lease and its files -> OK REV <rev>"),
    ("lease ttl ID", "one lease -> OK TTL <id> <ttl> <remaining> <n>, n paths"),
    ("lease list", "every lease -> OK LEASES <n>, n lines <id> <ttl> <remaining>"),
    ("txn", "lines if/then/else ..., end: one transaction -> OK TXN <true|false> <rev> <n>"),
    ("ruok", "is the node serving (no secret needed) -> OK imok"),
    ("isro", "may this connection write -> OK rw or OK ro"),
    ("srvr", "this node's figures -> OK SRVR <n>, n lines 'Name: value'"),
    ("stat", "srvr's lines and the text connections -> OK STATS <n>, n lines"),
    ("mntr", "figures for monitoring -> OK MNTR <n>, n lines 'doozer_key<TAB>value'"),
    ("cons", "this node's text connections -> OK CONS <n>, n lines"),
    ("access SECRET", "present a secret -> OK"),
    ("help", "this list -> OK HELP <n>, n lines"),
    ("quit", "close the connection -> OK BYE"),
)
"""Every verb with its arguments and a one-line description."""


def clean(text):
    """``text`` as one printable ASCII line for an error detail."""
    text = str(text).encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
    return text[:200]


def error_reply(code, detail=""):
    detail = clean(detail)
    name = ErrCode(code).name.encode("ascii")
    if detail:
        return b"ERR " + name + b" " + detail.encode("ascii") + CRLF
    return b"ERR " + name + CRLF


def value_unit(header, value):
    """``header <len>`` CRLF, the value's bytes, CRLF."""
    return b"%s %d\r\n%s\r\n" % (header, len(value), value)


def event_unit(prefix, event):
    """``prefix <set|del> <rev> <path> <len>``, the value, CRLF."""
    header = b"%s %s %d %s" % (
        prefix, event.kind.encode("ascii"), event.rev, event.path.encode("ascii"))
    return value_unit(header, event.value)


def listing(kind, rev, items):
    return b"OK %s %d %d\r\n" % (kind, rev, len(items)) + b"".join(items)


def help_reply():
    lines = [f"{usage:<30} {text}".encode("ascii") + CRLF for usage, text in HELP]
    return b"OK HELP %d\r\n" % len(lines) + b"".join(lines)


def usage_of(line):
    verb = value_field(line)[0].decode("ascii", "replace")
    for usage, _ in HELP:
        if usage.split()[0] == verb:
            return usage
    return verb
