"""Python clients for doozer (and doozertw) servers.

- ``DoozerClient`` (Twisted): every call returns a Deferred.
- ``BlockingClient``: plain sockets; every call returns its result.

Both take a doozer URI (``doozer:?ca=host:port&ca=host:port&sk=secret``),
one ``host:port`` or a list of them, pipeline requests, fail over between
addresses by themselves, and raise ``DoozerError`` with the server's code.

Leases and transactions (doozertw's extensions): ``grant_lease``,
``keepalive``, ``revoke_lease``, ``lease_ttl``, ``leases`` answer
``LeaseInfo``; ``txn`` takes ``Compare``, ``SetFile`` and ``DeleteFile``
values and answers a ``TxnResult``.
"""

from doozertw.client.blocking import BlockingClient, BlockingWatch
from doozertw.client.blocking import connect as connect_blocking
from doozertw.client.core import ConnectionLost, LeaseInfo, TxnResult, WaitTimeout, call
from doozertw.client.twisted_client import DoozerClient, State, TCPConnector
from doozertw.client.twisted_client import connect
from doozertw.client.uri import DEFAULT_URI, InvalidURI, make_uri, parse_uri
from doozertw.client.watch import Watch
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import DEL, DIR, SET, Event
from doozertw.store.mutation import Compare, DeleteFile, SetFile

__all__ = [
    "BlockingClient", "BlockingWatch", "Compare", "ConnectionLost", "DEFAULT_URI", "DEL",
    "DIR", "DeleteFile", "DoozerClient", "DoozerError", "ErrCode", "Event", "InvalidURI",
    "LeaseInfo", "SET", "SetFile", "State", "TCPConnector", "TxnResult", "WaitTimeout",
    "Watch", "call", "connect", "connect_blocking", "make_uri", "parse_uri",
]
