"""The deployment files: Dockerfile, .dockerignore, compose.yaml (and its
cluster file) and the systemd unit (docs/deployment.md).

The unmarked tests read the files and hold them to their contracts (non-root
user, exec-form entrypoint, health check on /readyz, one volume per node,
only DOOZER_* names that are settings, a sandboxed Type=notify unit). The
``e2e`` tests run scripts/check_systemd.sh (systemd-analyze verify) and
scripts/check_containers.sh (build the image, run the compose cluster, write
through one node and read through the others), skipping only when the tool
or a container runtime is missing.
"""

import json
import pathlib
import re
import shlex
import subprocess

import pytest
import yaml

from doozertw import config
from doozertw.tap import option_specs

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "systemd" / "doozer@.service"
ENV_EXAMPLE = ROOT / "contrib" / "systemd" / "doozer.env.example"
CLUSTER_FILE = ROOT / "contrib" / "compose" / "cluster.yaml"
SKIP = 77


def known_variables():
    """Every DOOZER_* name the node reads: the options' and the others."""
    return {spec.env for spec in option_specs() if spec.env} | config.OTHER_VARIABLES


# -- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions(text):
    """[(INSTRUCTION, arguments)] of a Dockerfile: comments dropped,
    continuation lines joined."""
    logical, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line ends the file"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in logical]


@pytest.fixture(scope="module")
def dockerfile():
    return dockerfile_instructions((ROOT / "Dockerfile").read_text())


def test_dockerfile_parser_joins_continuations_and_drops_comments():
    parsed = dockerfile_instructions("# c\nFROM x\nRUN a \\\n  && b\n\nUSER u\n")
    assert parsed == [("FROM", "x"), ("RUN", "a && b"), ("USER", "u")]


def test_the_image_runs_as_an_unprivileged_user(dockerfile):
    users = [args for op, args in dockerfile if op == "USER"]
    assert users, "no USER: the node would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (op, _) in enumerate(dockerfile) if op == "USER")
    assert all(op != "RUN" for op, _ in dockerfile[last_user:]), "RUN after USER"


def test_the_base_is_python_slim_and_the_checkout_is_installed(dockerfile):
    args = dict(a.split("=", 1) for op, a in dockerfile if op == "ARG" and "=" in a)
    assert args.get("BASE_IMAGE") == "python:3.11-slim"
    assert dockerfile[[op for op, _ in dockerfile].index("FROM")][1] == "${BASE_IMAGE}"
    runs = " ".join(a for op, a in dockerfile if op == "RUN")
    assert re.search(r"pip install /usr/src/doozertw\b", runs)
    assert ("COPY", ". /usr/src/doozertw") in dockerfile


def test_the_plugin_cache_is_written_as_root_at_build(dockerfile):
    ops = [op for op, _ in dockerfile]
    cache = next(i for i, (op, a) in enumerate(dockerfile)
                 if op == "RUN" and "getPlugins(IPlugin)" in a)
    assert cache < ops.index("USER")


def test_entrypoint_is_exec_form_twistd_in_the_foreground(dockerfile):
    entry = [a for op, a in dockerfile if op == "ENTRYPOINT"]
    assert len(entry) == 1
    argv = json.loads(entry[0])  # exec form: a JSON array, no shell in between
    assert argv[:2] == ["twistd", "-n"] and "--pidfile=" in argv and argv[-1] == "doozer"


def test_health_check_asks_readyz_without_curl(dockerfile):
    checks = [a for op, a in dockerfile if op == "HEALTHCHECK"]
    assert len(checks) == 1
    argv = json.loads(checks[0].split("CMD", 1)[1])
    assert argv[0].startswith("python") and "/readyz" in argv[-1]
    compile(argv[-1], "<healthcheck>", "exec")


def test_health_check_finds_the_port_of_doozer_web(dockerfile):
    """The one-liner's port search, run on the endpoint strings it may see."""
    code = json.loads([a for op, a in dockerfile if op == "HEALTHCHECK"][0]
                      .split("CMD", 1)[1])[-1]
    pattern = re.search(r"re\.search\(r'([^']+)'", code).group(1)
    for endpoint, port in [("tcp:8000:interface=0.0.0.0", "8000"), ("tcp:9100", "9100"),
                           ("tcp:port=8080:interface=0.0.0.0", "8080"), ("tcp:8000", "8000")]:
        assert re.search(pattern, endpoint).group(1) == port


def test_volume_ports_and_environment(dockerfile):
    assert any(op == "VOLUME" and "/var/lib/doozer" in a for op, a in dockerfile)
    exposed = {p for op, a in dockerfile if op == "EXPOSE" for p in a.split()}
    assert exposed == {"8046", "8000", "7046"}
    env = dict(pair.split("=", 1) for op, a in dockerfile if op == "ENV"
               for pair in shlex.split(a))
    doozer = {k: v for k, v in env.items() if k.startswith("DOOZER_")}
    assert set(doozer) <= known_variables()
    for key in ("DOOZER_LISTEN", "DOOZER_WEB", "DOOZER_PEER_LISTEN"):
        assert "interface=0.0.0.0" in doozer[key], key
    assert doozer["DOOZER_DATA_DIR"].startswith("/var/lib/doozer/")
    assert "DOOZER_INSECURE_PEERS" not in doozer


def test_dockerignore_keeps_local_state_out_of_the_context():
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".venv", ".mutation", ".git", "doozer-data", "build", "peer-secret"):
        assert entry in lines, entry


# -- compose.yaml -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolate(text):
    """Compose's ${VAR:-default} with nothing set."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(text))


def test_compose_runs_three_nodes_with_their_own_volumes(compose):
    services = compose["services"]
    assert sorted(services) == ["n1", "n2", "n3"]
    data = {}
    for name, service in services.items():
        mounts = [interpolate(v) for v in service["volumes"]]
        data[name] = next(m.split(":")[0] for m in mounts if ":/var/lib/doozer" in m)
        assert data[name] in compose["volumes"], name
        assert service["environment"]["DOOZER_NAME"] == name
        assert service["environment"]["DOOZER_CONFIG"] == "/etc/doozer/cluster.yaml"
        assert any(m.startswith("./contrib/compose/cluster.yaml:/etc/doozer/cluster.yaml")
                   for m in mounts)
    assert len(set(data.values())) == 3


def test_compose_publishes_the_web_views_on_loopback(compose):
    webs = []
    for service in compose["services"].values():
        ports = [interpolate(p) for p in service["ports"]]
        assert all(p.startswith("127.0.0.1:") for p in ports), ports
        web = next(p for p in ports if p.endswith(":8000"))
        host_port = web.split(":")[1]
        webs.append(host_port)
        # the web port refuses an unknown Host: the published address is named
        hosts = interpolate(service["environment"]["DOOZER_WEB_HOST"]).split(",")
        assert f"localhost:{host_port}" in hosts and f"127.0.0.1:{host_port}" in hosts
    assert webs == ["8001", "8002", "8003"]


def test_compose_environment_names_are_settings_and_peers_are_authenticated(compose):
    secrets = compose["secrets"]
    for service in compose["services"].values():
        env = service["environment"]
        assert set(env) <= known_variables(), set(env) - known_variables()
        assert interpolate(env.get("DOOZER_INSECURE_PEERS", "0")).lower() in config.FALSE_WORDS
        secret_file = env["DOOZER_PEER_SECRET_FILE"]
        assert secret_file.startswith("/run/secrets/")
        assert secret_file.rsplit("/", 1)[1] in service["secrets"]
    assert all("file" in s for s in secrets.values())


def test_the_compose_cluster_file_names_the_services():
    cluster = config.load(str(CLUSTER_FILE))
    assert sorted(cluster.nodes) == ["n1", "n2", "n3"]
    assert not cluster.insecure_peers
    from doozertw.cluster.service import dial_endpoint
    for name, node in cluster.nodes.items():
        assert dial_endpoint(node.peer_listen) == f"tcp:host={name}:port=7046"


def test_the_compose_environment_resolves_to_a_listening_node(compose, tmp_path):
    """What the image and compose give node n2 resolves as intended: it
    listens everywhere, the others dial it by its service name, and its
    peer secret is the mounted file."""
    secret = tmp_path / "peer_secret"
    secret.write_text("s3cret\n")
    env = {"DOOZER_LISTEN": "tcp:8046:interface=0.0.0.0",
           "DOOZER_WEB": "tcp:8000:interface=0.0.0.0",
           "DOOZER_PEER_LISTEN": "tcp:7046:interface=0.0.0.0",
           "DOOZER_DATA_DIR": "/var/lib/doozer/{name}"}
    env.update({k: interpolate(v) for k, v in compose["services"]["n2"]["environment"].items()})
    env["DOOZER_CONFIG"] = str(CLUSTER_FILE)
    env["DOOZER_PEER_SECRET_FILE"] = str(secret)
    specs = option_specs()
    options, origins = config.layered(specs, {}, env)
    cluster, node = config.resolve(options, env, origins)
    assert node.name == "n2" and node.peer_listen == "tcp:7046:interface=0.0.0.0"
    assert cluster.voters()["n2"] == "tcp:7046:interface=n2"
    assert cluster.data_dir_of(node) == "/var/lib/doozer/n2"
    assert cluster.peer_secret_file == str(secret)
    assert config.unknown_variables(specs, env) == []


# -- systemd -----------------------------------------------------------------------------


def unit_sections(path):
    """{section: {key: [values]}} of a systemd unit (keys may repeat)."""
    sections, current = {}, None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit():
    return unit_sections(UNIT)


def test_unit_is_type_notify_with_a_watchdog(unit):
    service = unit["Service"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) >= 10
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0]) > 2  # more than the 2 s drain


def test_unit_runs_twistd_from_the_venv_with_the_instance_env_file(unit):
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0] == "/opt/doozertw/venv/bin/twistd"
    assert "--pidfile=" in argv and argv[-1] == "doozer"
    assert {"-n", "--nodaemon"} & set(argv)
    assert service["EnvironmentFile"] == ["/etc/doozer/%i.env"]
    names = [e.split("=", 1)[0] for e in service["Environment"]]
    assert set(names) <= known_variables()
    assert "DOOZER_NAME=%i" in service["Environment"]


def test_unit_is_sandboxed(unit):
    service = unit["Service"]
    expected = {
        "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/doozer",
        "StateDirectory": "doozer", "NoNewPrivileges": "yes", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "LockPersonality": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert service.get("DynamicUser") == ["yes"] or service.get("User", ["root"]) != ["root"]


def test_env_example_names_only_settings():
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.lstrip("#").strip()
        match = re.match(r"(DOOZER_[A-Z0-9_]+)=", line)
        if match:
            names.add(match.group(1))
    assert names and names <= known_variables(), names - known_variables()


def run_script(name, *args, timeout):
    return subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.e2e
def test_systemd_analyze_verifies_the_unit():
    result = run_script("check_systemd.sh", timeout=120)
    if result.returncode == SKIP:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok:" in result.stdout


@pytest.mark.e2e
def test_the_systemd_check_catches_a_broken_unit(tmp_path):
    broken = tmp_path / "doozer@.service"
    broken.write_text(UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=sometimes"))
    result = run_script("check_systemd.sh", str(broken), timeout=120)
    if result.returncode == SKIP:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 1 and "protect home value" in result.stderr, result.stderr


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_image_and_the_compose_cluster_work():
    """Build, a 3-node cluster, a write through n1 read through n2 and n3,
    SIGTERM exits 0, the data survives a restart; skipped only when no
    container runtime can run a container here (the script says why)."""
    result = run_script("check_containers.sh", timeout=880)
    if result.returncode == SKIP:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert "PASS" in result.stderr

