"""Three real ``twistd doozer`` processes from this checkout, one YAML file:
kill -9 the leader, writes resume; restart it without state, it rejoins as a
learner and is promoted back. Run with ``-m slow``."""

import time

import pytest
import yaml

from doozertw.client import BlockingClient
from doozertw.errors import DoozerError
from doozertw.testing.node_process import free_ports
from doozertw.testing.spawn import Twistd

pytestmark = pytest.mark.slow


class Proc:
    """One node of the cluster file, logging to ``<tmp>/<name>.log``."""

    def __init__(self, tmp, config, name):
        self.name = name
        self.node = Twistd(("--config", str(config), "--name", name), str(tmp), name).launch()

    def role(self):
        text = self.node.log_text()
        lines = [line for line in text.splitlines() if " is leader, " in line
                 or " is follower, " in line or " is candidate, " in line]
        return lines[-1].split(" is ")[1].split(",")[0] if lines else None

    def kill(self):
        self.node.kill()


def until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (DoozerError, OSError, ConnectionError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_kill_the_leader_and_restart_it(tmp_path):
    ports = {n: tuple(free_ports(2)) for n in ("n1", "n2", "n3")}
    config = tmp_path / "cluster.yaml"
    (tmp_path / "peer-secret").write_text("twistd-test-secret-" * 3)
    config.write_text(yaml.safe_dump({"cluster": "drill", "peer_secret_file": "peer-secret",
                                      "nodes": {
        n: {"listen": f"tcp:{c}:interface=127.0.0.1", "web": "none",
            "peer_listen": f"tcp:{p}:interface=127.0.0.1"} for n, (c, p) in ports.items()}}))
    procs = {n: Proc(tmp_path, config, n) for n in ports}
    clients = {n: BlockingClient(f"127.0.0.1:{c}") for n, (c, _) in ports.items()}
    try:
        leader = until(lambda: next((n for n, p in procs.items() if p.role() == "leader"), None))
        survivor = next(n for n in procs if n != leader)
        rev = until(lambda: clients[survivor].set("/drill", -1, b"before"))
        procs[leader].kill()
        started = time.monotonic()
        rev2 = until(lambda: clients[survivor].set("/drill", -1, b"after"))
        assert time.monotonic() - started < 2.0 + 0.5
        assert rev2 > rev
        procs[leader] = Proc(tmp_path, config, leader)
        reborn = BlockingClient(f"127.0.0.1:{ports[leader][0]}")
        clients["reborn"] = reborn
        assert until(lambda: reborn.get("/drill")) == (b"after", rev2)
        # it resumed from its data directory under its own member id
        assert f"resumed as {leader} from stored state" in procs[leader].node.log_text()
        assert clients[survivor].get(f"/ctl/node/{leader}/member")[0] == leader.encode()
        assert until(lambda: reborn.set("/drill", -1, b"again")) > rev2
    finally:
        for c in clients.values():
            c.close()
        for p in procs.values():
            p.node.stop()
