"""TLS on the client port and web port, over real loopback sockets.

A node built by ``tap.build`` listens on ``ssl:`` endpoints with a test
CA's server certificate (names: localhost, 127.0.0.1); the Twisted client,
the blocking client, the ``doozer`` CLI and urllib talk to it. With
``client_ca`` the client port requires a client certificate, which then
stands in for the read-write secret.
"""

import datetime
import io
import ipaddress
import json
import ssl
import urllib.request

import attrs
import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet import reactor
from twisted.logger import capturedLogs

from doozertw import config, tap
from doozertw.cli import main as cli_main
from doozertw.client import BlockingClient, ConnectionLost, DoozerClient, DoozerError, State
from doozertw.frontends.access import Secrets
from doozertw.peer import certs
from doozertw.tlsutil import ClientTLS, TLSConfigError, cleartext_exposure, client_tls
from doozertw.testing.servers import in_thread

SECRET = b"s3cret"


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _server_cert(ca_cert, ca_key):
    key = certs._key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(certs._name("localhost"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


@attrs.frozen
class Pki:
    ca: str            # CA of the server certificate and of client certificates
    other_ca: str      # an unrelated CA
    server_cert: str
    server_key: str
    client_cert: str   # signed by ca
    client_key: str
    rogue_cert: str    # signed by other_ca
    rogue_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = certs.make_ca("test CA")
    other_cert, other_key = certs.make_ca("other CA")
    server_cert, server_key = _server_cert(ca_cert, ca_key)
    client_cert, client_key = certs.make_node("alice", ca_cert, ca_key)
    rogue_cert, rogue_key = certs.make_node("mallory", other_cert, other_key)
    return Pki(
        ca=_write(d / "ca.pem", certs.cert_pem(ca_cert)),
        other_ca=_write(d / "other.pem", certs.cert_pem(other_cert)),
        server_cert=_write(d / "server.pem", certs.cert_pem(server_cert)),
        server_key=_write(d / "server.key", certs.key_pem(server_key)),
        client_cert=_write(d / "alice.pem", certs.cert_pem(client_cert)),
        client_key=_write(d / "alice.key", certs.key_pem(client_key)),
        rogue_cert=_write(d / "mallory.pem", certs.cert_pem(rogue_cert)),
        rogue_key=_write(d / "mallory.key", certs.key_pem(rogue_key)),
    )


def ssl_endpoint(pki):
    return (f"ssl:0:interface=127.0.0.1:privateKey={pki.server_key}"
            f":certKey={pki.server_cert}")


class Running:
    """A node from tap.build, started on the global reactor."""

    def __init__(self, pki, secrets=Secrets(), client_ca=None, web=None):
        cluster = config.ClusterConfig(secrets=secrets, client_ca=client_ca)
        me = config.NodeConfig(name="n1", listen=ssl_endpoint(pki),
                               web=web or ssl_endpoint(pki), in_memory=True)
        self.node, self.top = tap.build(cluster, me, reactor=reactor)
        self.top.startService()
        client, *rest = self.top.services
        self.client_port = client.port.getHost().port
        self.web_port = rest[0].port.getHost().port if rest else None
        self.address = f"127.0.0.1:{self.client_port}"

    def stop(self):
        return self.top.stopService()


@pytest.fixture
def node(pki):
    running = Running(pki)
    yield running
    pytest_twisted.blockon(running.stop())


@pytest.fixture
def mutual(pki):
    running = Running(pki, secrets=Secrets(rw=SECRET), client_ca=pki.ca)
    yield running
    pytest_twisted.blockon(running.stop())


def https_get(url, ca):
    context = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return response.status, response.read()


# -- 1. both ports serve over TLS ---------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_client_port_and_web_port_serve_over_tls(node, pki):
    client = DoozerClient(node.address, reactor=reactor, tls=ClientTLS(ca=pki.ca))
    try:
        rev = yield client.set("/tls/a", 0, b"over tls")
        assert (yield client.get("/tls/a")) == (b"over tls", rev)
    finally:
        client.close()
    url = f"https://127.0.0.1:{node.web_port}/v1/keys/tls/a"
    status, body = yield in_thread(https_get, url, pki.ca)
    assert status == 200
    assert json.loads(body)["value"] == "over tls"



# -- 2. clients verify the server ---------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_blocking_client_over_tls_via_uri(node, pki):
    def run():
        uri = f"doozer:?ca={node.address}&tls_ca={pki.ca}"
        with BlockingClient(uri, suspend_timeout=0) as client:
            rev = client.set("/tls/b", 0, b"blocking")
            return client.get("/tls/b"), rev
    (value, rev), set_rev = yield in_thread(run)
    assert value == b"blocking" and rev == set_rev


@pytest_twisted.inlineCallbacks
def test_blocking_client_refuses_a_server_of_an_unknown_ca(node, pki):
    def run():
        client = BlockingClient(node.address, tls=ClientTLS(ca=pki.other_ca),
                                suspend_timeout=0)
        with pytest.raises(ConnectionLost) as info:
            client.rev()
        return str(info.value)
    message = yield in_thread(run)
    assert "CERTIFICATE_VERIFY_FAILED" in message


@pytest_twisted.inlineCallbacks
def test_blocking_client_checks_the_server_name(node, pki):
    def run():
        client = BlockingClient(node.address, suspend_timeout=0,
                                tls=ClientTLS(ca=pki.ca, name="not-this-server"))
        with pytest.raises(ConnectionLost):
            client.rev()
    yield in_thread(run)


@pytest_twisted.inlineCallbacks
def test_twisted_client_refuses_a_server_of_an_unknown_ca(node, pki):
    client = DoozerClient(node.address, reactor=reactor, suspend_timeout=0.5,
                          tls=ClientTLS(ca=pki.other_ca))
    try:
        with pytest.raises(ConnectionLost):
            yield client.connect()
        assert client.state == State.LOST
    finally:
        client.close()


def run_cli(argv, environ):
    out, err = io.BytesIO(), io.StringIO()
    status = cli_main(list(argv), stdin=io.BytesIO(b""), stdout=out, stderr=err,
                      environ=environ)
    return status, out.getvalue(), err.getvalue()


@pytest_twisted.inlineCallbacks
def test_cli_tls_flags_and_environment(node, pki):
    env = {"DOOZER_URI": f"doozer:?ca={node.address}"}
    status, out, err = yield in_thread(run_cli, ["--tls-ca", pki.ca, "self"], env)
    assert (status, out) == (0, b"n1"), err
    status, out, err = yield in_thread(run_cli, ["self"], {**env, "DOOZER_TLS_CA": pki.ca})
    assert (status, out) == (0, b"n1"), err
    status, out, err = yield in_thread(run_cli, ["--tls-ca", pki.other_ca, "self"], env)
    assert status == 2 and "CERTIFICATE_VERIFY_FAILED" in err


@pytest_twisted.inlineCallbacks
def test_cli_snapshot_save_over_https(node, pki, tmp_path):
    target = tmp_path / "backup.bin"
    web = f"https://127.0.0.1:{node.web_port}"
    env = {"DOOZER_URI": f"doozer:?ca={node.address}"}
    status, _, err = yield in_thread(
        run_cli, ["--tls-ca", pki.ca, "snapshot", "save", str(target), "--web", web], env)
    assert status == 0, err
    assert target.stat().st_size > 0
    status, _, err = yield in_thread(
        run_cli, ["--tls-ca", pki.other_ca, "snapshot", "save", str(target) + "2",
                  "--web", web], env)
    assert status == 2 and "CERTIFICATE_VERIFY_FAILED" in err


def test_client_certificate_without_ca_is_refused(pki):
    with pytest.raises(TLSConfigError):
        client_tls(cert=pki.client_cert, key=pki.client_key)
    assert client_tls() is None


# -- 3. client certificates on the client port ------------------------------------------


def alice(pki):
    return ClientTLS(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)


@pytest_twisted.inlineCallbacks
def test_verified_client_certificate_grants_read_write_without_access(mutual, pki):
    client = DoozerClient(mutual.address, reactor=reactor, tls=alice(pki))
    try:
        rev = yield client.set("/cert/a", 0, b"no secret needed")
        assert (yield client.get("/cert/a")) == (b"no secret needed", rev)
    finally:
        client.close()

    def blocking():
        with BlockingClient(mutual.address, tls=alice(pki), suspend_timeout=0) as c:
            return c.set("/cert/b", 0, b"blocking")
    assert (yield in_thread(blocking)) > rev


@pytest_twisted.inlineCallbacks
def test_client_port_refuses_connections_without_a_trusted_certificate(mutual, pki):
    def attempt(tls):
        client = BlockingClient(mutual.address, tls=tls, secret=SECRET, suspend_timeout=0)
        with pytest.raises(ConnectionLost):
            client.set("/cert/x", 0, b"x")   # the handshake or the first read fails
    before = mutual.node.store.rev
    yield in_thread(attempt, ClientTLS(ca=pki.ca))
    yield in_thread(attempt, ClientTLS(ca=pki.ca, cert=pki.rogue_cert, key=pki.rogue_key))
    assert mutual.node.store.get("/cert/x") == (b"", 0) and mutual.node.store.rev == before


@pytest_twisted.inlineCallbacks
def test_without_client_ca_a_secret_is_still_required(pki):
    running = Running(pki, secrets=Secrets(rw=SECRET))
    client = DoozerClient(running.address, reactor=reactor, tls=alice(pki))
    try:
        with pytest.raises(DoozerError, match="permission denied"):
            yield client.set("/cert/c", 0, b"x")
    finally:
        client.close()
        yield running.stop()


def test_client_ca_needs_an_ssl_listen(pki):
    from doozertw.tlsutil import mutual_tls_endpoint
    with pytest.raises(TLSConfigError):
        mutual_tls_endpoint(reactor, "tcp:0:interface=127.0.0.1", pki.ca, None)


def test_client_ca_from_yaml_and_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("client_ca: /etc/doozer/clients.pem\n")
    cluster, _ = config.resolve({"config": str(path)}, environ={})
    assert cluster.client_ca == "/etc/doozer/clients.pem"
    cluster, _ = config.resolve({"client_ca": "/x.pem"}, environ={})
    assert cluster.client_ca == "/x.pem"


# -- 4. warning when a secret would travel in clear -----------------------------------------


def _build_warnings(secrets, listen, web):
    cluster = config.ClusterConfig(secrets=secrets)
    me = config.NodeConfig(name="n1", listen=listen, web=web, in_memory=True)
    with capturedLogs() as events:
        tap.build(cluster, me, reactor=reactor)
    return [e for e in events if "in clear" in e.get("log_format", "")]


def test_warns_once_when_secret_and_plain_tcp_off_loopback():
    warnings = _build_warnings(Secrets(rw=SECRET), "tcp:8046:interface=0.0.0.0", "tcp:8000")
    assert len(warnings) == 1
    assert "client port" in warnings[0]["exposed"] and "web port" in warnings[0]["exposed"]


def test_no_warning_on_loopback_tls_or_without_secrets(pki):
    loop = "tcp:8046:interface=127.0.0.1"
    assert _build_warnings(Secrets(rw=SECRET), loop, "none") == []
    assert _build_warnings(Secrets(), "tcp:8046", "tcp:8000") == []
    assert _build_warnings(Secrets(ro=SECRET), ssl_endpoint(pki), loop) == []


def test_cleartext_exposure():
    assert cleartext_exposure("tcp:1:interface=0.0.0.0")
    assert cleartext_exposure("tcp6:1")
    assert cleartext_exposure("8046")
    assert cleartext_exposure("tcp:1:interface=127.0.0.2") is None
    assert cleartext_exposure("tcp:1:interface=localhost") is None
    assert cleartext_exposure("ssl:1:privateKey=k") is None
    assert cleartext_exposure("unix:/tmp/s") is None


@pytest.mark.parametrize("grants", [True, False])
def test_certificate_grants_only_when_the_port_verifies_certificates(grants):
    from twisted.internet import task
    from twisted.internet.testing import StringTransport
    from doozertw.frontends.client_port import ClientPortFactory
    from doozertw.limits import Limits
    from doozertw.node import Node
    from doozertw.store import Store

    factory = ClientPortFactory(Node("n1", store=Store()), Secrets(rw=SECRET), Limits(),
                                clock=task.Clock(), certificate_grants=grants)
    transport = StringTransport()
    transport.getPeerCertificate = lambda: object()   # a TLS peer with a certificate
    sniffer = factory.buildProtocol(None)
    sniffer.makeConnection(transport)
    sniffer.dataReceived(b"rev\n")
    assert sniffer.chosen.access.can_write is grants
