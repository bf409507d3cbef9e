"""Startup checks without processes: the cluster name an attaching node
takes, config errors as one line, and StartupGuard (the real processes are
in test_startup_failures.py)."""

import io

import pytest
from twisted.application import service
from twisted.internet.address import IPv4Address

from doozertw import config, tap


def options(**kw):
    base = {"config": None, "name": None, "cluster": None, "attach": None}
    base.update(kw)
    return base


def test_the_cluster_name_is_given_by_the_file_or_the_option(tmp_path):
    assert not config.resolve(options(), environ={})[0].cluster_given
    assert config.resolve(options(cluster="prod"), environ={})[0].cluster_given
    path = tmp_path / "c.yaml"
    path.write_text("cluster: prod\n")
    cluster, _ = config.resolve(options(config=str(path)), environ={})
    assert (cluster.cluster, cluster.cluster_given) == ("prod", True)
    path.write_text("history: 10\n")
    cluster, _ = config.resolve(options(config=str(path)), environ={})
    assert (cluster.cluster, cluster.cluster_given) == ("local", False)


def test_an_attaching_node_without_a_name_takes_the_clusters():
    cluster, _ = config.resolve(options(attach="h:1"), environ={})
    assert config.attached_to(cluster, "prod", "h:1").cluster == "prod"


def test_an_attaching_node_of_another_cluster_is_refused():
    cluster, _ = config.resolve(options(attach="h:1", cluster="staging"), environ={})
    with pytest.raises(config.ConfigError, match="in cluster 'prod', this one is "
                                                 "configured for cluster 'staging'"):
        config.attached_to(cluster, "prod", "h:1")
    assert config.attached_to(cluster, "staging", "h:1") == cluster


def test_attaching_to_a_node_without_a_cluster_name_is_refused():
    cluster, _ = config.resolve(options(attach="h:1"), environ={})
    with pytest.raises(config.ConfigError, match="has no /ctl/name"):
        config.attached_to(cluster, "", "h:1")


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_an_attaching_node_waits_for_a_just_started_node_to_write_its_name():
    t = FakeTime()
    answers = iter(["", "", "prod"])
    lefts = []

    def read(left):
        lefts.append(left)
        return next(answers)

    assert tap.await_cluster_name(read, 5.0, t.clock, t.sleep) == "prod"
    assert t.now == pytest.approx(100.0 + 2 * tap.NAME_POLL)
    assert lefts[0] == pytest.approx(5.0) and lefts[-1] == pytest.approx(5.0 - 2 * tap.NAME_POLL)


def test_an_attaching_node_gives_up_on_a_node_that_never_names_a_cluster():
    t = FakeTime()
    reads = []
    assert tap.await_cluster_name(lambda left: reads.append(left) or "", 1.0,
                                  t.clock, t.sleep) == ""
    assert 100.0 + 0.9 <= t.now <= 100.0 + 1.0 + 1e-9   # never sleeps past the deadline
    assert 10 <= len(reads) <= 11 and min(reads) >= tap.NAME_POLL


def test_a_yaml_syntax_error_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("nodes: [1\n")
    with pytest.raises(config.ConfigError, match="bad.yaml: not valid YAML") as info:
        config.load(str(path))
    assert "\n" not in str(info.value)


def test_endpoints_that_do_not_parse_name_their_option():
    me = config.NodeConfig(name="n1", web="nope:1")
    with pytest.raises(config.ConfigError, match="^--web 'nope:1': Unknown endpoint"):
        tap.check_endpoints(me)
    tap.check_endpoints(config.NodeConfig(name="n1", web=config.DISABLED))


def test_a_data_directory_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(config.ConfigError, match="data directory .*: Not a directory"):
        tap.usable_directory(str(tmp_path / "file" / "n1"))
    tap.usable_directory(str(tmp_path / "d" / "n1"))
    assert (tmp_path / "d" / "n1").is_dir()


class Refuses(service.Service):
    def startService(self):
        raise OSError("Couldn't listen on 127.0.0.1:1:\n  [Errno 98] Address already in use.")


def test_startup_guard_turns_a_failure_into_one_line_and_status_1():
    stderr = io.StringIO()
    guard = tap.StartupGuard(stderr=stderr)
    Refuses().setServiceParent(guard)
    with pytest.raises(SystemExit) as info:
        guard.startService()
    assert info.value.code == 1
    assert stderr.getvalue() == ("doozer: cannot start: Couldn't listen on 127.0.0.1:1: "
                                 "[Errno 98] Address already in use.\n")


class Bound:
    """A listening port as ListeningService reports it."""

    def __init__(self, port):
        self.port = port

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", self.port)


def test_a_node_says_where_it_serves_once_every_port_listens():
    serving = tap.ServingLine(config.NodeConfig(name="n1"))
    serving.web_at(Bound(8000))
    assert serving.line is None
    serving.client_at(Bound(8046))
    assert serving.line == ("node n1 serving: client port 127.0.0.1:8046 (doozer and text "
                            "protocols), web view http://127.0.0.1:8000/")


def test_without_a_web_port_the_line_says_so():
    serving = tap.ServingLine(config.NodeConfig(name="n2", web=config.DISABLED))
    serving.client_at(Bound(8047))
    assert serving.line.endswith("client port 127.0.0.1:8047 (doozer and text protocols), "
                                 "web view off")


def _cluster_service(reactor, **kw):
    from doozertw.cluster.service import ClusterService
    from doozertw.cluster.storage import MemoryProvider
    from doozertw.store import Store
    return ClusterService("n1", {"n1": "tcp:127.0.0.1:1"}, "tcp:127.0.0.1:1", Store(),
                          reactor=reactor, storage_provider=MemoryProvider(), **kw)


def test_a_start_failure_while_running_goes_to_on_start_failure_as_one_line():
    from twisted.python.failure import Failure
    from twisted.internet.testing import MemoryReactorClock
    heard = []
    svc = _cluster_service(MemoryReactorClock(), on_start_failure=heard.append)
    svc._failed(Failure(OSError("Couldn't listen on 127.0.0.1:1:\n  in use.")))
    assert heard == ["Couldn't listen on 127.0.0.1:1: in use."]


def test_without_on_start_failure_a_start_failure_stops_the_running_reactor():
    from twisted.python.failure import Failure
    from twisted.internet.testing import MemoryReactorClock
    reactor = MemoryReactorClock()
    reactor.running = True
    stopped = []
    reactor.stop = lambda: stopped.append(True)
    _cluster_service(reactor)._failed(Failure(OSError("in use")))
    assert stopped == [True]


def test_twistd_exits_at_once_with_one_line_when_the_start_fails_while_running(monkeypatch):
    exits = []
    monkeypatch.setattr(tap.os, "_exit", exits.append)
    err = io.StringIO()
    tap.StartupGuard(stderr=err).failed_while_running("peer port in use")
    assert (err.getvalue(), exits) == ("doozer: cannot start: peer port in use\n", [1])
