"""Doozer's wire messages (proto2), built from a descriptor at import time.

Field numbers and enum values are doozer's (see DESIGN.md); building the
descriptor here instead of shipping protoc output keeps the schema in one
readable place and independent of the protoc version. The server front end,
the clients, the bench and the tests all use these classes.

``Request`` and ``Response`` are generated protobuf message classes;
``VERBS`` maps verb names to their enum numbers; ``FLAG_SET``/``FLAG_DEL``
are the bits of ``Response.flags`` for WAIT and WALK events.
``RequestMessage``/``ResponseMessage`` describe their instances' fields
for the type checker.

doozertw's extensions (docs/protocol.md, "Extensions: leases and transactions") use only verb and
field numbers doozer never used, and every new field is optional, so a
doozer client neither sends nor sees them: the lease verbs and TXN
(``EXTENSION_VERBS``, 50 to 55), and fields 20 and up. Request: ``lease``
20, ``ttl`` 21, ``compares`` 22 (repeated ``Request.Compare``: path 1,
rev 2, value 3), ``success`` 23 and ``failure`` 24 (repeated
``Request.Op``: verb 1 (SET or DEL), path 2, rev 3, value 4, lease 5).
Response: ``lease`` 20, ``ttl`` 21, ``remaining`` 22 (double, seconds),
``paths`` 23, ``leases`` 24 (repeated ``Response.Lease``: id 1, ttl 2,
remaining 3), ``succeeded`` 25, ``revs`` 26, ``more`` 27.
"""

from __future__ import annotations

from typing import Iterable, Iterator, MutableSequence, Protocol, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from doozertw.errors import ErrCode

VERBS: dict[str, int] = {
    "GET": 1, "SET": 2, "DEL": 3, "REV": 5, "WAIT": 6, "NOP": 7, "WALK": 9,
    "GETDIR": 14, "STAT": 16, "SELF": 20, "ACCESS": 99,
}
DOOZER_VERBS = frozenset(VERBS)
"""The verbs of doozer itself."""

EXTENSION_VERBS: dict[str, int] = {
    "LEASE_GRANT": 50, "LEASE_KEEPALIVE": 51, "LEASE_REVOKE": 52, "LEASE_TTL": 53,
    "LEASE_LIST": 54, "TXN": 55,
}
"""doozertw's verbs beyond doozer's (numbers no doozer version used)."""
VERBS.update(EXTENSION_VERBS)

FLAG_SET = 4
FLAG_DEL = 8

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int,
           type_name: str | None = None, repeated: bool = False) -> None:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    f = message.field.add(name=name, number=number, label=label, type=kind)
    if type_name:
        f.type_name = type_name


def _enum(message: descriptor_pb2.DescriptorProto, name: str, values: dict[str, int]) -> None:
    enum = message.enum_type.add(name=name)
    for value_name, number in sorted(values.items(), key=lambda kv: kv[1]):
        enum.value.add(name=value_name, number=number)


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="doozertw/msg.proto", package="doozertw.server", syntax="proto2")
    request = fdp.message_type.add(name="Request")
    _enum(request, "Verb", VERBS)
    _field(request, "tag", 1, _F.TYPE_INT32)
    _field(request, "verb", 2, _F.TYPE_ENUM, ".doozertw.server.Request.Verb")
    _field(request, "path", 4, _F.TYPE_STRING)
    _field(request, "value", 5, _F.TYPE_BYTES)
    _field(request, "other_tag", 6, _F.TYPE_INT32)
    _field(request, "offset", 7, _F.TYPE_INT32)
    _field(request, "rev", 9, _F.TYPE_INT64)
    _request_extensions(request)

    response = fdp.message_type.add(name="Response")
    _enum(response, "Err", {code.name: int(code) for code in ErrCode})
    _field(response, "tag", 1, _F.TYPE_INT32)
    _field(response, "flags", 2, _F.TYPE_INT32)
    _field(response, "rev", 3, _F.TYPE_INT64)
    _field(response, "path", 5, _F.TYPE_STRING)
    _field(response, "value", 6, _F.TYPE_BYTES)
    _field(response, "len", 8, _F.TYPE_INT32)
    _field(response, "err_code", 100, _F.TYPE_ENUM, ".doozertw.server.Response.Err")
    _field(response, "err_detail", 101, _F.TYPE_STRING)
    _response_extensions(response)
    return fdp


def _request_extensions(request: descriptor_pb2.DescriptorProto) -> None:
    """doozertw's optional Request fields (20 and up) and their nested messages."""
    compare = request.nested_type.add(name="Compare")
    _field(compare, "path", 1, _F.TYPE_STRING)
    _field(compare, "rev", 2, _F.TYPE_INT64)
    _field(compare, "value", 3, _F.TYPE_BYTES)
    op = request.nested_type.add(name="Op")
    _field(op, "verb", 1, _F.TYPE_ENUM, ".doozertw.server.Request.Verb")
    _field(op, "path", 2, _F.TYPE_STRING)
    _field(op, "rev", 3, _F.TYPE_INT64)
    _field(op, "value", 4, _F.TYPE_BYTES)
    _field(op, "lease", 5, _F.TYPE_INT64)
    _field(request, "lease", 20, _F.TYPE_INT64)
    _field(request, "ttl", 21, _F.TYPE_INT64)
    _field(request, "compares", 22, _F.TYPE_MESSAGE, ".doozertw.server.Request.Compare",
           repeated=True)
    for number, name in ((23, "success"), (24, "failure")):
        _field(request, name, number, _F.TYPE_MESSAGE, ".doozertw.server.Request.Op",
               repeated=True)


def _response_extensions(response: descriptor_pb2.DescriptorProto) -> None:
    """doozertw's optional Response fields (20 and up) and their nested message."""
    lease = response.nested_type.add(name="Lease")
    _field(lease, "id", 1, _F.TYPE_INT64)
    _field(lease, "ttl", 2, _F.TYPE_INT64)
    _field(lease, "remaining", 3, _F.TYPE_DOUBLE)
    _field(response, "lease", 20, _F.TYPE_INT64)
    _field(response, "ttl", 21, _F.TYPE_INT64)
    _field(response, "remaining", 22, _F.TYPE_DOUBLE)
    _field(response, "paths", 23, _F.TYPE_STRING, repeated=True)
    _field(response, "leases", 24, _F.TYPE_MESSAGE, ".doozertw.server.Response.Lease",
           repeated=True)
    _field(response, "succeeded", 25, _F.TYPE_BOOL)
    _field(response, "revs", 26, _F.TYPE_INT64, repeated=True)
    _field(response, "more", 27, _F.TYPE_BOOL)


def _message_classes() -> tuple[type[Message], type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    request, response = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
        for name in ("doozertw.server.Request", "doozertw.server.Response"))
    return request, response


Request, Response = _message_classes()


M = TypeVar("M")


class RepeatedMessages(Protocol[M]):
    """A repeated message field: a sequence that ``add``s new elements."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[M]: ...

    def __getitem__(self, index: int) -> M: ...

    def add(self, **fields: object) -> M: ...

    def extend(self, elements: Iterable[M]) -> None: ...


class CompareMessage(Protocol):
    """A ``Request.Compare`` (a TXN condition): ``rev`` or ``value``, not both."""

    path: str
    rev: int
    value: bytes

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802


class OpMessage(Protocol):
    """A ``Request.Op`` (a TXN operation): ``verb`` SET or DEL."""

    verb: int
    path: str
    rev: int
    value: bytes
    lease: int

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802


class LeaseMessage(Protocol):
    """A ``Response.Lease`` (one entry of LEASE_LIST)."""

    id: int
    ttl: int
    remaining: float


class RequestMessage(Protocol):
    """The fields of a ``Request`` instance, for type checking."""

    tag: int
    verb: int
    path: str
    value: bytes
    other_tag: int
    offset: int
    rev: int
    lease: int
    ttl: int
    compares: RepeatedMessages[CompareMessage]
    success: RepeatedMessages[OpMessage]
    failure: RepeatedMessages[OpMessage]

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802 (protobuf's name)

    def SerializeToString(self) -> bytes: ...  # noqa: N802


class ResponseMessage(Protocol):
    """The fields of a ``Response`` instance, for type checking."""

    tag: int
    flags: int
    rev: int
    path: str
    value: bytes
    len: int
    err_code: int
    err_detail: str
    lease: int
    ttl: int
    remaining: float
    paths: MutableSequence[str]
    leases: RepeatedMessages[LeaseMessage]
    succeeded: bool
    revs: MutableSequence[int]
    more: bool

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802

    def SerializeToString(self) -> bytes: ...  # noqa: N802
