"""Configuration: one YAML file describes a cluster; options pick the node.

Every node of a cluster reads the same file and is told its name with
``--name``. Command-line options override the file. See
docs/configuration.md for the format.
"""

import os
from collections.abc import Callable, Mapping

import attrs
import yaml

from doozertw.limits import DEFAULT_QUORUM_TIMEOUT, Limits, LimitsError, warn_deprecated
from doozertw.frontends.access import Secrets
from doozertw.frontends.web.options import TUNABLES, WebOptionError, WebOptions
from doozertw.logging_setup import (
    DEFAULT_FORMAT, DEFAULT_LEVEL, LoggingError, format_named, level_named)
from doozertw.store import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES

DEFAULT_CLIENT = "tcp:8046:interface=127.0.0.1"
DEFAULT_WEB = "tcp:8000:interface=127.0.0.1"
DEFAULT_PEER = "tcp:7046:interface=127.0.0.1"
DISABLED = "none"
DEFAULT_DATA_DIR = "doozer-data/{name}"
DEFAULT_SNAPSHOT_ENTRIES = 10_000
DEFAULT_HEARTBEAT_INTERVAL = 0.1
DEFAULT_ELECTION_TIMEOUT = 0.5
MIN_HEARTBEAT_INTERVAL = 0.01
HEARTBEAT_TICKS = 2      # a tick is half the heartbeat interval
MIN_ELECTION_TICKS = 5   # what lease reads need (doozertw.consensus.lease)


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
    # Raft timing (seconds): the leader heartbeats every heartbeat_interval;
    # a follower campaigns after election_timeout..2x without a leader
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    election_timeout: float = DEFAULT_ELECTION_TIMEOUT
    data_dir: str = DEFAULT_DATA_DIR
    snapshot_entries: int = DEFAULT_SNAPSHOT_ENTRIES
    # peer authentication (doozertw.peer.security, docs/security.md)
    peer_secret_file: str | None = None
    peer_cert: str | None = None
    peer_key: str | None = None
    peer_ca: str | None = None
    insecure_peers: bool = False
    # the leader answers linearizable reads from a read lease (docs/cluster.md)
    lease_reads: bool = False
    # client certificates on the client port (doozertw.tlsutil, docs/security.md)
    client_ca: str | None = None
    # the web port's defences (doozertw.frontends.web.options, docs/web.md)
    web: WebOptions = WebOptions()
    # doozertw.logging_setup: DEBUG, INFO, WARN or ERROR; text or json
    log_level: str = DEFAULT_LEVEL
    log_format: str = DEFAULT_FORMAT

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
_TOP_KEYS |= {"web_hosts", "protect_metrics", "web_access_log", "web_limits"}
_TOP_KEYS |= {"client_ca", "log_level", "log_format", "lease_reads"}
_TOP_KEYS |= {"heartbeat_interval", "election_timeout"}


def load(path):
    """Parse a cluster YAML file into a ClusterConfig."""
    return parse(load_raw(path), source=path)


def load_raw(path):
    """The YAML document of file ``path`` (an empty file is {});
    ConfigError (one line) if it cannot be read or is not YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None


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
        heartbeat_interval=_seconds(data.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
                                    "heartbeat_interval", source),
        election_timeout=_seconds(data.get("election_timeout", DEFAULT_ELECTION_TIMEOUT),
                                  "election_timeout", source),
        data_dir=str(data.get("data_dir", DEFAULT_DATA_DIR)),
        snapshot_entries=_positive(data.get("snapshot_entries", DEFAULT_SNAPSHOT_ENTRIES),
                                   "snapshot_entries", source),
        insecure_peers=_flag(data.get("insecure_peers", False), "insecure_peers", source),
        lease_reads=_flag(data.get("lease_reads", False), "lease_reads", source),
        **{key: str(data[key]) for key in _PEER_AUTH_KEYS if data.get(key)},
        client_ca=str(data["client_ca"]) if data.get("client_ca") else None,
        web=_web_options(data, source),
        log_level=_logging_choice(data.get("log_level", DEFAULT_LEVEL), level_named,
                                  source, "log_level"),
        log_format=_logging_choice(data.get("log_format", DEFAULT_FORMAT), format_named,
                                   source, "log_format"),
    )


def _logging_choice(value, check, source, key):
    """``check(value)`` (a logging_setup name check), its error as ConfigError."""
    try:
        return check(value)
    except LoggingError as e:
        raise ConfigError(f"{source}: {key}: {e}") from None


def _web_options(data, source):
    """WebOptions from ``web_hosts``, ``protect_metrics``, ``web_access_log``
    and ``web_limits``."""
    tunables = data.get("web_limits") or {}
    _reject_unknown(tunables, set(TUNABLES), f"{source}: web_limits")
    try:
        return WebOptions(
            hosts=data.get("web_hosts") or (),
            protect_metrics=_flag(data.get("protect_metrics", False), "protect_metrics", source),
            access_log=_flag(data.get("web_access_log", False), "web_access_log", source),
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


def parse_peers(text, label="--peers"):
    """``n2=host:port,n3=host:port`` -> {"n2": "host:port", ...}."""
    peers = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise ConfigError(f"{label}: expected name=host:port, got {item!r}")
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


def resolve(options, environ=os.environ, origins=None):
    """Combine the config file (if any), the environment and the options.

    ``options`` maps option keys (``peer_listen``) to what the command line
    or the environment gave (None: not given; see ``layered``);
    ``origins`` says which did (key -> "flag" or the variable's name), so
    that an error names what to fix and an environment ``false`` overrides
    the file. Returns (ClusterConfig, NodeConfig) for the node this process
    runs.
    """
    origins = origins or {}

    def where(key):
        """(source, name) of option ``key`` for an error message."""
        origin = origins.get(key, "flag")
        if origin == "flag":
            return "command line", "--" + key.replace("_", "-")
        return "environment", origin

    def explicit(key):
        """A flag given true, or given at all (false) through the environment."""
        return bool(options.get(key)) or (key in origins and options.get(key) is not None)

    cluster = load(options["config"]) if options.get("config") else ClusterConfig()
    name = options.get("name") or (next(iter(cluster.nodes)) if len(cluster.nodes) == 1 else "n1")
    check_name(name)
    in_file = name in cluster.nodes
    if options.get("peers"):
        nodes = dict(cluster.nodes)
        nodes.setdefault(name, NodeConfig(name=name))
        for peer, address in parse_peers(options["peers"], where("peers")[1]).items():
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
            raise ConfigError(f"{where('in_memory')[1]} and {where('data_dir')[1]} "
                              "exclude each other")
        node = attrs.evolve(node, in_memory=True)
    if options.get("silent_voter_timeout") is not None:
        node = attrs.evolve(node, silent_voter_timeout=_seconds(
            options["silent_voter_timeout"], *reversed(where("silent_voter_timeout"))))
    if cluster.nodes and not in_file:
        # from --peers: this node's peer address is where it listens; a node
        # in the file keeps the file's address (how the others reach it)
        cluster = attrs.evolve(cluster, nodes={**cluster.nodes, name: node})
    secrets = Secrets(rw=env_secret(environ, "DOOZER_RWSECRET") or cluster.secrets.rw,
                      ro=env_secret(environ, "DOOZER_ROSECRET") or cluster.secrets.ro)
    overrides = {"secrets": secrets}
    if options.get("cluster"):
        overrides["cluster"] = options["cluster"]
        overrides["cluster_given"] = True
    for key in _PEER_AUTH_KEYS:
        if options.get(key):
            overrides[key] = options[key]
    if explicit("insecure_peers"):
        overrides["insecure_peers"] = bool(options["insecure_peers"])
    if explicit("lease_reads"):
        overrides["lease_reads"] = bool(options["lease_reads"])
    if options.get("client_ca"):
        overrides["client_ca"] = options["client_ca"]
    overrides["web"] = _web_overrides(
        cluster.web, options, {key for key in WEB_FLAGS if explicit(key)}, where("web_host")[1])
    for key in ("history", "history_bytes", "snapshot_entries"):
        if options.get(key) is not None:
            source, label = where(key)
            overrides[key] = _positive(options[key], label, source)
    for key in ("quorum_timeout", "heartbeat_interval", "election_timeout"):
        if options.get(key) is not None:
            overrides[key] = _seconds(options[key], *reversed(where(key)))
    for key, check in (("log_level", level_named), ("log_format", format_named)):
        if options.get(key):
            overrides[key] = _logging_choice(options[key], check, *where(key))
    cluster = attrs.evolve(cluster, **overrides)
    raft_ticks(cluster)
    return cluster, node


def raft_ticks(cluster: ClusterConfig) -> tuple[float, int, int]:
    """(tick seconds, election ticks, heartbeat ticks) of the cluster's
    Raft timing: a tick is half the heartbeat interval. ConfigError if the
    heartbeat is shorter than MIN_HEARTBEAT_INTERVAL or the election
    timeout shorter than MIN_ELECTION_TICKS ticks (2.5 heartbeats)."""
    if cluster.heartbeat_interval < MIN_HEARTBEAT_INTERVAL:
        raise ConfigError(f"heartbeat_interval must be at least {MIN_HEARTBEAT_INTERVAL:g}s")
    tick = cluster.heartbeat_interval / HEARTBEAT_TICKS
    election_ticks = round(cluster.election_timeout / tick)
    if election_ticks < MIN_ELECTION_TICKS:
        raise ConfigError(
            f"election_timeout {cluster.election_timeout:g}s must be at least "
            f"{MIN_ELECTION_TICKS * tick:g}s (2.5 heartbeat intervals)")
    return tick, election_ticks, HEARTBEAT_TICKS


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


WEB_FLAGS = {"protect_metrics": "protect_metrics", "web_access_log": "access_log"}
"""Option keys of the web port's on/off options -> their WebOptions fields."""


def _web_overrides(web, options, given=frozenset(), label="--web-host"):
    """``--web-host`` (replaces the file's ``web_hosts``) and the WEB_FLAGS
    (``--protect-metrics``, ``--web-access-log``): a flag given true, or
    named in ``given`` (set explicitly: its value, even false)."""
    try:
        if options.get("web_host"):
            web = attrs.evolve(web, hosts=options["web_host"])
    except WebOptionError as e:
        raise ConfigError(f"{label}: {e}") from None
    for key, field in WEB_FLAGS.items():
        if key in given or options.get(key):
            web = attrs.evolve(web, **{field: bool(options.get(key))})
    return web


# -- the environment ------------------------------------------------------------------------

ENV_PREFIX = "DOOZER_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
PARAM, FLAG, LIST = "param", "flag", "list"

# where each option lives in the cluster file, if it does ("nodes.<name>." keys
# are per node); doozertw.tap checks that every option is listed here
YAML_KEYS: dict[str, str | None] = {
    "name": None, "config": None, "peers": None, "attach": None,
    "silent-voter-timeout": None, "in-memory": None, "print-config": None,
    "listen": "nodes.<name>.listen", "web": "nodes.<name>.web",
    "peer-listen": "nodes.<name>.peer_listen", "advertise": "nodes.<name>.advertise",
    "peer-advertise": "nodes.<name>.peer_advertise",
    "data-dir": "data_dir, nodes.<name>.data_dir",
    "cluster": "cluster", "history": "history", "history-bytes": "history_bytes",
    "quorum-timeout": "quorum_timeout", "snapshot-entries": "snapshot_entries",
    "heartbeat-interval": "heartbeat_interval", "election-timeout": "election_timeout",
    "peer-secret-file": "peer_secret_file", "peer-cert": "peer_cert",
    "peer-key": "peer_key", "peer-ca": "peer_ca", "client-ca": "client_ca",
    "insecure-peers": "insecure_peers", "protect-metrics": "protect_metrics",
    "web-access-log": "web_access_log",
    "lease-reads": "lease_reads",
    "web-host": "web_hosts", "log-level": "log_level", "log-format": "log_format",
}

# variables that are not options but are read by the node or by the clients
OTHER_VARIABLES = frozenset({
    "DOOZER_RWSECRET", "DOOZER_ROSECRET", "DOOZER_RWSECRET_FILE", "DOOZER_ROSECRET_FILE",
    "DOOZER_URI", "DOOZER_BOOT_URI", "DOOZER_TLS_CA", "DOOZER_TLS_CERT", "DOOZER_TLS_KEY",
    "DOOZER_MUTATION", "DOOZER_VERBS",
    # build-time names of the container files (Dockerfile, compose.yaml, scripts)
    "DOOZER_IMAGE", "DOOZER_BASE_IMAGE", "DOOZER_CHECK_IMAGE"})


@attrs.frozen
class OptionSpec:
    """One ``twistd doozer`` option as the environment and the docs see it:
    ``name`` (``peer-listen``), ``kind`` (PARAM, FLAG or LIST: repeatable),
    ``coerce`` (int, float or None: text), ``env`` (``DOOZER_PEER_LISTEN``,
    None for actions such as --print-config), its ``yaml`` key (or None),
    and the ``default`` and ``meaning`` the docs show."""

    name: str
    kind: str = PARAM
    coerce: Callable | None = None
    env: str | None = None
    yaml: str | None = None
    default: str = "none"
    meaning: str = ""
    short: str | None = None

    @property
    def key(self) -> str:
        """The key of the option in ``resolve``'s options (``peer_listen``)."""
        return self.name.replace("-", "_")


def env_name(option: str) -> str:
    """``peer-listen`` -> ``DOOZER_PEER_LISTEN``."""
    return ENV_PREFIX + option.upper().replace("-", "_")


def from_environment(specs, environ: Mapping[str, str]) -> dict:
    """{option key: value} of the options set in ``environ`` (an empty
    variable counts as unset); ConfigError (one line naming the variable)
    for a value that does not parse. Flags take 1/true/yes/on or
    0/false/no/off (any case); LIST options a comma-separated list."""
    found = {}
    for spec in specs:
        raw = environ.get(spec.env or "")
        if spec.env is None or raw is None or raw.strip() == "":
            continue
        found[spec.key] = _env_value(spec, raw.strip())
    return found


def _env_value(spec, raw):
    if spec.kind == FLAG:
        word = raw.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(f"environment: {spec.env}={raw!r}: use 1/true/yes/on or "
                          "0/false/no/off")
    if spec.kind == LIST:
        return [raw]
    if spec.coerce is None:
        return raw
    try:
        return spec.coerce(raw)
    except ValueError:
        kind = "an integer" if spec.coerce is int else "a number"
        raise ConfigError(f"environment: {spec.env}={raw!r}: not {kind}") from None


def layered(specs, given: Mapping, environ: Mapping[str, str]) -> tuple[dict, dict]:
    """(options, origins): the command line's ``given`` (option key ->
    value; None, or a false flag or empty list, when not given) over the
    environment.
    ``origins[key]`` is "flag" or the variable's name for every key set."""
    unset_when_falsy = {spec.key for spec in specs if spec.kind in (FLAG, LIST)}
    options = {key: (None if key in unset_when_falsy and not value else value)
               for key, value in given.items()}
    origins = {key: "flag" for key, value in options.items() if value is not None}
    for key, value in from_environment(specs, environ).items():
        if options.get(key) is None:
            options[key] = value
            origins[key] = next(s.env for s in specs if s.key == key)
    return options, origins


def unknown_variables(specs, environ: Mapping[str, str]) -> list[str]:
    """DOOZER_* variables in ``environ`` that are neither an option's nor
    one of OTHER_VARIABLES (most likely a typo), sorted."""
    known = {spec.env for spec in specs if spec.env} | OTHER_VARIABLES
    return sorted(name for name in environ
                  if name.startswith(ENV_PREFIX) and name not in known)


def env_secret(environ: Mapping[str, str], name: str) -> bytes | None:
    """The secret in variable ``name``, or in the file named by
    ``name``_FILE (its content without the final line break; for
    container secrets); None if neither is set. ConfigError naming the
    variable, never the secret, if both are set or the file cannot be read
    or is empty."""
    value, path = environ.get(name) or None, environ.get(name + "_FILE") or None
    if value is not None and path is not None:
        raise ConfigError(f"environment: give {name} or {name}_FILE, not both")
    if path is None:
        return _secret(value)
    try:
        with open(path, "rb") as f:
            content = f.read(65537)
    except OSError as e:
        raise ConfigError(f"environment: {name}_FILE {path}: {e.strerror or e}") from None
    if len(content) > 65536:
        raise ConfigError(f"environment: {name}_FILE {path}: larger than 64 KiB")
    secret = content.rstrip(b"\r\n")
    if not secret:
        raise ConfigError(f"environment: {name}_FILE {path}: empty")
    return secret


def secret_source(environ: Mapping[str, str], name: str, file_value) -> str:
    """Where the secret of variable ``name`` comes from (for --print-config):
    ``env NAME``, ``env NAME_FILE``, ``file`` or ``default`` (unset)."""
    for variable in (name, name + "_FILE"):
        if environ.get(variable):
            return f"env {variable}"
    return "file" if file_value else "default"


def file_has(raw: Mapping, yaml_key: str | None, node: str) -> bool:
    """Does the cluster file's document ``raw`` set ``yaml_key`` (a
    YAML_KEYS value) for node ``node``?"""
    if not yaml_key or not isinstance(raw, Mapping):
        return False
    nodes = raw.get("nodes")
    nodes = nodes if isinstance(nodes, Mapping) else {}
    spec = nodes.get(node)
    spec = spec if isinstance(spec, Mapping) else {}
    for key in (k.strip() for k in yaml_key.split(",")):
        if key.startswith("nodes.<name>."):
            if key.split(".", 2)[2] in spec:
                return True
        elif key in raw:
            return True
    return False
