"""The web port: live web view, HTTP JSON API, mostdb compatibility, operations."""

from doozertw.frontends.web.site import make_web_site
from doozertw.frontends.web.status import (
    ClusterView, MemberStatus, SingleNodeStatus, status_source)

__all__ = ["ClusterView", "MemberStatus", "SingleNodeStatus", "make_web_site",
           "status_source"]
