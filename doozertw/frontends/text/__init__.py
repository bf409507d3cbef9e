"""The text protocol: doozer's verbs as lines, for nc, telnet and shell scripts.

The full specification is docs/protocol.md. In short: one command per line
(LF or CRLF), words separated by spaces, verbs case-insensitive. ``set`` and
``cas`` take the rest of the line as the value, or ``{N}`` followed by N raw
bytes. Every command gets exactly one reply, in the order the commands were
sent; a reply starts with ``OK`` or ``ERR <CODE> <detail>``. Values are
always sent with their length, then the raw bytes, then CRLF. Streaming
watches write ``EVENT <id> ...`` units between replies.

Commands start as soon as they are read (they are not serialised), except
that a command that is not a write waits for this connection's earlier
writes to finish, so a pipelined ``set`` then ``get`` reads its own write.

Beyond doozer's verbs: leases (``lease ...``, ``set lease=ID ...``),
transactions (a ``txn`` ... ``end`` block, answered as one command) and
ZooKeeper's admin words (``ruok``, ``isro``, ``srvr``, ``stat``, ``mntr``,
``cons``), answered locally without a read barrier.

Modules: ``framing`` (pure: bytes to Commands, word parsing), ``replies``
(pure: reply formatting, HELP), ``txn`` (pure: write lines and txn blocks
as data), ``verbs`` (one method per command), ``leases`` and ``admin``
(their mixins for lease/txn verbs and admin words) and ``protocol``
(TextProtocol: ordering, back-pressure, timeouts, txn blocks).
"""

from doozertw.frontends.text.framing import (
    CRLF,
    MAX_LITERAL_DIGITS,
    Command,
    Framer,
    FramingError,
    Rejected,
    literal_size,
    parse_number,
    split_rest,
    value_field,
    words,
)
from doozertw.frontends.text.protocol import INPUT_SLACK, TextProtocol
from doozertw.frontends.text.replies import (
    HELP,
    clean,
    error_reply,
    event_unit,
    help_reply,
    listing,
    usage_of,
    value_unit,
)

__all__ = [
    "CRLF",
    "HELP",
    "INPUT_SLACK",
    "MAX_LITERAL_DIGITS",
    "Command",
    "Framer",
    "FramingError",
    "Rejected",
    "TextProtocol",
    "clean",
    "error_reply",
    "event_unit",
    "help_reply",
    "listing",
    "literal_size",
    "parse_number",
    "split_rest",
    "usage_of",
    "value_field",
    "value_unit",
    "words",
]
