"""How a node authenticates its peers (docs/security.md).

``PeerSecurity`` is what a PeerTransport is given:

- ``secret``: the cluster secret (``--peer-secret-file``): challenge-
  response in the handshake and a tag on every frame (auth.py);
- ``tls``: TLSSettings (``--peer-cert/--peer-key/--peer-ca``): mutual TLS,
  certificates naming the nodes (tls.py);
- ``allow_unauthenticated``: with neither, whether peers are accepted at
  all (``--insecure-peers``). A node with neither and without
  ``--insecure-peers`` refuses every peer (a single node needs none).

Both modes may be combined. Every node of a cluster must use the same.
``for_node`` builds it from the configuration and refuses (ConfigError,
one line) a node with peers and no authentication unless insecure_peers.
"""

from __future__ import annotations

import attrs
from twisted.internet.endpoints import clientFromString

from doozertw.peer.auth import MIN_SECRET
from doozertw.peer.handshake import AuthFlags
from doozertw.peer.tls import TLSConfigError, TLSSettings, peer_name_problem


@attrs.frozen
class PeerSecurity:
    """See the module docstring. The default accepts unauthenticated peers
    (unit tests, --insecure-peers)."""

    secret: bytes | None = attrs.field(default=None, repr=False)
    tls: TLSSettings | None = attrs.field(default=None, repr=False)
    allow_unauthenticated: bool = True

    @property
    def flags(self) -> AuthFlags:
        flags = AuthFlags.NONE
        if self.secret is not None:
            flags |= AuthFlags.SECRET
        if self.tls is not None:
            flags |= AuthFlags.TLS
        return flags

    @property
    def authenticated(self) -> bool:
        return bool(self.flags)

    @property
    def closed(self) -> bool:
        """True when this node accepts no peers at all."""
        return not self.authenticated and not self.allow_unauthenticated

    def describe(self) -> str:
        if self.closed:
            return "none configured: no peer is accepted"
        parts = [name for name, on in (("cluster secret", self.secret is not None),
                                       ("mutual TLS", self.tls is not None)) if on]
        return " + ".join(parts) or "NONE (--insecure-peers)"

    def server_factory(self, factory):
        return self.tls.server_factory(factory) if self.tls is not None else factory

    def client_endpoint(self, reactor, endpoint: str, peer_name: str):
        if self.tls is not None:
            return self.tls.client_endpoint(reactor, endpoint, peer_name)
        return clientFromString(reactor, endpoint)

    def name_problem(self, transport, claimed: str) -> str | None:
        """With TLS: why the peer on ``transport`` may not be ``claimed``."""
        if self.tls is None:
            return None
        return peer_name_problem(transport, claimed)


def read_secret(path: str) -> bytes:
    """The cluster secret in ``path`` (surrounding whitespace stripped);
    raises ValueError for an unreadable or short one."""
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise ValueError(f"peer secret file {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET:
        raise ValueError(f"peer secret file {path}: the secret must be at least "
                         f"{MIN_SECRET} bytes (e.g. head -c 32 /dev/urandom | base64)")
    return secret


def for_node(cluster, me) -> PeerSecurity:
    """The PeerSecurity of node ``me`` of ``cluster`` (doozertw.config).

    Raises ``doozertw.config.ConfigError`` for unusable files, half a TLS
    configuration, or a node with peers (several nodes, or --attach) and
    no authentication without insecure_peers.
    """
    from doozertw.config import ConfigError
    secret = tls = None
    try:
        if cluster.peer_secret_file:
            secret = read_secret(cluster.peer_secret_file)
        tls_files = (cluster.peer_cert, cluster.peer_key, cluster.peer_ca)
        if any(tls_files):
            if not all(tls_files):
                raise ValueError("mutual TLS needs all of --peer-cert, --peer-key "
                                 "and --peer-ca")
            tls = TLSSettings.load(*tls_files)
    except (ValueError, TLSConfigError) as exc:
        raise ConfigError(str(exc)) from None
    security = PeerSecurity(secret, tls, allow_unauthenticated=cluster.insecure_peers)
    if not security.authenticated and has_peers(cluster, me) and not cluster.insecure_peers:
        raise ConfigError(
            "this node has peers but no peer authentication: give --peer-secret-file "
            "(or --peer-cert/--peer-key/--peer-ca), or --insecure-peers on a trusted "
            "network (docs/security.md)")
    return security


def has_peers(cluster, me) -> bool:
    """True when ``me`` talks to other nodes: several in the config or
    --peers, or --attach."""
    return bool(me.attach) or len(cluster.nodes) > 1


__all__ = ["PeerSecurity", "for_node", "has_peers", "read_secret"]
