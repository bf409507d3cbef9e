"""The web port: live web view, HTTP JSON API, mostdb compatibility, operations.

The names below are imported on first use, so that ``doozertw.config`` can
read ``doozertw.frontends.web.options`` without loading twisted.web.
"""

import importlib

_EXPORTS = {
    "make_web_site": "doozertw.frontends.web.site",
    "ClusterView": "doozertw.frontends.web.status",
    "MemberStatus": "doozertw.frontends.web.status",
    "SingleNodeStatus": "doozertw.frontends.web.status",
    "status_source": "doozertw.frontends.web.status",
    "WebOptions": "doozertw.frontends.web.options",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
