"""Three (then four) cluster nodes in one process over real TCP on loopback,
built exactly as twistd builds them (doozertw.tap.build)."""


import tempfile
import pytest_twisted
from twisted.internet import reactor

from doozertw import config, tap
from doozertw.client import DoozerClient
from doozertw.store import CLOBBER, Glob
from doozertw.testing.cluster_harness import write_peer_secret
from doozertw.testing.node_process import free_port
from doozertw.testing.polling import wait_until


def cluster_file(names):
    nodes = {}
    for name in names:
        nodes[name] = {"listen": f"tcp:{free_port()}:interface=127.0.0.1", "web": "none",
                       "peer_listen": f"tcp:{free_port()}:interface=127.0.0.1"}
    data_dir = tempfile.mkdtemp(prefix="doozer-tcp-")
    return config.parse({"cluster": "tcp-cluster", "nodes": nodes, "data_dir": data_dir,
                         "peer_secret_file": write_peer_secret(data_dir)})


def client_addr(node_config):
    return f"127.0.0.1:{node_config.listen.split(':')[1]}"


@pytest_twisted.ensureDeferred
async def test_three_nodes_over_tcp_then_attach_and_promote_a_fourth():
    cluster = cluster_file(["n1", "n2", "n3"])
    services, nodes = {}, {}
    clients = []
    try:
        for name, me in cluster.nodes.items():
            node, top = tap.build(cluster, me, reactor)
            top.startService()
            services[name], nodes[name] = top, node
        cluster_members = {n: list(s)[0] for n, s in services.items()}
        await wait_until(lambda: any(c.member.driver.is_leader for c in cluster_members.values())
                         and all(c.member.driver.leader for c in cluster_members.values()))
        leader = next(n for n, c in cluster_members.items() if c.member.driver.is_leader)
        follower = next(n for n in cluster_members if n != leader)
        other = next(n for n in cluster_members if n not in (leader, follower))

        # a client of a follower writes; a client of another node reads it at once
        writer = DoozerClient(client_addr(cluster.nodes[follower]), reactor=reactor)
        reader = DoozerClient(client_addr(cluster.nodes[other]), reactor=reactor)
        clients += [writer, reader]
        rev = await writer.set("/tcp/key", CLOBBER, b"value")
        assert await reader.get("/tcp/key") == (b"value", rev)
        assert await reader.rev() >= rev
        assert await reader.self_id() == other
        status = cluster_members[other].status()
        assert status["role"] == "follower" and set(status["peers"]) >= {leader, follower}

        # the /ctl tree describes every node
        await wait_until(lambda: len(nodes[other].store.files(Glob("/ctl/node/*/addr"))) == 3)
        assert (await reader.get(f"/ctl/node/{leader}/addr"))[0] == client_addr(
            cluster.nodes[leader]).encode()

        # n4 attaches through n1's client port and is promoted via /ctl/cal
        n4 = config.NodeConfig(
            name="n4", listen=f"tcp:{free_port()}:interface=127.0.0.1", web="none",
            peer_listen=f"tcp:{free_port()}:interface=127.0.0.1",
            attach=client_addr(cluster.nodes["n1"]))
        node4, top4 = tap.build(cluster, n4, reactor)
        top4.startService()
        services["n4"], nodes["n4"] = top4, node4
        n4_member = list(top4)[0].member
        await wait_until(lambda: n4_member.driver.started and n4_member.driver.is_member())
        assert n4_member.driver.member_id.startswith("n4~")
        assert await node4.get("/tcp/key") == (b"value", rev)
        await writer.set("/ctl/cal/3", 0, b"n4")
        leader_driver = cluster_members[leader].member.driver
        await wait_until(lambda: n4_member.driver.member_id in leader_driver.conf.voters)
        n4_client = DoozerClient(client_addr(n4), reactor=reactor)
        clients.append(n4_client)
        rev2 = await n4_client.set("/tcp/n4", CLOBBER, b"x")
        assert await reader.get("/tcp/n4") == (b"x", rev2)
    finally:
        for c in clients:
            c.close()
        for top in services.values():
            await top.stopService()
