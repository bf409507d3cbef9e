"""mostdb compatibility: POST /mostdb/set, /mostdb/get, /mostdb/del.

mostdb (github.com/gotoeasy/mostdb) takes a JSON body ``{"key": K,
"value": V}`` and always answers HTTP 200 with a JSON ``MostResult``:

- success: ``{"code": 200, "success": true}``; a get adds
  ``"result": {"key": K, "value": V}`` (``value`` omitted when empty, as
  Go's ``omitempty`` does);
- failure: ``{"code": 500, "message": M, "success": false}`` where M is
  ``"NotFound"`` for a missing key, ``"NotMost"`` when no majority could be
  reached, and otherwise a short reason.

Keys map to doozer paths: a key starting with ``/`` is used as it is,
any other key ``k`` is the file ``/k``. A key that is not a valid path
fails with message ``"BAD_PATH"``; a request without the rights the
secrets require fails with ``"permission denied"`` (secrets are presented
as for /v1).
"""

import json

from twisted.web import resource, server

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.web import common
from doozertw.frontends.interface import CLOBBER, check_path

NOT_FOUND = "NotFound"
NOT_MOST = "NotMost"
BAD_PARAMS = "参数有误"  # mostdb's own message for a missing key


def ok(result=None):
    body = {"code": 200, "success": True}
    if result is not None:
        body["result"] = result
    return body


def failed(message):
    return {"code": 500, "message": message, "success": False}


def key_to_path(key, max_path, max_depth=None):
    path = key if key.startswith("/") else "/" + key
    if max_depth is None:
        return check_path(path, max_path)
    return check_path(path, max_path, max_depth)


def failure_message(error):
    """The mostdb message for a DoozerError."""
    if common.http_status(error) == 503:
        return NOT_MOST
    if error.code == ErrCode.OTHER:
        return error.detail or error.code.name
    if error.code == ErrCode.MISSING_ARG:
        return BAD_PARAMS  # mostdb's reply when the key is missing
    return error.code.name


class MostdbResource(resource.Resource):
    """One of mostdb's three verbs."""

    isLeaf = True

    def __init__(self, api, verb):
        super().__init__()
        self.api = api
        self.verb = verb

    def render_POST(self, request):
        try:
            common.require_same_origin(request)
            key, value = self._parse(request)
            path = key_to_path(key, self.api.limits.max_path, self.api.limits.max_depth)
            access = self.api.access(request)
            d = getattr(self, "_" + self.verb)(access, path, key, value)
        except DoozerError as e:
            common.write_json(request, 200, failed(failure_message(e)))
            return server.NOT_DONE_YET

        def answered(body):
            common.write_json(request, 200, body)

        def errored(failure):
            error = common.as_doozer_error(failure)
            common.write_json(request, 200, failed(failure_message(error)))

        d.addCallbacks(answered, errored)
        return server.NOT_DONE_YET

    def _parse(self, request):
        body = common.read_body(request, self.api.limits.max_value * 2 + 4096)
        try:
            doc = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        key = doc.get("key")
        value = doc.get("value", "")
        if not isinstance(key, str) or not key:
            raise DoozerError(ErrCode.MISSING_ARG, BAD_PARAMS)
        if not isinstance(value, str):
            raise DoozerError(ErrCode.MISSING_ARG, BAD_PARAMS)
        return key, value

    def _set(self, access, path, key, value):
        access.require_write()
        data = value.encode("utf-8")
        if len(data) > self.api.limits.max_value:
            raise DoozerError(ErrCode.OTHER, common.VALUE_TOO_LARGE)
        d = self.api.timed_write(lambda: self.api.node.set(path, CLOBBER, data))
        return d.addCallback(lambda _: ok())

    def _get(self, access, path, key, value):
        access.require_read()

        def found(answer):
            data, rev = answer
            if rev == 0:
                return failed(NOT_FOUND)
            result = {"key": key}
            text = data.decode("utf-8", "replace")
            if text:
                result["value"] = text
            return ok(result)

        return self.api.node.get(path).addCallback(found)

    def _del(self, access, path, key, value):
        access.require_write()
        d = self.api.timed_write(lambda: self.api.node.delete(path, CLOBBER))
        return d.addCallback(lambda _: ok())


def mostdb_resource(api):
    root = resource.Resource()
    for verb in ("set", "get", "del"):
        root.putChild(verb.encode("ascii"), MostdbResource(api, verb))
    return root
