"""Real ``twistd doozer`` processes that cannot start, and ``--attach``.

Every startup failure (a bad config file, a bad endpoint, a port in use, a
data directory that cannot be used, an --attach address that is no
member's client port, a cluster of another name) ends the process with a
non-zero status and ONE line on stderr, never a traceback. A node that
attaches without ``--cluster`` takes the cluster's name and leaves
/ctl/name as it was.
"""

import socket
import subprocess
import time

import pytest

from doozertw.client.blocking import BlockingClient
from doozertw.testing.node_process import endpoint, free_ports
from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import listening, start_twistd, twistd_command

pytestmark = pytest.mark.e2e


def fails_to_start(options, cwd):
    """(exit status, stderr) of a node that must stop on its own."""
    done = subprocess.run(twistd_command(options), cwd=cwd, env=child_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doozer: "), done.stderr
    return done.returncode, lines[0]


def until(predicate, node, timeout=30.0):
    """Poll ``predicate`` until true; fail with ``node``'s log after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, node.log_text()[-3000:]
        time.sleep(0.05)


def alone(port_a, port_b):
    return ["--in-memory", "--listen", endpoint(port_a), "--web", endpoint(port_b)]


def test_a_config_file_that_is_not_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("nodes: [1\n")
    _, line = fails_to_start(["--config", "bad.yaml"], tmp_path)
    assert "bad.yaml: not valid YAML" in line


def test_a_config_file_with_an_unknown_key(tmp_path):
    (tmp_path / "c.yaml").write_text("clustr: prod\n")
    _, line = fails_to_start(["--config", "c.yaml"], tmp_path)
    assert "unknown keys ['clustr']" in line


def test_a_missing_config_file(tmp_path):
    _, line = fails_to_start(["--config", "nope.yaml"], tmp_path)
    assert line == "doozer: nope.yaml: No such file or directory"


def test_an_endpoint_that_does_not_parse(tmp_path):
    _, line = fails_to_start(["--in-memory", "--listen", "bogus:1", "--web", "none"],
                             tmp_path)
    assert line == "doozer: --listen 'bogus:1': Unknown endpoint type: 'bogus'"


def test_a_client_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web, = free_ports(1)
        _, line = fails_to_start(alone(taken.getsockname()[1], web), tmp_path)
    assert "cannot start" in line and "Address already in use" in line


def test_a_peer_port_in_use_on_a_durable_node(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        client, = free_ports(1)
        _, line = fails_to_start(
            ["--data-dir", "d", "--listen", endpoint(client), "--web", "none",
             "--peer-listen", endpoint(taken.getsockname()[1])], tmp_path)
    assert "Address already in use" in line


def test_a_data_directory_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    client, web = free_ports(2)
    _, line = fails_to_start(["--data-dir", "afile/n1", "--listen", endpoint(client),
                              "--web", endpoint(web)], tmp_path)
    assert line == "doozer: data directory afile/n1: Not a directory"


# -- --attach ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    """A durable one-node cluster named ``prod`` with a peer secret."""
    directory = tmp_path_factory.mktemp("prod")
    (directory / "secret").write_text("s" * 44 + "\n")
    (directory / "secret").chmod(0o600)
    client, web, peer = free_ports(3)
    node = start_twistd(
        ["--name", "n1", "--cluster", "prod", "--data-dir", "data/n1",
         "--listen", endpoint(client), "--web", endpoint(web), "--peer-listen", endpoint(peer),
         "--peer-secret-file", "secret"], directory, listening(client), name="n1")
    with BlockingClient(f"127.0.0.1:{client}") as c:
        until(lambda: c.get("/ctl/name")[0] == b"prod", node)
    yield directory, client, web
    node.stop()


def attacher(name, address, *extra):
    client, web, peer = free_ports(3)
    return client, ["--name", name, "--data-dir", f"data/{name}", "--listen", endpoint(client),
                    "--web", endpoint(web), "--peer-listen", endpoint(peer),
                    "--peer-secret-file", "secret", "--attach", address, *extra]


def test_attach_to_a_web_port_is_one_clear_line(prod):
    directory, _, web = prod
    _, options = attacher("n8", f"127.0.0.1:{web}")
    _, line = fails_to_start(options, directory)
    assert f"--attach 127.0.0.1:{web}: no doozer answer" in line


def test_attach_to_a_node_of_another_cluster_is_refused(prod):
    directory, client, _ = prod
    _, options = attacher("n9", f"127.0.0.1:{client}", "--cluster", "staging")
    _, line = fails_to_start(options, directory)
    assert line == (f"doozer: --attach 127.0.0.1:{client}: that node is in cluster "
                    f"'prod', this one is configured for cluster 'staging'")


def test_attach_without_a_name_learns_it_and_keeps_ctl_name(prod):
    directory, client, _ = prod
    with BlockingClient(f"127.0.0.1:{client}") as c:
        before = c.get("/ctl/name")
    n2_client, options = attacher("n2", f"127.0.0.1:{client}")
    n2 = start_twistd(options, directory, listening(n2_client), name="n2")
    try:
        with BlockingClient(f"127.0.0.1:{n2_client}") as c:
            until(lambda: c.get("/ctl/node/n2/addr")[1], n2)  # n2 described itself
            assert c.get("/ctl/name") == before
            assert c.get("/ctl/node/n2/member")[0].startswith(b"n2~")
    finally:
        n2.stop()


def test_an_attaching_node_whose_peer_port_is_in_use(prod):
    directory, client, _ = prod
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _, options = attacher("n7", f"127.0.0.1:{client}")
        at = options.index("--peer-listen") + 1
        options[at] = endpoint(taken.getsockname()[1])
        _, line = fails_to_start(options, directory)
    assert line.startswith("doozer: cannot start: ") and "Address already in use" in line
