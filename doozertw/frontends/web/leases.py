"""Leases over HTTP: ``/v1/leases`` (JSON) and ``/leases`` (an HTML page).

- ``POST /v1/leases`` body ``{"ttl": S[, "id": N]}``: grant a lease of S
  seconds (id N, or the next free one) -> ``{"id", "ttl"}``.
- ``POST /v1/leases/<id>/keepalive`` -> ``{"id", "ttl", "remaining"}``.
- ``GET /v1/leases/<id>`` -> ``{"id", "ttl", "remaining", "files"}``.
- ``GET /v1/leases`` -> ``{"leases": [{"id", "ttl", "remaining", "files"}, ...]}``.
- ``DELETE /v1/leases/<id>`` -> ``{"id", "rev"}``: the lease and its files
  are gone as of revision ``rev``.

Grant, keep-alive and revoke are writes (the read-write secret, same
origin); the reads need the read secret. A lease id is an integer from 1 to
MAX_LEASE_ID; a TTL from 1 to ``limits.max_lease_ttl``; anything else, or a
body that is not a small JSON object, is answered 400 before the node is
asked. The node answers through NodeAPI only.

``GET /leases`` renders every lease and its files as HTML (escaped; no
script), for a browser pointed at a node without secrets or a client
presenting the read secret in a header.
"""

import html

from twisted.web import server

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.web import common

MAX_LEASE_ID = 2**63 - 1
LEASE_BODY_LIMIT = 4096
KEEPALIVE = "keepalive"


def lease_fields(info, files=True):
    """JSON object for a LeaseInfo (``files`` included unless told not to)."""
    out = {"id": info.id, "ttl": info.ttl, "remaining": round(float(info.remaining), 3)}
    if files:
        out["files"] = list(info.paths)
    return out


def parse_lease_id(text):
    """A lease id from a URL segment; MISSING_ARG unless 1..MAX_LEASE_ID in decimal."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise DoozerError(ErrCode.MISSING_ARG, "lease id must be a positive integer")
    lease = int(text)
    if not 1 <= lease <= MAX_LEASE_ID:
        raise DoozerError(ErrCode.MISSING_ARG, "lease id must be a positive integer")
    return lease


def _method_not_allowed(request):
    error = DoozerError(ErrCode.UNKNOWN_VERB, f"{request.method.decode('ascii', 'replace')}"
                        " not allowed here")
    common.write_json(request, 405, common.error_body(error))
    return server.NOT_DONE_YET


class LeasesResource(common.Leaf):
    """/v1/leases, /v1/leases/<id> and /v1/leases/<id>/keepalive."""

    def render(self, request):
        return common.run_guarded(request, lambda: self._dispatch(request))

    def _dispatch(self, request):
        segments = [p.decode("utf-8", "replace") for p in request.postpath]
        if segments and segments[-1] == "":
            segments.pop()
        method = request.method
        if not segments:
            handlers = {b"GET": self._list, b"POST": self._grant}
        elif len(segments) == 1:
            lease = parse_lease_id(segments[0])
            handlers = {b"GET": lambda r: self._info(r, lease),
                        b"DELETE": lambda r: self._revoke(r, lease)}
        elif len(segments) == 2 and segments[1] == KEEPALIVE:
            lease = parse_lease_id(segments[0])
            handlers = {b"POST": lambda r: self._keepalive(r, lease)}
        else:
            raise DoozerError(ErrCode.NOENT, "no such resource")
        handler = handlers.get(method)
        if handler is None:
            return _method_not_allowed(request)
        return handler(request)

    def _write_access(self, request):
        common.require_same_origin(request)
        self.api.access(request).require_write()

    def _list(self, request):
        self.api.access(request).require_read()
        return common.respond(request, self.api.node.leases(), lambda infos: common.write_json(
            request, 200, {"leases": [lease_fields(i) for i in infos]}))

    def _info(self, request, lease):
        self.api.access(request).require_read()
        return common.respond(request, self.api.node.lease_info(lease),
                              lambda info: common.write_json(request, 200, lease_fields(info)))

    def _grant(self, request):
        self._write_access(request)
        doc = common.read_json_object(request, LEASE_BODY_LIMIT)
        unknown = set(doc) - {"ttl", "id"}
        if unknown:
            raise DoozerError(ErrCode.MISSING_ARG, f"unknown field {sorted(unknown)[0]!r}")
        ttl = common.json_int(doc, "ttl", 1, self.api.limits.max_lease_ttl)
        lease = common.json_int(doc, "id", 0, MAX_LEASE_ID, default=0)
        d = self.api.timed_write(lambda: self.api.node.grant_lease(ttl, lease))
        return common.respond(request, d, lambda info: common.write_json(
            request, 200, {"id": info.id, "ttl": info.ttl}))

    def _keepalive(self, request, lease):
        self._write_access(request)
        return common.respond(request, self.api.node.keepalive(lease), lambda info:
                              common.write_json(request, 200, lease_fields(info, files=False)))

    def _revoke(self, request, lease):
        self._write_access(request)
        d = self.api.timed_write(lambda: self.api.node.revoke_lease(lease))
        return common.respond(request, d, lambda rev: common.write_json(
            request, 200, {"id": lease, "rev": rev}))


PAGE_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>doozer leases</title>
<link rel="stylesheet" href="/app.css"></head><body>
<header><h1>leases</h1><a href="/">tree</a></header>
"""


def render_leases_page(infos):
    """The HTML of the leases page: one row per lease (id, TTL, time left)
    and its attached (ephemeral) files. Every text is escaped."""
    parts = [PAGE_HEAD, f"<p>{len(infos)} lease(s)</p>\n",
             '<table id="leases"><thead><tr><th>id</th><th>ttl (s)</th>'
             "<th>time left (s)</th><th>ephemeral files</th></tr></thead><tbody>\n"]
    for info in infos:
        files = "".join(f'<li class="ephemeral">{html.escape(p)}</li>' for p in info.paths)
        parts.append(f"<tr><td>{int(info.id)}</td><td>{int(info.ttl)}</td>"
                     f"<td>{float(info.remaining):.1f}</td><td><ul>{files}</ul></td></tr>\n")
    parts.append("</tbody></table></body></html>\n")
    return "".join(parts).encode("utf-8")


class LeasesPage(common.Leaf):
    """GET /leases: the leases as an HTML page."""

    def render_GET(self, request):
        return common.run_guarded(request, lambda: self._page(request))

    def _page(self, request):
        self.api.access(request).require_read()

        def show(infos):
            body = render_leases_page(infos)
            if request.finished or getattr(request, "_disconnected", False):
                return
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"x-content-type-options", b"nosniff")
            request.setHeader(b"content-security-policy",
                              b"default-src 'none'; style-src 'self'")
            request.write(body)
            request.finish()

        return common.respond(request, self.api.node.leases(), show)
