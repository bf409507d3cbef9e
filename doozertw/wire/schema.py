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
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from doozertw.errors import ErrCode

VERBS: dict[str, int] = {
    "GET": 1, "SET": 2, "DEL": 3, "REV": 5, "WAIT": 6, "NOP": 7, "WALK": 9,
    "GETDIR": 14, "STAT": 16, "SELF": 20, "ACCESS": 99,
}

FLAG_SET = 4
FLAG_DEL = 8

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int,
           type_name: str | None = None) -> None:
    f = message.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL, type=kind)
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
    return fdp


def _message_classes() -> tuple[type[Message], type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    request, response = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
        for name in ("doozertw.server.Request", "doozertw.server.Response"))
    return request, response


Request, Response = _message_classes()


class RequestMessage(Protocol):
    """The fields of a ``Request`` instance, for type checking."""

    tag: int
    verb: int
    path: str
    value: bytes
    other_tag: int
    offset: int
    rev: int

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

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802

    def SerializeToString(self) -> bytes: ...  # noqa: N802
