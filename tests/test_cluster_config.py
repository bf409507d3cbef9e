"""Cluster options: --peers, --attach, the timeouts, YAML, and how tap chooses a mode."""

import pytest
import yaml
from twisted.internet.testing import MemoryReactorClock

from doozertw import config, tap
from doozertw.cluster.service import ClusterService, dial_endpoint
from doozertw.node import LocalProposer


def options(**kw):
    base = {"config": None, "name": None, "listen": None, "web": None, "peer_listen": None,
            "data_dir": None, "in_memory": False, "snapshot_entries": None,
            "advertise": None, "cluster": None, "history": None, "history_bytes": None,
            "peer_advertise": None,
            "peers": None, "attach": None, "silent_voter_timeout": None,
            "quorum_timeout": None}
    base.update(kw)
    return base


def test_peers_option_describes_the_voters():
    cluster, me = config.resolve(options(name="n1", peers="n2=10.0.0.2:7046,n3=h3:7047",
                                         peer_listen="tcp:7046:interface=10.0.0.1"))
    assert me.name == "n1"
    assert cluster.voters() == {"n1": "tcp:7046:interface=10.0.0.1",
                                "n2": "10.0.0.2:7046", "n3": "h3:7047"}
    assert tap.is_clustered(cluster, me)


@pytest.mark.parametrize("bad", ["n2", "n2=", "=h:1", "n~2=h:1"])
def test_bad_peers_are_refused(bad):
    with pytest.raises(config.ConfigError):
        config.resolve(options(name="n1", peers=bad))


def test_attach_silent_voter_timeout_and_quorum_timeout():
    cluster, me = config.resolve(options(name="n4", attach="127.0.0.1:8046",
                                         silent_voter_timeout=30.0, quorum_timeout=2.5))
    assert me.attach == "127.0.0.1:8046" and me.silent_voter_timeout == 30.0
    assert cluster.quorum_timeout == 2.5
    assert tap.is_clustered(cluster, me)
    with pytest.raises(config.ConfigError, match="--silent-voter-timeout must be positive"):
        config.resolve(options(name="n4", silent_voter_timeout=-1))
    with pytest.raises(config.ConfigError, match="--quorum-timeout must be positive"):
        config.resolve(options(name="n4", quorum_timeout=0))


def test_yaml_quorum_timeout_and_single_in_memory_node_stays_local(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("quorum_timeout: 3\nnodes:\n  solo:\n    listen: tcp:0\n")
    cluster, me = config.resolve(options(config=str(path), in_memory=True))
    assert cluster.quorum_timeout == 3.0
    assert not tap.is_clustered(cluster, me)
    node, _ = tap.build(cluster, me, MemoryReactorClock())
    assert isinstance(node.proposer, LocalProposer)


def test_a_durable_single_node_is_a_cluster_of_one(tmp_path):
    cluster, me = config.resolve(options(name="solo", data_dir=str(tmp_path / "d")))
    assert tap.is_clustered(cluster, me) and cluster.data_dir_of(me) == str(tmp_path / "d")
    node, top = tap.build(cluster, me, MemoryReactorClock())
    assert list(top)[0].member.voters == {"solo"}
    assert not (tmp_path / "d").exists()  # created when Raft starts


def test_data_dir_templates_and_options(tmp_path):
    cluster = config.parse({"data_dir": "/var/lib/doozer", "snapshot_entries": 50,
                            "nodes": {"n1": {}, "n2": {"data_dir": "/srv/n2"}}})
    assert cluster.data_dir_of(cluster.nodes["n1"]) == "/var/lib/doozer/n1"
    assert cluster.data_dir_of(cluster.nodes["n2"]) == "/srv/n2"
    assert cluster.snapshot_entries == 50
    cluster = config.parse({"data_dir": "/d/{name}.db"})
    _, me = config.resolve(options(name="x"))
    assert cluster.data_dir_of(me) == "/d/x.db"
    assert config.ClusterConfig().data_dir_of(me) == "doozer-data/x"
    with pytest.raises(config.ConfigError):
        config.resolve(options(name="x", in_memory=True, data_dir="/d"))
    with pytest.raises(config.ConfigError):
        config.parse({"snapshot_entries": 0})


def secret_file(tmp_path):
    path = tmp_path / "peer-secret"
    path.write_text("s3cret-" * 8)
    return str(path)


def test_cluster_file_builds_a_cluster_node(tmp_path):
    cluster = config.parse({"cluster": "c", "data_dir": str(tmp_path),
                            "peer_secret_file": secret_file(tmp_path), "nodes": {
        name: {"listen": f"tcp:{8046 + i}:interface=127.0.0.1", "web": "none",
               "peer_listen": f"tcp:{7046 + i}:interface=127.0.0.1"}
        for i, name in enumerate(["n1", "n2", "n3"])}})
    node, top = tap.build(cluster, cluster.nodes["n2"], MemoryReactorClock())
    services = list(top)
    assert isinstance(services[0], ClusterService)
    assert services[0].voter_endpoints == {"n1": "tcp:host=127.0.0.1:port=7046",
                                           "n3": "tcp:host=127.0.0.1:port=7048"}
    assert services[0].member.peer_addr == "tcp:host=127.0.0.1:port=7047"
    assert node.read_barrier is services[0].member.reads


@pytest.mark.parametrize("given,expected", [
    ("10.0.0.1:7046", "tcp:host=10.0.0.1:port=7046"),
    ("tcp:7046:interface=10.0.0.2", "tcp:host=10.0.0.2:port=7046"),
    ("tcp:port=7046:interface=10.0.0.3", "tcp:host=10.0.0.3:port=7046"),
    ("tcp:host=a:port=1", "tcp:host=a:port=1"),
])
def test_dial_endpoint(given, expected):
    assert dial_endpoint(given) == expected


def test_dial_endpoint_rejects_nonsense():
    with pytest.raises(ValueError):
        dial_endpoint("nonsense")


def test_peer_advertise_and_a_private_peer_port(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path),
                                    "peer_secret_file": secret_file(tmp_path), "nodes": {
        name: {"listen": f"tcp:{8046 + i}:interface=127.0.0.1", "web": "none",
               "peer_listen": f"tcp:{7046 + i}:interface=127.0.0.1"}
        for i, name in enumerate(["n1", "n2", "n3"])}}))
    reactor = MemoryReactorClock()
    # listening elsewhere (behind a proxy), a node advertises the file's address
    cluster, me = config.resolve(options(config=str(path), name="n1",
                                         peer_listen="tcp:9999:interface=127.0.0.1"))
    assert me.peer_listen == "tcp:9999:interface=127.0.0.1"
    _, top = tap.build(cluster, me, reactor)
    assert list(top)[0].member.peer_addr == "tcp:host=127.0.0.1:port=7046"
    assert list(top)[0].peer_listen == "tcp:9999:interface=127.0.0.1"
    # or what --peer-advertise says
    cluster, me = config.resolve(options(config=str(path), name="n1",
                                         peer_advertise="tcp:7777:interface=127.0.0.2"))
    _, top = tap.build(cluster, me, reactor)
    assert list(top)[0].member.peer_addr == "tcp:host=127.0.0.2:port=7777"


def test_a_peer_payload_that_does_not_decode_drops_that_peers_link(tmp_path):
    cluster = config.parse({"cluster": "c", "data_dir": str(tmp_path),
                            "peer_secret_file": secret_file(tmp_path), "nodes": {
        name: {"listen": f"tcp:{8046 + i}:interface=127.0.0.1", "web": "none",
               "peer_listen": f"tcp:{7046 + i}:interface=127.0.0.1"}
        for i, name in enumerate(["n1", "n2", "n3"])}})
    _, top = tap.build(cluster, cluster.nodes["n1"], MemoryReactorClock())
    service = list(top)[0]
    dropped = []

    class Transport:
        def drop_inbound(self, name):
            dropped.append(name)

    service.transport = Transport()
    service._receive("n2", b"R\xff\xff\xff")  # a Raft layer byte, then garbage
    assert dropped == ["n2"]
    service._receive("n3", b"A\x00" + b"\x00" * 4)  # a truncated Probe
    assert dropped == ["n2", "n3"]
