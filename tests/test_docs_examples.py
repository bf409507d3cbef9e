"""The examples of README.md and docs/*.md, run against real nodes.

Each example is extracted from the markdown (never copied here) and run
against a fresh ``twistd doozer`` process on free ports, with the doc's
``localhost:8046`` / ``localhost:8000`` replaced by that node's ports; the
output shown in the doc must be what the node answers:

- text-protocol sessions (a block whose first line is ``$ nc localhost
  8046``): each typed line is sent and the lines after it up to the next
  typed line must be the node's reply;
- recorded byte sessions (``C: b'...'`` / ``S: b'...'`` lines): each C is
  sent, and exactly the S bytes must come back;
- curl transcripts (lines starting ``curl``): each is run with the real
  ``curl``; a line that follows one and is not a command is its output;
- docs/client.md's Python and console examples (see test_client_docs.py,
  which runs the same examples against an in-process node);
- docs/cluster.md's cluster file, start commands and ``--attach`` command,
  run as shown on one host (the doc's ports mapped to free ones), and every
  cluster file of the docs through the config parser.

README's session is that of ``./run.sh``'s first start (a durable node);
the others say they run against a fresh ``--in-memory`` node.
"""

from __future__ import annotations

import ast
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from doozertw.client.blocking import BlockingClient
from doozertw.testing.node_process import endpoint, free_ports, twistd_path
from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import listening, start_twistd

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).parent.parent
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INDENTED = re.compile(r"(?:^\n)((?:^    .*\n)+)", re.M)
IDLE = 0.4


def doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    """Fenced blocks' bodies and indented blocks (dedented), in no order."""
    indented = ["".join(line[4:] + "\n" for line in block.splitlines())
                for block in INDENTED.findall(FENCE.sub("", text))]
    return FENCE.findall(text) + indented


def nc_sessions(text: str) -> list[list[str]]:
    return [block.splitlines()[1:] for block in code_blocks(text)
            if block.startswith("$ nc localhost 8046\n")]


def byte_sessions(text: str) -> list[list[tuple[str, bytes]]]:
    sessions = []
    for block in code_blocks(text):
        lines = [line for line in block.splitlines() if line[:3] in ("C: ", "S: ")]
        if lines:
            sessions.append([(line[0], ast.literal_eval(line[3:])) for line in lines])
    return sessions


def curl_transcripts(text: str) -> list[list[str]]:
    return [block.splitlines() for block in code_blocks(text)
            if block.startswith("curl ") and "localhost:8000" in block]


# -- nodes ------------------------------------------------------------------------------------


class Node:
    """A fresh node: its process, client and web ports."""

    def __init__(self, directory: pathlib.Path, durable: bool):
        self.client, self.web, peer = free_ports(3)
        store = ["--data-dir", "data/{name}", "--peer-listen", endpoint(peer)] if durable \
            else ["--in-memory"]
        self.process = start_twistd(
            ["--listen", endpoint(self.client), "--web", endpoint(self.web), *store],
            directory, listening(self.client), listening(self.web))
        with BlockingClient(f"127.0.0.1:{self.client}") as c:
            until(lambda: c.get("/ctl/leader")[0] and c.get("/ctl/node/n1/version")[0]
                  and (not durable or c.get("/ctl/node/n1/member")[0]), self)
            settled = c.rev()
            time.sleep(IDLE)
            assert c.rev() == settled, "the node's own /ctl writes did not settle"

    def localize(self, text: str) -> str:
        return (text.replace("localhost:8046", f"127.0.0.1:{self.client}")
                .replace("localhost 8046", f"127.0.0.1 {self.client}")
                .replace("localhost:8000", f"127.0.0.1:{self.web}")
                .replace("127.0.0.1:8046", f"127.0.0.1:{self.client}"))

    def stop(self) -> None:
        self.process.stop()


def until(predicate, node, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, node.process.log_text()[-3000:]
        time.sleep(0.05)


@pytest.fixture
def memory_node(tmp_path):
    node = Node(tmp_path, durable=False)
    yield node
    node.stop()


@pytest.fixture
def durable_node(tmp_path):
    node = Node(tmp_path, durable=True)
    yield node
    node.stop()


def read_idle(sock: socket.socket, idle: float = IDLE, want: int | None = None) -> bytes:
    """What arrives until ``want`` bytes did, or nothing more for ``idle`` s."""
    data = b""
    sock.settimeout(idle)
    while want is None or len(data) < want:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def replay_nc(node: Node, lines: list[str], sock: socket.socket | None = None):
    """Type each line of a terminal session; the lines after it must be the
    node's reply. Returns the open socket (a trailing WAIT may be pending)."""
    sock = sock or socket.create_connection(("127.0.0.1", node.client))
    i = 0
    while i < len(lines):
        sock.sendall(lines[i].encode() + b"\n")
        got = read_idle(sock).decode().replace("\r\n", "\n").splitlines()
        assert got == lines[i + 1:i + 1 + len(got)], f"after {lines[i]!r}"
        i += 1 + len(got)
    return sock


# -- README.md ---------------------------------------------------------------------------------


def test_readme_session_on_a_first_run_sh_start(durable_node):
    text = doc("README.md")
    (typed,) = nc_sessions(text)
    sock = replay_nc(durable_node, typed)
    assert typed[-1].startswith("wait "), "the session ends waiting"
    second = re.search(r"`(echo '[^`]*' \| nc -q1 localhost 8046)` answers `([^`]*)`", text)
    out = subprocess.run(durable_node.localize(second.group(1)), shell=True,
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == second.group(2)
    event = next(b for b in FENCE.findall(text) if b.startswith("OK EVENT"))
    assert read_idle(sock, want=len(event)).decode().replace("\r\n", "\n") == event
    sock.close()


def test_readme_curl_and_doozer_read_the_same_file(durable_node):
    text = doc("README.md")
    with BlockingClient(f"127.0.0.1:{durable_node.client}") as c:
        rev = c.set("/message", -1, b"hello, world")
    curl = re.search(r"`(curl localhost:8000/v1/keys/message)`", text).group(1)
    out = subprocess.run(durable_node.localize(curl), shell=True, capture_output=True,
                         text=True, timeout=10)
    assert f'"rev":{rev}' in out.stdout.replace(" ", "") and "hello, world" in out.stdout
    assert re.search(r"`doozer get /message`", text)
    doozer = shutil.which("doozer", path=str(pathlib.Path(sys.executable).parent))
    assert doozer, "the doozer command is not installed next to this Python"
    out = subprocess.run([doozer, "-a",
                          f"doozer:?ca=127.0.0.1:{durable_node.client}", "get", "/message"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout == b"hello, world"


# -- docs/protocol.md --------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(nc_sessions(doc("docs/protocol.md")))))
def test_protocol_terminal_sessions(memory_node, index):
    replay_nc(memory_node, nc_sessions(doc("docs/protocol.md"))[index]).close()


def test_protocol_recorded_session(memory_node):
    (steps,) = byte_sessions(doc("docs/protocol.md"))
    with socket.create_connection(("127.0.0.1", memory_node.client)) as sock:
        for (_, sent), (side, expected) in zip(steps[::2], steps[1::2]):
            assert side == "S"
            sock.sendall(sent)
            assert read_idle(sock, idle=2.0, want=len(expected)) == expected, sent


# -- docs/web.md -------------------------------------------------------------------------------


def curl(node: Node, command: str) -> str:
    out = subprocess.run(node.localize(command), shell=True, capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, (command, out.stderr)
    return out.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("index", range(len(curl_transcripts(doc("docs/web.md")))))
def test_web_curl_transcripts(memory_node, index):
    lines = curl_transcripts(doc("docs/web.md"))[index]
    for i, line in enumerate(lines):
        if not line.startswith("curl ") or " -N " in line:
            continue  # an output line, or a stream that never ends
        got = curl(memory_node, line.split("  #")[0])
        shown = lines[i + 1] if i + 1 < len(lines) else "curl "
        if not shown.startswith("curl "):
            assert got.strip() == shown, line


# -- docs/client.md ----------------------------------------------------------------------------


def test_client_console_session(memory_node):
    from test_client_docs import blocks, run_command, session
    uri = f"doozer:?ca=127.0.0.1:{memory_node.client}"
    for block in blocks("console"):
        status = 0
        for command, expected in session(block):
            status, got = run_command(command, uri, status)
            assert got == expected, f"$ {command}"


def test_client_python_examples(memory_node):
    from test_client_docs import blocks
    python = [b for b in blocks("python") if "def main()" in b]  # the blocking ones
    assert python
    for index, source in enumerate(python):
        namespace = {"__name__": "doc_example"}
        exec(compile(memory_node.localize(source), f"docs/client.md:python[{index}]", "exec"),
             namespace)
        namespace["main"]()


def test_client_twisted_example_as_a_script(memory_node, tmp_path):
    from test_client_docs import blocks
    (source,) = [b for b in blocks("python") if "react(" in b]
    script = tmp_path / "example.py"
    script.write_text(memory_node.localize(source))
    out = subprocess.run([sys.executable, str(script)], env=child_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# -- docs/cluster.md ---------------------------------------------------------------------------


def shell_lines(block: str) -> list[str]:
    """A command block's commands, continuation lines joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_cluster_file_start_and_attach_on_one_host(tmp_path):
    text = doc("docs/cluster.md")
    yaml_block = next(b for b in FENCE.findall(text) if b.startswith("# cluster.yaml"))
    blocks = code_blocks(text)
    start = shell_lines(next(b for b in blocks if b.startswith("head -c 32 /dev/urandom")))
    attach = shell_lines(next(b for b in blocks if "--attach 127.0.0.1:8046" in b))
    doc_ports = sorted({int(p) for p in re.findall(r"\b([78]0\d\d)\b",
                                                   yaml_block + " ".join(attach))})
    ports = dict(zip(doc_ports, free_ports(len(doc_ports))))

    def local(command: str) -> str:
        command = re.sub(r"\b([78]0\d\d)\b", lambda m: str(ports[int(m.group(1))]), command)
        return re.sub(r"^twistd ", f"exec {twistd_path()} ", command)

    (tmp_path / "cluster.yaml").write_text(local(yaml_block))
    subprocess.run(start[0], shell=True, cwd=tmp_path, check=True)
    processes = []

    def launch(command):
        processes.append(subprocess.Popen(
            local(command), shell=True, cwd=tmp_path, env=child_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

    def until_alive(predicate):
        deadline = time.monotonic() + 60
        while not predicate():
            assert all(p.poll() is None for p in processes), [p.poll() for p in processes]
            assert time.monotonic() < deadline
            time.sleep(0.1)

    try:
        for command in start[1:]:
            launch(command)
        until_alive(lambda: all(_serves(ports[p]) for p in (8046, 8047, 8048)))
        with BlockingClient(f"127.0.0.1:{ports[8046]}") as c:
            until_alive(lambda: c.get("/ctl/leader")[0])      # the cluster is founded
            for command in attach:
                launch(command)
            until_alive(lambda: c.get("/ctl/node/n4/member")[0])  # n4 joined as a learner
            assert c.get("/ctl/name")[0] == b"prod"
            assert sorted(c.getdir_all("/ctl/node")) == ["n1", "n2", "n3", "n4"]
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(timeout=20)


def _serves(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("name", ["docs/cluster.md", "docs/configuration.md",
                                  "docs/fire-drills.md", "docs/security.md"])
def test_cluster_files_in_the_docs_are_accepted(name):
    import yaml
    from doozertw import config
    files = [b for b in re.findall(r"^```yaml\n(.*?)^```", doc(name), re.S | re.M)
             if "nodes:" in b and "\n  ...\n" not in b]
    assert files or name == "docs/security.md"
    for body in files:
        assert config.parse(yaml.safe_load(body), source=name).nodes
