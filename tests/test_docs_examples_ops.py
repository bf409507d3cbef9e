"""The command examples of docs/operations.md and docs/security.md, run as
written against real nodes (the companion of test_docs_examples.py).

Each example is extracted from the markdown (never copied here) and run by
the shell in a fresh directory standing in for the checkout, with the
venv's ``twistd``/``doozer``/``python`` first on PATH (as after ``.
.venv/bin/activate``). Only ports are changed: the doc's ``8046``/``8000``
(and cluster.md's 7046.., 8001.., 8047..) become free ones. ``./run.sh
ARGS`` is run as what it executes once installed: ``twistd --nodaemon
--pidfile= doozer --data-dir <checkout>/doozer-data/{name} ARGS``.

- operations.md: ``doozer snapshot save`` (without and with the secret in
  ``-a``), the ``curl`` backup, ``doozer snapshot status`` (its output has
  the documented lines), the three ``restore`` commands, the cluster
  started on them and the step-5 checks, ``doozer recover`` (its output
  has the documented shape), the survivor alone, the ``mv`` + ``--attach``
  of n2 and its ``promote``;
- security.md: ``python -m doozertw.peer.certs`` (and adding ``n4`` with
  the same CA), a mutual-TLS cluster started with the documented command,
  the refusal of a node with peers and no authentication, and the client
  and web ports over TLS (``tls_ca``/``tls_name``, ``curl --cacert``).
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from doozertw.client.blocking import BlockingClient
from doozertw.testing.node_process import free_ports
from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import Twistd, listening, writable

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).parent.parent
BIN = os.path.dirname(sys.executable)
SECRET = "SECRET"  # the docs' placeholder, used as the node's read-write secret


def doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def code_paragraphs(text: str) -> list[str]:
    """Indented code paragraphs (top level or inside a list item), dedented."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [line for line in para.splitlines() if line.strip()]
        if lines and all(re.match(r" {4,}\S", line) for line in lines) \
                and not lines[0].lstrip().startswith(("-", "|")):
            out.append(textwrap.dedent(para).strip("\n"))
    return out


def paragraph(text: str, start: str) -> str:
    found = [p for p in code_paragraphs(text) if p.startswith(start)]
    assert found, f"no example starting {start!r}"
    return found[0]


def commands(block: str) -> list[str]:
    """A command block's commands, continuation lines joined."""
    return [" ".join(line.split()) for line in block.replace("\\\n", " ").splitlines()
            if line.strip()]


def env(uri: str | None = None) -> dict:
    e = child_env()
    e["PATH"] = BIN + os.pathsep + e.get("PATH", "")
    e.pop("DOOZER_URI", None)
    e.pop("DOOZER_RWSECRET", None)
    if uri:
        e["DOOZER_URI"] = uri
    return e


class Ports:
    """The doc's port numbers, each mapped to a free port on first use."""

    def __init__(self):
        self.map: dict[int, int] = {}

    def __getitem__(self, port: int) -> int:
        if port not in self.map:
            taken = set(self.map.values())
            self.map[port] = next(p for p in free_ports(8) if p not in taken)
        return self.map[port]

    def local(self, text: str) -> str:
        return re.sub(r"(?<![\w.\-/])([78]0[0-4]\d)\b", lambda m: str(self[int(m.group(1))]),
                      text)


def sh(command: str, cwd: pathlib.Path, ports: Ports, uri: str | None = None,
       ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(ports.local(command), shell=True, cwd=cwd, env=env(uri),
                         capture_output=True, text=True, timeout=60)
    if ok:
        assert out.returncode == 0, (command, out.stdout, out.stderr)
    return out


def run_sh(command: str, cwd: pathlib.Path, ports: Ports) -> Twistd:
    """``./run.sh ARGS`` as run.sh runs it once installed (not waiting)."""
    argv = shlex.split(ports.local(command))
    assert argv[0] == "./run.sh", command
    name = argv[argv.index("--name") + 1]
    node = Twistd(("--data-dir", str(cwd / "doozer-data" / "{name}"), *argv[1:]), str(cwd),
                  name, env())
    return node.launch()


def twistd(command: str, cwd: pathlib.Path, ports: Ports, name: str) -> Twistd:
    """A documented ``twistd -n ... doozer ARGS`` command (not waiting)."""
    argv = shlex.split(ports.local(command))
    assert argv[0] == "twistd" and "doozer" in argv, command
    return Twistd(tuple(argv[argv.index("doozer") + 1:]), str(cwd), name, env()).launch()


def until(predicate, nodes, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        for node in nodes:
            assert node.running(), node.log_text()[-3000:]
        assert time.monotonic() < deadline, "\n".join(n.log_text()[-2000:] for n in nodes)
        time.sleep(0.1)


def stop_all(nodes):
    for node in nodes:
        node.terminate()
    for node in nodes:
        node.reap(20)


def cluster_file(ports: Ports, *, secret: bool = True) -> str:
    """cluster.md's cluster file, ports mapped (without its peer_secret_file
    line for a mutual-TLS-only cluster)."""
    body = next(b for b in re.findall(r"^```yaml\n(.*?)^```", doc("docs/cluster.md"),
                                      re.S | re.M) if b.startswith("# cluster.yaml"))
    if not secret:
        body = "".join(line for line in body.splitlines(True)
                       if not line.startswith("peer_secret_file:"))
    return ports.local(body)


def client_port(ports: Ports, name: str) -> int:
    return ports[8046 + int(name[1:]) - 1]


def members(ports: Ports, cwd: pathlib.Path) -> dict[str, str]:
    out = sh("doozer members", cwd, ports, uri=f"doozer:?ca=127.0.0.1:{ports[8046]}")
    return {f[0]: f[1] for f in (line.split() for line in out.stdout.splitlines())}


# -- docs/operations.md ------------------------------------------------------------------


def test_backup_restore_recover_and_attach_as_documented(tmp_path):
    text = doc("docs/operations.md")
    ports = Ports()
    nodes: list[Twistd] = []
    try:
        # A node to back up, with the read-write secret set.
        source = Twistd(("--in-memory", "--listen", f"tcp:{ports[8046]}:interface=127.0.0.1",
                         "--web", f"tcp:{ports[8000]}:interface=127.0.0.1"),
                        str(tmp_path), "source", {**env(), "DOOZER_RWSECRET": SECRET})
        nodes.append(source.launch())
        source.wait_ready(listening(ports[8046]), listening(ports[8000]))
        with BlockingClient(f"127.0.0.1:{ports[8046]}") as c:
            c.access(SECRET.encode())
            until(lambda: c.get("/ctl/leader")[0], nodes)
            written = c.set("/some/key", -1, b"kept by the backup")

        # Backup from the command line: refused without the secret, then
        # given "in the URI" the way the doc says.
        save = paragraph(text, "doozer snapshot save ")
        refused = sh(save, tmp_path, ports, ok=False)
        assert refused.returncode == 2 and "403" in refused.stderr + refused.stdout
        uri = re.search(r"`-a '(doozer:\?ca=127\.0\.0\.1:8046&sk=SECRET)'`", text).group(1)
        saved = sh(save.replace("doozer ", f"doozer -a '{uri}' ", 1), tmp_path, ports)
        backup_rev = int(saved.stdout)
        assert backup_rev >= written
        assert sorted(p.name for p in tmp_path.glob("backup-*")) == ["backup-2024-06-01.dzb"]

        # Over HTTP: the curl command as written (and 403 without the header).
        curl = paragraph(text, "curl -fsS ")
        if shutil.which("curl"):
            sh(curl, tmp_path, ports)
            assert sh(re.sub(r"-H '[^']*' ", "", curl), tmp_path, ports, ok=False).returncode
        else:  # pragma: no cover - curl is on the CI image
            shutil.copy(tmp_path / "backup-2024-06-01.dzb", tmp_path / "backup.dzb")

        # doozer snapshot status: the documented lines, in order.
        status = paragraph(text, "doozer snapshot status backup-2024-06-01.dzb")
        shown = paragraph(text, "revision ").splitlines()
        got = sh(status, tmp_path, ports).stdout.splitlines()
        assert len(got) == len(shown), got
        for mine, theirs in zip(got, shown):
            assert mine.startswith(theirs.rsplit(" ", 1)[0] + " "), (mine, theirs)
        assert got[0] == f"revision {backup_rev}" and got[3] == "node n1"
        source.stop()
        nodes.remove(source)

        # Restore a 3-node cluster: status, the three restores, the start.
        (tmp_path / "cluster.yaml").write_text(cluster_file(ports))
        secret = re.search(r"^    (head -c 32 /dev/urandom .*)$", doc("docs/security.md"),
                           re.M).group(1)
        sh(secret, tmp_path, ports)
        sh(paragraph(text, "doozer snapshot status backup.dzb"), tmp_path, ports)
        restores = commands(paragraph(text, "doozer snapshot restore backup.dzb"))
        assert len(restores) == 3
        for command in restores:
            out = sh(command, tmp_path, ports).stdout
            assert f"(revision {backup_rev})" in out and "voters n1,n2,n3" in out
        starts = commands(paragraph(text, "./run.sh --config cluster.yaml --name n1\n"))
        assert len(starts) == 3
        cluster = [run_sh(command, tmp_path, ports) for command in starts]
        nodes += cluster
        until(lambda: writable(ports[8046])(), nodes)

        # Step 5: doozer rev, members, get.
        checks = commands(paragraph(text, "doozer rev"))
        assert checks == ["doozer rev", "doozer members", "doozer get /some/key"]
        uri = f"doozer:?ca=127.0.0.1:{ports[8046]}"
        assert int(sh(checks[0], tmp_path, ports, uri=uri).stdout) > backup_rev
        roles = members(ports, tmp_path)
        assert roles["cluster"] == "prod"
        assert {roles[n] for n in ("n1", "n2", "n3")} == {"voter"}, roles
        assert sh(checks[2], tmp_path, ports, uri=uri).stdout == "kept by the backup"
        with BlockingClient(f"127.0.0.1:{ports[8046]}") as c:
            after_restore = c.set("/after/restore", -1, b"in the log")
        stop_all(cluster)
        del nodes[:]

        # Disaster recovery: doozer recover on n1, output as documented.
        recover = paragraph(text, "doozer recover ")
        out = sh(recover, tmp_path, ports).stdout.splitlines()
        sample = paragraph(text, "recovered n1 (n1)").splitlines()
        assert len(out) == len(sample), out
        for mine, theirs in zip(out, sample):
            pattern = re.escape(theirs.replace("/srv/doozer-data", "@DATA@"))
            pattern = re.sub(r"\d+", r"\\d+", pattern).replace(
                "@DATA@", re.escape(str(tmp_path / "doozer-data")))
            assert re.fullmatch(pattern, mine), (mine, theirs)
        assert len(list((tmp_path / "doozer-data").glob("n1.before-recover-*"))) == 1

        # The survivor alone takes writes and still has everything.
        survivor_start = "./run.sh --config cluster.yaml --name n1"
        assert survivor_start in code_paragraphs(text)
        survivor = run_sh(survivor_start, tmp_path, ports)
        nodes.append(survivor)
        until(lambda: writable(ports[8046])(), nodes)
        with BlockingClient(f"127.0.0.1:{ports[8046]}") as c:
            assert c.get("/after/restore") == (b"in the log", after_restore)
            assert c.get("/some/key")[0] == b"kept by the backup"

        # n2 comes back empty, attached, then promoted.
        attach = commands(paragraph(text, "mv doozer-data/n2 doozer-data/n2.old"))
        assert attach[0] == "mv doozer-data/n2 doozer-data/n2.old"
        sh(attach[0], tmp_path, ports)
        n2 = run_sh(attach[1], tmp_path, ports)
        nodes.append(n2)
        until(lambda: members(ports, tmp_path).get("n2") == "learner", nodes)
        promote = paragraph(text, "python -m doozertw.cluster.admin promote n2")
        sh(promote, tmp_path, ports)
        until(lambda: members(ports, tmp_path).get("n2") == "voter", nodes)
        with BlockingClient(f"127.0.0.1:{client_port(ports, 'n2')}") as c:
            until(lambda: c.get("/after/restore")[0] == b"in the log", nodes)
    finally:
        stop_all(nodes)


# -- docs/security.md --------------------------------------------------------------------


def tls_refused(port: int, pki: pathlib.Path, server_hostname: str,
                cert: str | None = None) -> bool:
    """True if a TLS connection to ``port`` verifying against the CA (and
    presenting ``cert``) fails in the handshake or is closed right after."""
    import socket
    import ssl
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"\n")
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def flat(text: str) -> str:
    return " ".join(text.split())


def test_certificates_mutual_tls_cluster_and_client_tls_as_documented(tmp_path):
    from cryptography import x509
    text = doc("docs/security.md")
    ports = Ports()
    pki = tmp_path / "pki"

    # python -m doozertw.peer.certs: a CA and one certificate per node;
    # again with n4 and the same --out: signed by the same CA.
    certs = paragraph(text, "python -m doozertw.peer.certs --out pki n1 n2 n3")
    sh(certs, tmp_path, ports)
    assert sorted(p.name for p in pki.iterdir()) == sorted(
        ["ca.pem", "ca.key"] + [f"n{i}.{ext}" for i in (1, 2, 3) for ext in ("pem", "key")])
    ca = (pki / "ca.pem").read_bytes()
    sh(certs.replace("n1 n2 n3", "n4"), tmp_path, ports)
    assert (pki / "ca.pem").read_bytes() == ca
    issuer = x509.load_pem_x509_certificate(ca)
    n4 = x509.load_pem_x509_certificate((pki / "n4.pem").read_bytes())
    n4.verify_directly_issued_by(issuer)
    names = n4.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["n4"]
    assert n4.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "n4"

    # cluster.md's file without a peer secret: a node with peers and no
    # authentication refuses to start, with the documented message.
    (tmp_path / "cluster.yaml").write_text(cluster_file(ports, secret=False))
    start = commands(paragraph(text, "twistd -n doozer --config cluster.yaml --name n1"))
    assert len(start) == 1 and "--peer-cert pki/n1.pem" in start[0]
    bare = twistd(start[0].split(" --peer-cert")[0], tmp_path, ports, "bare")
    assert bare.reap(30) != 0
    assert flat(paragraph(text, "this node has peers but no peer authentication")) \
        in flat(bare.log_text())

    # The documented mutual-TLS start, one per node: a leader, writes.
    nodes = [twistd(start[0].replace("n1", name), tmp_path, ports, name)
             for name in ("n1", "n2", "n3")]
    try:
        until(lambda: writable(ports[8046])(), nodes)
        assert {members(ports, tmp_path)[n] for n in ("n1", "n2", "n3")} == {"voter"}
    finally:
        stop_all(nodes)

    # Client and web ports over TLS, with n1's certificate (the block's
    # /etc/doozer/ is pki/ here), and client certificates (--client-ca).
    ports = Ports()
    block = next(b for b in re.findall(r"^```text\n(.*?)^```", text, re.S | re.M)
                 if "ssl:8046" in b)
    serve = commands(block.replace("/etc/doozer/", f"{pki}/"))
    assert len(serve) == 1
    (tmp_path / "single").mkdir()
    node = twistd(serve[0] + f" --client-ca {pki}/ca.pem", tmp_path / "single", ports, "tls")
    try:
        node.wait_ready(listening(ports[8046]), listening(ports[8000]))
        base = f"doozer:?ca=127.0.0.1:{ports[8046]}&tls_ca={pki}/ca.pem"
        mine = f"&tls_cert={pki}/n2.pem&tls_key={pki}/n2.key"
        # A client certificate of the CA stands in for the secret ...
        written = sh("printf hello | doozer set /tls -1", tmp_path, ports,
                     uri=base + "&tls_name=n1" + mine)
        assert int(written.stdout) > 0
        # ... none fails in the TLS handshake; the server's certificate
        # names n1, not the address dialed (hence tls_name=).
        assert tls_refused(ports[8046], pki, server_hostname="n1")
        assert tls_refused(ports[8046], pki, server_hostname="127.0.0.1", cert="n2")
        assert sh("doozer get /tls", tmp_path, ports, uri=base + "&tls_name=n1" + mine
                  ).stdout == "hello"
        if shutil.which("curl"):  # HTTPS clients as usual; no client certificate asked
            shown = re.search(r"`(curl --cacert ca\.pem https://n1:8000/v1/keys/)\.\.\.`",
                              text).group(1)
            got = sh(shown.replace("curl ", "curl -fsS --resolve n1:8000:127.0.0.1 ")
                     .replace("ca.pem", f"{pki}/ca.pem") + "tls", tmp_path, ports)
            assert "hello" in got.stdout
    finally:
        node.stop()
