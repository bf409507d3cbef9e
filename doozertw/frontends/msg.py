"""Doozer's wire messages (proto2), built from a descriptor at import time.

Field numbers and enum values are doozer's (see DESIGN.md); building the
descriptor here instead of shipping protoc output keeps the schema in one
readable place and independent of the protoc version. Both the server
front end and the Python clients use these classes.
"""

import struct

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from doozertw.errors import ErrCode

VERBS = {
    "GET": 1, "SET": 2, "DEL": 3, "REV": 5, "WAIT": 6, "NOP": 7, "WALK": 9,
    "GETDIR": 14, "STAT": 16, "SELF": 20, "ACCESS": 99,
}

FLAG_SET = 4
FLAG_DEL = 8

LENGTH = struct.Struct(">I")

_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name, number, kind, type_name=None):
    f = message.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL, type=kind)
    if type_name:
        f.type_name = type_name


def _enum(message, name, values):
    enum = message.enum_type.add(name=name)
    for value_name, number in sorted(values.items(), key=lambda kv: kv[1]):
        enum.value.add(name=value_name, number=number)


def _build():
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

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
            for name in ("doozertw.server.Request", "doozertw.server.Response"))


Request, Response = _build()


def frame(message):
    """Serialize a message with its 4-byte big-endian length prefix."""
    body = message.SerializeToString()
    return LENGTH.pack(len(body)) + body
