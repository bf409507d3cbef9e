"""twistd integration: ``twistd -n doozer [options]``.

Options and configuration are resolved into attrs classes (doozertw.config);
makeService builds one Node and the services that expose it: the client
port (doozer protocol and text protocol on one port) and the web port.
"""

import os
import socket
import sys
import time

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from doozertw import __version__, config, shutdown
from doozertw.logging_setup import DEFAULT_FORMAT, DEFAULT_LEVEL
from doozertw.frontends.drain import DRAIN_GRACE, DrainingClientPortFactory
from doozertw.node import Node
from doozertw.store import Store
from doozertw.peer.resolver import install_daemon_resolver


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a doozertw node: a doozer-compatible, strongly consistent store. "
        "Addresses are Twisted endpoint strings, e.g. tcp:8046:interface=0.0.0.0. "
        "Every option can also be set as DOOZER_<OPTION> in the environment "
        "(DOOZER_PEER_LISTEN, DOOZER_IN_MEMORY=1); the command line wins over the "
        "environment, which wins over --config. Secrets come from DOOZER_RWSECRET / "
        "DOOZER_ROSECRET (or *_FILE: a file holding it) or the config file.")
    optParameters = [
        ["name", "n", None,
         "This node's id [default: the only node in --config, else n1]."],
        ["config", "c", None, "Cluster YAML file (see docs/configuration.md)."],
        ["listen", "l", None,
         f"Client port: doozer and text protocols [default: {config.DEFAULT_CLIENT}]."],
        ["web", "w", None,
         f"Web port (web view, HTTP API, metrics), or 'none' [default: {config.DEFAULT_WEB}]."],
        ["peer-listen", None, None,
         f"Peer port for cluster traffic [default: {config.DEFAULT_PEER}]."],
        ["advertise", None, None,
         "Client address published in /ctl/node/<id>/addr [default: the bound address]."],
        ["cluster", None, None, "Cluster name, written to /ctl/name (with --attach: "
         "the cluster's name if not given; another name is refused) [default: local]."],
        ["history", None, None, "Revisions of history kept for past reads and watches "
         "[default: 10000].", int],
        ["history-bytes", None, None, "Bytes of history kept at most [default: 64 MiB].", int],
        ["peer-advertise", None, None,
         "Peer address the other nodes dial to reach this one, published in "
         "/ctl/node/<id>/peer [default: this node's peer address in --config, "
         "else the bound peer port]."],
        ["peers", "p", None,
         "Other voters of the cluster: name=host:port,... (their peer ports)."],
        ["attach", "a", None,
         "Join the running cluster that has a member at this client address "
         "(host:port) as a learner."],
        ["silent-voter-timeout", None, None,
         "Demote a voter silent for this many seconds (see docs/cluster.md "
         "for the risk) [default: off].", float],
        ["quorum-timeout", None, None,
         "Seconds a write or linearizable read may wait for a quorum "
         f"[default: {config.DEFAULT_QUORUM_TIMEOUT:g}].", float],
        ["heartbeat-interval", None, None,
         "Seconds between the leader's heartbeats; a tick of the Raft clock is half "
         f"of it [default: {config.DEFAULT_HEARTBEAT_INTERVAL:g}].", float],
        ["election-timeout", None, None,
         "Seconds without a leader before a follower campaigns (randomized up to "
         "twice that); shorter fails over faster but risks elections on a busy "
         f"machine [default: {config.DEFAULT_ELECTION_TIMEOUT:g}].", float],
        ["data-dir", "d", None,
         "Directory of this node's write-ahead log and snapshots "
         f"[default: {config.DEFAULT_DATA_DIR}, relative to the working directory]."],
        ["snapshot-entries", None, None,
         "Snapshot the store and truncate the log every this many entries "
         f"[default: {config.DEFAULT_SNAPSHOT_ENTRIES}].", int],
        ["peer-secret-file", None, None,
         "File holding the cluster secret peers prove they know (docs/security.md)."],
        ["peer-cert", None, None, "This node's PEM certificate for mutual TLS between peers."],
        ["peer-key", None, None, "The PEM private key of --peer-cert."],
        ["peer-ca", None, None, "The cluster CA (PEM) peer certificates must be signed by."],
        ["client-ca", None, None,
         "Require client certificates signed by this CA (PEM) on the client port "
         "(an ssl: --listen); a verified certificate grants read-write without ACCESS."],
        ["log-level", None, None,
         "Log events at this level and above: DEBUG, INFO, WARN or ERROR "
         f"[default: {DEFAULT_LEVEL}]."],
        ["log-format", None, None,
         "text, or json: one JSON object per line for log shippers (on twistd's "
         f"--logfile, stdout by default) [default: {DEFAULT_FORMAT}]."],
    ]
    optFlags = [
        ["in-memory", None,
         "Keep no state on disk (doozerd's behaviour): a restarted node comes "
         "back empty; UNSAFE if a majority of the cluster restarts at once."],
        ["insecure-peers", None,
         "Accept unauthenticated peers (trusted networks only): anyone who can "
         "reach the peer port can then join, write and disrupt the cluster."],
        ["lease-reads", None,
         "The leader answers linearizable reads from a read lease, without a "
         "heartbeat round (every node of the cluster must agree; docs/cluster.md)."],
        ["protect-metrics", None,
         "/metrics and /health need the read secret (by default they are "
         "open, as Prometheus expects)."],
        ["web-access-log", None,
         "Log one line per web port request (twisted.web's combined log format, "
         "into the node's log); it costs more than the rest of a request's web work."],
        ["print-config", None,
         "Print the effective configuration and where each value comes from "
         "(flag, env, file, default), then exit; secrets are never printed."],
    ]

    def opt_web_host(self, value):
        self.setdefault("web-host", []).append(value)

    opt_web_host.__doc__ = (
        "A Host name the web port accepts besides its own address and localhost "
        "(NAME or NAME:PORT; repeatable or comma-separated; '*' accepts any Host: "
        "UNSAFE, it allows DNS rebinding).")

    def opt_timeout(self, value):
        """Deprecated: use --silent-voter-timeout."""
        self._deprecated("timeout", "silent-voter-timeout", value)

    def opt_request_timeout(self, value):
        """Deprecated: use --quorum-timeout."""
        self._deprecated("request-timeout", "quorum-timeout", value)

    def _deprecated(self, old, new, value):
        """Take ``--old value`` as ``--new value``, warning on stderr."""
        config.warn_deprecated(f"--{old}", f"--{new}")
        self[new] = value

    def opt_version(self):
        """Print the version and exit."""
        print(f"doozertw {__version__}")
        sys.exit(0)

    environ = None
    """The environment read for DOOZER_* (None: os.environ; tests set it)."""

    def postOptions(self):
        """Resolve the configuration (command line > environment > --config
        file > defaults) and check everything that can be checked before
        anything listens; a problem ends the process with one line on
        stderr (``doozer: ...``) and exit status 1. ``--print-config``
        prints the result and exits 0."""
        from doozertw.persist.errors import StorageError
        environ = os.environ if self.environ is None else self.environ
        try:
            specs = option_specs()
            options, origins = config.layered(
                specs, {key.replace("-", "_"): value for key, value in self.items()}, environ)
            _warn_unknown_variables(specs, environ)
            cluster, node = config.resolve(options, environ, origins)
            if options.get("print_config"):
                self._print_config(specs, options, origins, cluster, node, environ)
            self._logging(cluster)
            check_endpoints(node, origins)
            if node.attach:
                found = cluster_name_at(node.attach, cluster.secrets)
                cluster = config.attached_to(cluster, found, node.attach)
            from doozertw.peer.security import for_node
            for_node(cluster, node)  # refuse before opening storage
            if not node.in_memory:
                usable_directory(cluster.data_dir_of(node))
            self.storage = open_storage(cluster, node)
        except (OSError, config.ConfigError, StorageError) as e:
            raise SystemExit(f"doozer: {e}") from None
        self.cluster, self.node = cluster, node

    def _print_config(self, specs, options, origins, cluster, node, environ):
        """Print the effective configuration on stdout; exit 0."""
        from doozertw.config_print import effective, render
        raw = config.load_raw(options["config"]) if options.get("config") else {}
        rows = effective(specs, options, origins, cluster, node, raw, environ)
        sys.stdout.write(render(rows, node.name))
        sys.stdout.flush()
        raise SystemExit(0)

    def _logging(self, cluster):
        """Under twistd (``parent``: its options), log at the configured
        level and format (doozertw.logging_setup)."""
        parent = getattr(self, "parent", None)
        if parent is None:
            return
        from doozertw.logging_setup import LoggingError, install
        try:
            install(parent, cluster.log_level, cluster.log_format)
        except LoggingError as e:
            raise config.ConfigError(str(e)) from None


NO_ENV = ("print-config",)
"""Options that are actions: no environment variable."""


def option_specs() -> list[config.OptionSpec]:
    """Every ``twistd doozer`` option (but --version and the deprecated
    spellings) as the environment, --print-config and the docs see it."""
    specs = []
    parameters: list = Options.optParameters
    flags: list = Options.optFlags
    for name, short, _, doc, *coerce in parameters:
        specs.append(_spec(name, short, config.PARAM, coerce[0] if coerce else None, doc))
    for name, short, doc in flags:
        specs.append(_spec(name, short, config.FLAG, None, doc))
    specs.append(_spec("web-host", None, config.LIST, None, Options.opt_web_host.__doc__))
    return specs


def _spec(name, short, kind, coerce, doc):
    meaning, default = _split_default(" ".join(doc.split()))
    return config.OptionSpec(
        name, kind, coerce, env=None if name in NO_ENV else config.env_name(name),
        yaml=config.YAML_KEYS[name], short=short,
        default=default or ("off" if kind == config.FLAG else "none"), meaning=meaning)


def _split_default(doc):
    """(help without its ``[default: X]``, X or "")."""
    start = doc.find("[default: ")
    if start < 0:
        return doc, ""
    end = doc.find("]", start)
    return (doc[:start].rstrip() + doc[end + 1:]).strip(), doc[start + 10:end].strip()


def _warn_unknown_variables(specs, environ):
    """One warning line on stderr per DOOZER_* variable that is no option's."""
    for name in config.unknown_variables(specs, environ):
        sys.stderr.write(f"doozer: warning: {name} is not a doozer setting (ignored); "
                         "see twistd doozer --help\n")


def check_endpoints(me: config.NodeConfig, origins=None) -> None:
    """ConfigError naming the option (or, per ``origins``, the environment
    variable) whose endpoint string does not parse (an unknown type, a bad
    port, an ssl: certificate that cannot be read)."""
    from twisted.internet import reactor
    origins = origins or {}

    def label(key):
        origin = origins.get(key, "flag")
        return "--" + key.replace("_", "-") if origin == "flag" else origin
    described = [(label("listen"), me.listen), (label("peer_listen"), me.peer_listen)]
    if me.web != config.DISABLED:
        described.append((label("web"), me.web))
    for option, description in described:
        try:
            serverFromString(reactor, description)
        except Exception as e:  # endpoint parsers raise anything
            raise config.ConfigError(f"{option} {description!r}: {e}") from None


ATTACH_TIMEOUT = 5.0


NAME_POLL = 0.1
"""Seconds between reads of a /ctl/name that is not written yet."""


def await_cluster_name(read, timeout: float, clock=time.monotonic, sleep=time.sleep) -> str:
    """``read(seconds_left)`` again every NAME_POLL seconds until it gives a
    name or ``timeout`` seconds have passed (a node that has just started
    writes its /ctl/name once it leads); the last name read, "" if none."""
    deadline = clock() + timeout
    while True:
        name = read(max(deadline - clock(), NAME_POLL))
        if name or clock() + NAME_POLL > deadline:
            return name
        sleep(NAME_POLL)


def cluster_name_at(address: str, secrets, timeout: float = ATTACH_TIMEOUT) -> str:
    """The /ctl/name of the node whose client port is ``address``
    (host:port), read with a blocking client before the reactor runs,
    waiting up to ``timeout`` s for a node that has just started to write
    it; ConfigError if no doozer node answers there within ``timeout`` s;
    "" if the node there never names a cluster."""
    from doozertw.client.blocking import BlockingClient
    from doozertw.client.core import ConnectionLost, WaitTimeout, call
    from doozertw.errors import DoozerError
    where = f"--attach {address}"
    try:
        client = BlockingClient(address, secret=secrets.rw or secrets.ro,
                                connect_timeout=timeout, suspend_timeout=timeout)
    except ValueError as e:
        raise config.ConfigError(f"{where}: {e}") from None

    def read(left: float) -> str:
        value, _ = client.request(call("GET", path="/ctl/name"), timeout=left)
        return value.decode("utf-8", "replace")

    try:
        return await_cluster_name(read, timeout)
    except ConnectionLost:
        raise config.ConfigError(f"{where}: no node answers there") from None
    except WaitTimeout:
        raise config.ConfigError(
            f"{where}: no doozer answer within {timeout:g}s (give a member's "
            f"client port, not its web or peer port)") from None
    except DoozerError as e:
        raise config.ConfigError(f"{where}: cannot read /ctl/name: {e}") from None
    finally:
        client.close()


def open_storage(cluster, me, reactor=None):
    """The storage provider of node ``me``: its data directory (opened now,
    so a directory of another cluster or node, or in use, is refused
    before anything listens), or memory with ``--in-memory``."""
    from doozertw.cluster.storage import DiskProvider, MemoryProvider
    if me.in_memory:
        return MemoryProvider()
    if reactor is None:
        from twisted.internet import reactor
    provider = DiskProvider(cluster.data_dir_of(me), cluster.cluster, me.name, reactor)
    provider.existing()
    return provider


def usable_directory(path: str) -> None:
    """Create the data directory ``path`` if missing; ConfigError (one
    line) if that fails or this process cannot write in it."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise config.ConfigError(f"data directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise config.ConfigError(f"data directory {path}: not writable by this user")


class ListeningService(service.Service):
    """Listens on an endpoint string; ``port`` is set once listening.

    A failure to listen raises out of startService so twistd stops with the
    reason instead of running a node nobody can reach.
    """

    log = Logger()

    def __init__(self, description, factory, reactor=None, on_listening=None,
                 make_endpoint=None):
        """``make_endpoint(reactor, factory)`` -> (endpoint, factory) replaces
        ``serverFromString`` (doozertw.tlsutil.mutual_tls_endpoint)."""
        self._make_endpoint = make_endpoint
        self.description = description
        self.factory = factory
        self.port = None
        self._reactor = reactor
        self._on_listening = on_listening

    def startService(self):
        super().startService()
        from twisted.internet import reactor as global_reactor
        reactor = self._reactor or global_reactor
        if self._make_endpoint is not None:
            endpoint, factory = self._make_endpoint(reactor, self.factory)
        else:
            endpoint, factory = serverFromString(reactor, self.description), self.factory
        listening = endpoint.listen(factory)
        failures = []
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port):
        self.port = port
        self.log.info("listening on {description}", description=self.description)
        if self._on_listening is not None:
            self._on_listening(port)
        return port

    def stopService(self):
        super().stopService()
        if self.port is not None:
            return defer.maybeDeferred(self.port.stopListening)


def _address(port):
    host = port.getHost()
    address = getattr(host, "host", None)
    if address in (None, "0.0.0.0", "::"):
        address = socket.gethostname()
    return f"{address}:{host.port}" if hasattr(host, "port") else str(host)


def is_clustered(cluster, me):
    """True when this node runs Raft: it is one of several voters, attaches
    to a cluster, or keeps its state on disk (a durable single node is a
    cluster of one, which others may later join)."""
    return bool(me.attach) or len(cluster.nodes) > 1 or not me.in_memory


def build(cluster, me, reactor=None, storage=None, on_start_failure=None, on_serving=None,
          drain_grace=DRAIN_GRACE):
    """The node and a MultiService exposing it, as twistd runs it.

    One in-memory node alone commits writes locally; any other node runs
    doozertw.cluster with ``storage`` (a provider; default: opened from
    ``me``'s data directory, or memory with ``in_memory``);
    ``on_start_failure(reason)`` hears a cluster start that fails once the
    reactor runs (default: the reactor stops); ``on_serving(line)`` hears
    the serving line once the ports listen (systemd's READY=1).

    The services stop one after the other (StopInOrder): the web port stops
    listening, the client port stops listening and drains its connections
    (up to ``drain_grace`` seconds; doozertw.frontends.drain), and only then
    the cluster member hands over its leadership and stops, so that the
    writes in flight still find their quorum.
    """
    store = Store(history=cluster.history, history_bytes=cluster.history_bytes)
    top = shutdown.StopInOrder()
    if is_clustered(cluster, me):
        from doozertw.cluster.service import ClusterService
        from doozertw.peer.security import for_node
        security = for_node(cluster, me)
        if storage is None:
            storage = open_storage(cluster, me, reactor)
        voters = cluster.voters() or ({} if me.attach else {me.name: me.peer_listen})
        member = ClusterService(
            me.name, voters, me.peer_listen, store,
            cluster_name=cluster.cluster, limits=cluster.limits, reactor=reactor,
            silent_voter_timeout=me.silent_voter_timeout,
            quorum_timeout=cluster.quorum_timeout,
            attach=me.attach, secret=cluster.secrets.rw,
            peer_advertise=me.peer_advertise, storage_provider=storage,
            snapshot_entries=cluster.snapshot_entries, peer_security=security,
            lease_reads=cluster.lease_reads, monotonic=time.monotonic,
            raft_ticks=config.raft_ticks(cluster),
            on_start_failure=on_start_failure)
        member.setServiceParent(top)
        node = member.node

        def announce(port):
            member.set_client_addr(me.advertise or _address(port))
    else:
        node = Node(name=me.name, store=store, cluster_name=cluster.cluster,
                    limits=cluster.limits)

        def announce(port):
            node.describe_self(me.advertise or _address(port), voter_slot=0)

    serving = ServingLine(me, on_serving)
    client = DrainingListeningService(
        me.listen, DrainingClientPortFactory(node, cluster.secrets, cluster.limits, reactor,
                                             certificate_grants=bool(cluster.client_ca)),
        reactor, on_listening=lambda port: (announce(port), serving.client_at(port)),
        make_endpoint=_client_endpoint(cluster, me), grace=drain_grace)
    _warn_cleartext(cluster, me)
    client.setServiceParent(top)
    if me.web != config.DISABLED:
        from doozertw.frontends.web import make_web_site
        site = make_web_site(node, cluster.secrets, cluster.limits, reactor=reactor,
                             options=cluster.web)
        ListeningService(me.web, site, reactor,
                         on_listening=serving.web_at).setServiceParent(top)
    return node, top


class DrainingListeningService(ListeningService):
    """The client port: on stop it stops listening, then drains its
    connections for up to ``grace`` seconds (doozertw.frontends.drain)."""

    def __init__(self, *args, grace=DRAIN_GRACE, **kwargs):
        super().__init__(*args, **kwargs)
        self.grace = grace

    def stopService(self):
        d = defer.maybeDeferred(super().stopService)
        return d.addCallback(lambda _: self.factory.drain(self.grace))


class ServingLine:
    """Logs one line saying where node ``me`` serves (``node n1 serving:
    client port HOST:PORT (doozer and text protocols), web view
    http://HOST:PORT/``) once its client port and web port (unless
    ``none``) listen; ``line`` holds it afterwards, and ``on_serving(line)``
    hears it."""

    log = Logger()

    def __init__(self, me: config.NodeConfig, on_serving=None):
        self.me = me
        self._on_serving = on_serving
        self.client = None
        self.web = None if me.web != config.DISABLED else "off"
        self.line = None

    def client_at(self, port):
        self.client = _address(port)
        self._maybe_log()

    def web_at(self, port):
        scheme = "https" if self.me.web.startswith("ssl:") else "http"
        self.web = f"{scheme}://{_address(port)}/"
        self._maybe_log()

    def _maybe_log(self):
        if self.client is None or self.web is None or self.line is not None:
            return
        self.line = (f"node {self.me.name} serving: client port {self.client} (doozer and "
                     f"text protocols), web view {self.web}")
        self.log.info("{line}", line=self.line)
        if self._on_serving is not None:
            self._on_serving(self.line)


def _client_endpoint(cluster, me):
    """The client port's endpoint maker under ``--client-ca``, else None."""
    if not cluster.client_ca:
        return None
    from doozertw.tlsutil import mutual_tls_endpoint

    def make(reactor, factory):
        return mutual_tls_endpoint(reactor, me.listen, cluster.client_ca, factory)
    return make


def _warn_cleartext(cluster, me):
    """One warning line when secrets are set and the client or web port is
    plain TCP off loopback: a secret sent there would travel in clear."""
    if not cluster.secrets.enabled:
        return
    from doozertw.tlsutil import cleartext_exposure
    ports = [("client port", me.listen)]
    if me.web != config.DISABLED:
        ports.append(("web port", me.web))
    exposed = [f"{port} {description} ({why})" for port, description in ports
               if (why := cleartext_exposure(description)) is not None]
    if exposed:
        ListeningService.log.warn(
            "secrets are set but {exposed} listen on plain TCP off loopback: a "
            "secret would travel in clear; use ssl: endpoints (docs/security.md)",
            exposed=" and ".join(exposed))


class StartupGuard(service.MultiService):
    """The node's services under twistd: a failure to start them (a port in
    use, a data directory that cannot be used) is one line on stderr,
    ``doozer: cannot start: ...``, and exit status 1, not a traceback."""

    log = Logger()

    def __init__(self, stderr=None):
        super().__init__()
        self._stderr = stderr

    def startService(self):
        try:
            super().startService()
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            self.log.critical("cannot start: {reason}", reason=reason)
            self._say(reason)
            raise SystemExit(1) from None

    def failed_while_running(self, reason: str) -> None:
        """A start that failed once the reactor runs (an attaching node's
        peer port): the same one line, then exit status 1 at once."""
        self._say(reason)
        os._exit(1)

    def _say(self, reason: str) -> None:
        # twistd redirects sys.stderr into the log: the terminal is __stderr__
        stderr = self._stderr or sys.__stderr__ or sys.stderr
        stderr.write(f"doozer: cannot start: {reason}\n")
        stderr.flush()


def makeService(options):
    """The node's services under a StartupGuard, with systemd notification
    (doozertw.sdnotify; nothing without NOTIFY_SOCKET) and a clean exit
    (status 0) on SIGTERM and SIGINT once they stopped."""
    from doozertw.sdnotify import Notifier, NotifyService
    guard = StartupGuard()
    notify = NotifyService(Notifier())
    _, top = build(options.cluster, options.node, storage=options.storage,
                   on_start_failure=guard.failed_while_running, on_serving=notify.serving)
    top.setServiceParent(guard)
    notify.setServiceParent(guard)  # last: stopped first, so STOPPING=1 comes first
    from twisted.internet import reactor
    # host name lookups on daemon threads: one blocked on an unreachable DNS
    # server must not hold up the exit (doozertw/peer/resolver.py)
    install_daemon_resolver(reactor)
    reactor.callWhenRunning(shutdown.stop_cleanly_on_signals, reactor)
    return guard
