"""Configuration: one YAML file describes a cluster; options pick the node.

Every node of a cluster reads the same file and is told its name with
``--name``. Command-line options override the file. See
docs/configuration.md for the format.
"""

import os

import attrs
import yaml

from doozertw.limits import DEFAULT_QUORUM_TIMEOUT, Limits, LimitsError, warn_deprecated
from doozertw.frontends.access import Secrets
from doozertw.frontends.web.options import TUNABLES, WebOptionError, WebOptions
from doozertw.store import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES

DEFAULT_CLIENT = "tcp:8046:interface=127.0.0.1"
DEFAULT_WEB = "tcp:8000:interface=127.0.0.1"
DEFAULT_PEER = "tcp:7046:interface=127.0.0.1"
DISABLED = "none"
DEFAULT_DATA_DIR = "doozer-data/{name}"
DEFAULT_SNAPSHOT_ENTRIES = 10_000


class ConfigError(ValueError):
    """The configuration file or options are inconsistent."""


@attrs.frozen
class NodeConfig:
    """Where one node listens. ``advertise`` is the client address others are told."""

    name: str
    listen: str = DEFAULT_CLIENT
    web: str = DEFAULT_WEB
    peer_listen: str = DEFAULT_PEER
    advertise: str | None = None
    attach: str | None = None
    # seconds before the leader demotes a silent voter; None: never
    silent_voter_timeout: float | None = None
    peer_advertise: str | None = None
    data_dir: str | None = None
    in_memory: bool = False


@attrs.frozen
class ClusterConfig:
    cluster: str = "local"
    # True when the file or --cluster named the cluster; a node that
    # --attach-es without a name learns it from the cluster (doozertw.tap)
    cluster_given: bool = False
    history: int = DEFAULT_HISTORY
    history_bytes: int = DEFAULT_HISTORY_BYTES
    secrets: Secrets = Secrets()
    limits: Limits = Limits()
    nodes: dict = attrs.field(factory=dict)
    quorum_timeout: float = DEFAULT_QUORUM_TIMEOUT
    data_dir: str = DEFAULT_DATA_DIR
    snapshot_entries: int = DEFAULT_SNAPSHOT_ENTRIES
    # peer authentication (doozertw.peer.security, docs/security.md)
    peer_secret_file: str | None = None
    peer_cert: str | None = None
    peer_key: str | None = None
    peer_ca: str | None = None
    insecure_peers: bool = False
    # client certificates on the client port (doozertw.tlsutil, docs/security.md)
    client_ca: str | None = None
    # the web port's defences (doozertw.frontends.web.options, docs/web.md)
    web: WebOptions = WebOptions()

    def data_dir_of(self, node):
        """The data directory of ``node`` (a NodeConfig): its own
        ``data_dir``, else the cluster's, where ``{name}`` stands for the
        node's name (a cluster template without it gets the name appended)."""
        if node.data_dir:
            return node.data_dir.replace("{name}", node.name)
        template = self.data_dir
        if "{name}" not in template:
            return os.path.join(template, node.name)
        return template.replace("{name}", node.name)

    def voters(self):
        """{name: peer address} of the nodes in the file (or --peers)."""
        return {name: node.peer_listen for name, node in self.nodes.items()}


_NODE_KEYS = {"listen", "web", "peer_listen", "advertise", "peer_advertise", "data_dir"}
_TOP_KEYS = {"cluster", "history", "history_bytes", "secrets", "limits", "nodes",
             "quorum_timeout", "request_timeout", "data_dir", "snapshot_entries"}
_PEER_AUTH_KEYS = ("peer_secret_file", "peer_cert", "peer_key", "peer_ca")
_TOP_KEYS |= {*_PEER_AUTH_KEYS, "insecure_peers"}
_TOP_KEYS |= {"web_hosts", "protect_metrics", "web_limits"}
_TOP_KEYS |= {"client_ca"}


def load(path):
    """Parse a cluster YAML file into a ClusterConfig."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return parse(data, source=path)


def parse(data, source="<config>"):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    _reject_unknown(data, _TOP_KEYS, source)
    nodes = {}
    for name, spec in (data.get("nodes") or {}).items():
        spec = spec or {}
        _reject_unknown(spec, _NODE_KEYS, f"{source}: node {name}")
        nodes[str(name)] = NodeConfig(name=str(name), **{k: str(v) for k, v in spec.items()})
    secrets = data.get("secrets") or {}
    _reject_unknown(secrets, {"rw", "ro"}, f"{source}: secrets")
    try:
        limits = Limits.from_mapping(data.get("limits"), source)
    except LimitsError as e:
        raise ConfigError(str(e)) from None
    return ClusterConfig(
        cluster=str(data.get("cluster", "local")),
        cluster_given="cluster" in data,
        history=_positive(data.get("history", DEFAULT_HISTORY), "history", source),
        history_bytes=_positive(
            data.get("history_bytes", DEFAULT_HISTORY_BYTES), "history_bytes", source),
        secrets=Secrets(rw=_secret(secrets.get("rw")), ro=_secret(secrets.get("ro"))),
        limits=limits,
        nodes=nodes,
        quorum_timeout=_quorum_timeout(data, source),
        data_dir=str(data.get("data_dir", DEFAULT_DATA_DIR)),
        snapshot_entries=_positive(data.get("snapshot_entries", DEFAULT_SNAPSHOT_ENTRIES),
                                   "snapshot_entries", source),
        insecure_peers=_flag(data.get("insecure_peers", False), "insecure_peers", source),
        **{key: str(data[key]) for key in _PEER_AUTH_KEYS if data.get(key)},
        client_ca=str(data["client_ca"]) if data.get("client_ca") else None,
        web=_web_options(data, source),
    )


def _web_options(data, source):
    """WebOptions from ``web_hosts``, ``protect_metrics`` and ``web_limits``."""
    tunables = data.get("web_limits") or {}
    _reject_unknown(tunables, set(TUNABLES), f"{source}: web_limits")
    try:
        return WebOptions(
            hosts=data.get("web_hosts") or (),
            protect_metrics=_flag(data.get("protect_metrics", False), "protect_metrics", source),
            **tunables)
    except (WebOptionError, TypeError) as e:
        raise ConfigError(f"{source}: {e}") from None


def _flag(value, key, source):
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be true or false")
    return value


def _reject_unknown(mapping, allowed, where):
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(mapping) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")


def _positive(value, key, source):
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: {key} must be a positive integer")
    return value


def _quorum_timeout(data, source):
    """``quorum_timeout`` from the file, or its deprecated spelling
    ``request_timeout`` (with a warning on stderr)."""
    if "request_timeout" in data:
        if "quorum_timeout" in data:
            raise ConfigError(f"{source}: give quorum_timeout only, "
                              "not also its old name request_timeout")
        warn_deprecated(f"{source}: request_timeout", "quorum_timeout")
        return _seconds(data["request_timeout"], "request_timeout", source)
    return _seconds(data.get("quorum_timeout", DEFAULT_QUORUM_TIMEOUT), "quorum_timeout", source)


def _seconds(value, key, source):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{source}: {key} must be positive")
    return value


def parse_peers(text):
    """``n2=host:port,n3=host:port`` -> {"n2": "host:port", ...}."""
    peers = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise ConfigError(f"--peers: expected name=host:port, got {item!r}")
        check_name(name)
        peers[name] = address
    return peers


def check_name(name):
    """Node names are path components of /ctl/node (letters, digits, '.', '-')."""
    if not name or not all(c.isalnum() and c.isascii() or c in ".-" for c in name):
        raise ConfigError(f"node name {name!r}: use ASCII letters, digits, '.' and '-'")
    return name


def _secret(value):
    return str(value).encode("utf-8") if value else None


def resolve(options, environ=os.environ):
    """Combine the config file (if any), the environment and the options.

    Returns (ClusterConfig, NodeConfig) for the node this process runs.
    """
    cluster = load(options["config"]) if options.get("config") else ClusterConfig()
    name = options.get("name") or (next(iter(cluster.nodes)) if len(cluster.nodes) == 1 else "n1")
    check_name(name)
    in_file = name in cluster.nodes
    if options.get("peers"):
        nodes = dict(cluster.nodes)
        nodes.setdefault(name, NodeConfig(name=name))
        for peer, address in parse_peers(options["peers"]).items():
            if peer != name:
                nodes[peer] = NodeConfig(name=peer, peer_listen=address)
        cluster = attrs.evolve(cluster, nodes=nodes)
    if cluster.nodes and name not in cluster.nodes:
        raise ConfigError(f"node {name!r} is not in the config (have {sorted(cluster.nodes)})")
    node = cluster.nodes.get(name, NodeConfig(name=name))
    node = attrs.evolve(node, **{
        key: options[key] for key in ("listen", "web", "peer_listen", "advertise", "attach",
                                      "peer_advertise", "data_dir")
        if options.get(key)})
    if options.get("in_memory"):
        if options.get("data_dir"):
            raise ConfigError("--in-memory and --data-dir exclude each other")
        node = attrs.evolve(node, in_memory=True)
    if options.get("silent_voter_timeout") is not None:
        node = attrs.evolve(node, silent_voter_timeout=_seconds(
            options["silent_voter_timeout"], "--silent-voter-timeout", "command line"))
    if cluster.nodes and not in_file:
        # from --peers: this node's peer address is where it listens; a node
        # in the file keeps the file's address (how the others reach it)
        cluster = attrs.evolve(cluster, nodes={**cluster.nodes, name: node})
    secrets = Secrets(
        rw=_secret(environ.get("DOOZER_RWSECRET")) or cluster.secrets.rw,
        ro=_secret(environ.get("DOOZER_ROSECRET")) or cluster.secrets.ro)
    overrides = {"secrets": secrets}
    if options.get("cluster"):
        overrides["cluster"] = options["cluster"]
        overrides["cluster_given"] = True
    for key in _PEER_AUTH_KEYS:
        if options.get(key):
            overrides[key] = options[key]
    if options.get("insecure_peers"):
        overrides["insecure_peers"] = True
    if options.get("client_ca"):
        overrides["client_ca"] = options["client_ca"]
    overrides["web"] = _web_overrides(cluster.web, options)
    for key in ("history", "history_bytes", "snapshot_entries"):
        if options.get(key) is not None:
            overrides[key] = _positive(options[key], key, "command line")
    if options.get("quorum_timeout") is not None:
        overrides["quorum_timeout"] = _seconds(
            options["quorum_timeout"], "--quorum-timeout", "command line")
    return attrs.evolve(cluster, **overrides), node


def attached_to(cluster: ClusterConfig, found: str, address: str) -> ClusterConfig:
    """``cluster`` for a node attaching through ``address`` to a cluster
    whose /ctl/name is ``found``: named ``found`` when no name was given;
    ConfigError when another name was given (nodes of another cluster are
    refused) or ``found`` is empty (not a cluster's node)."""
    if not found:
        raise ConfigError(f"--attach {address}: the node there has no /ctl/name")
    if cluster.cluster_given and cluster.cluster != found:
        raise ConfigError(f"--attach {address}: that node is in cluster {found!r}, "
                          f"this one is configured for cluster {cluster.cluster!r}")
    return attrs.evolve(cluster, cluster=found, cluster_given=True)


def _web_overrides(web, options):
    """``--web-host`` (replaces the file's ``web_hosts``) and ``--protect-metrics``."""
    try:
        if options.get("web_host"):
            web = attrs.evolve(web, hosts=options["web_host"])
    except WebOptionError as e:
        raise ConfigError(f"--web-host: {e}") from None
    if options.get("protect_metrics"):
        web = attrs.evolve(web, protect_metrics=True)
    return web
