"""Configuration from the environment: DOOZER_<OPTION> for every option,
flag > environment > file > default, --print-config, secrets from files,
and the option table of docs/configuration.md generated from the options."""

import pathlib
import re

import pytest

from doozertw import config, tap
from doozertw.config_print import options_table
from doozertw.frontends.access import Secrets

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def parsed(argv, environ):
    """tap.Options parsed with ``argv`` and ``environ`` (never os.environ)."""
    options = tap.Options()
    options.environ = environ
    options.parseOptions(argv)
    return options


def failure(argv, environ):
    """The one-line message a bad configuration stops the node with."""
    with pytest.raises(SystemExit) as stopped:
        parsed(argv, environ)
    assert isinstance(stopped.value.code, str), stopped.value.code
    assert "\n" not in stopped.value.code
    return stopped.value.code


def printed(argv, environ, capsys):
    with pytest.raises(SystemExit) as stopped:
        parsed(["--print-config", *argv], environ)
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[1:]:
        option, value, source = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows[option] = (value, source)
    return rows, out


# -- every option has a variable ---------------------------------------------------------


def test_every_option_has_a_variable_named_after_it():
    specs = tap.option_specs()
    names = {spec.name for spec in specs}
    parameters = {p[0] for p in tap.Options.optParameters}
    flags = {f[0] for f in tap.Options.optFlags}
    assert names == parameters | flags | {"web-host"}
    for spec in specs:
        if spec.name in tap.NO_ENV:
            assert spec.env is None
        else:
            assert spec.env == "DOOZER_" + spec.name.upper().replace("-", "_")


def test_every_file_key_is_one_the_parser_knows():
    for spec in tap.option_specs():
        for key in filter(None, (k.strip() for k in (spec.yaml or "").split(","))):
            if key.startswith("nodes.<name>."):
                assert key.split(".", 2)[2] in config._NODE_KEYS
            else:
                assert key in config._TOP_KEYS


ENDPOINT = "tcp:0:interface=127.0.0.1"


@pytest.mark.parametrize("variable, value, check", [
    ("DOOZER_LISTEN", ENDPOINT, lambda c, n: n.listen == ENDPOINT),
    ("DOOZER_WEB", "none", lambda c, n: n.web == "none"),
    ("DOOZER_PEER_LISTEN", ENDPOINT, lambda c, n: n.peer_listen == ENDPOINT),
    ("DOOZER_NAME", "n7", lambda c, n: n.name == "n7"),
    ("DOOZER_CLUSTER", "prod", lambda c, n: c.cluster == "prod" and c.cluster_given),
    ("DOOZER_HISTORY", "77", lambda c, n: c.history == 77),
    ("DOOZER_HISTORY_BYTES", "4096", lambda c, n: c.history_bytes == 4096),
    ("DOOZER_QUORUM_TIMEOUT", "2.5", lambda c, n: c.quorum_timeout == 2.5),
    ("DOOZER_SILENT_VOTER_TIMEOUT", "9", lambda c, n: n.silent_voter_timeout == 9.0),
    ("DOOZER_SNAPSHOT_ENTRIES", "12", lambda c, n: c.snapshot_entries == 12),
    ("DOOZER_ADVERTISE", "h:1", lambda c, n: n.advertise == "h:1"),
    ("DOOZER_IN_MEMORY", "TRUE", lambda c, n: n.in_memory),
    ("DOOZER_IN_MEMORY", "0", lambda c, n: not n.in_memory),
    ("DOOZER_PROTECT_METRICS", "yes", lambda c, n: c.web.protect_metrics),
    ("DOOZER_WEB_ACCESS_LOG", "on", lambda c, n: c.web.access_log),
    ("DOOZER_WEB_ACCESS_LOG", "no", lambda c, n: not c.web.access_log),
    ("DOOZER_LEASE_READS", "1", lambda c, n: c.lease_reads),
    ("DOOZER_HEARTBEAT_INTERVAL", "0.2", lambda c, n: c.heartbeat_interval == 0.2),
    ("DOOZER_ELECTION_TIMEOUT", "1.5", lambda c, n: c.election_timeout == 1.5),
    ("DOOZER_LEASE_READS", "0", lambda c, n: not c.lease_reads),
    ("DOOZER_WEB_HOST", "a.example,b.example:8443",
     lambda c, n: c.web.hosts == ("a.example", "b.example:8443")),
    ("DOOZER_LOG_LEVEL", "warning", lambda c, n: c.log_level == "WARN"),
    ("DOOZER_LOG_FORMAT", "JSON", lambda c, n: c.log_format == "json"),
])
def test_each_variable_sets_its_option(tmp_path, variable, value, check):
    environ = {variable: value}
    if variable != "DOOZER_IN_MEMORY":
        environ["DOOZER_IN_MEMORY"] = "1"
    environ.setdefault("DOOZER_WEB", "none")
    options = parsed([], environ)
    assert check(options.cluster, options.node)


def test_data_dir_from_the_environment(tmp_path):
    options = parsed(["--web", "none", "--peer-listen", ENDPOINT, "--listen", ENDPOINT],
                     {"DOOZER_DATA_DIR": str(tmp_path / "d")})
    assert options.cluster.data_dir_of(options.node) == str(tmp_path / "d")
    assert (tmp_path / "d").is_dir()            # opened (and checked) at parse time


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("history: 100\nhistory_bytes: 5000\nquorum_timeout: 3\n"
                    "nodes:\n  n1:\n    web: none\n    listen: tcp:1:interface=127.0.0.1\n")
    options = parsed(["--config", str(path), "--in-memory", "--history", "300"],
                     {"DOOZER_HISTORY": "200", "DOOZER_HISTORY_BYTES": "6000",
                      "DOOZER_LISTEN": ENDPOINT})
    cluster, node = options.cluster, options.node
    assert cluster.history == 300               # flag beats env and file
    assert cluster.history_bytes == 6000        # env beats file
    assert node.listen == ENDPOINT              # env beats the node's entry in the file
    assert cluster.quorum_timeout == 3          # file beats default
    assert cluster.snapshot_entries == config.DEFAULT_SNAPSHOT_ENTRIES


@pytest.mark.parametrize("key, variable, field", [
    ("protect_metrics", "DOOZER_PROTECT_METRICS", "protect_metrics"),
    ("web_access_log", "DOOZER_WEB_ACCESS_LOG", "access_log"),
])
def test_an_environment_false_overrides_the_files_true(tmp_path, key, variable, field):
    path = tmp_path / "c.yaml"
    path.write_text(f"{key}: true\n")
    on = parsed(["--config", str(path), "--in-memory", "--web", "none"], {})
    off = parsed(["--config", str(path), "--in-memory", "--web", "none"], {variable: "off"})
    assert getattr(on.cluster.web, field) and not getattr(off.cluster.web, field)


def test_empty_variables_count_as_unset():
    options = parsed(["--in-memory", "--web", "none"], {"DOOZER_LISTEN": "", "DOOZER_HISTORY": " "})
    assert options.node.listen == config.DEFAULT_CLIENT


@pytest.mark.parametrize("variable, value, expected", [
    ("DOOZER_HISTORY", "abc", "doozer: environment: DOOZER_HISTORY='abc': not an integer"),
    ("DOOZER_QUORUM_TIMEOUT", "soon",
     "doozer: environment: DOOZER_QUORUM_TIMEOUT='soon': not a number"),
    ("DOOZER_IN_MEMORY", "maybe",
     "doozer: environment: DOOZER_IN_MEMORY='maybe': use 1/true/yes/on or 0/false/no/off"),
    ("DOOZER_HISTORY", "0",
     "doozer: environment: DOOZER_HISTORY must be a positive integer"),
    ("DOOZER_QUORUM_TIMEOUT", "-1",
     "doozer: environment: DOOZER_QUORUM_TIMEOUT must be positive"),
    ("DOOZER_LOG_LEVEL", "loud",
     "doozer: environment: DOOZER_LOG_LEVEL: log level 'loud': use one of DEBUG, INFO, "
     "WARN, ERROR"),
    ("DOOZER_LISTEN", "bogus:1",
     "doozer: DOOZER_LISTEN 'bogus:1': Unknown endpoint type: 'bogus'"),
    ("DOOZER_PEERS", "n2",
     "doozer: DOOZER_PEERS: expected name=host:port, got 'n2'"),
])
def test_a_bad_value_names_its_variable(variable, value, expected):
    environ = {"DOOZER_WEB": "none", variable: value}
    if variable != "DOOZER_IN_MEMORY":
        environ["DOOZER_IN_MEMORY"] = "1"
    assert failure([], environ) == expected


def test_the_command_line_names_itself_in_errors():
    assert failure(["--in-memory", "--history", "0"], {}) == (
        "doozer: command line: --history must be a positive integer")


def test_a_misspelt_variable_is_warned_about(capsys):
    parsed(["--in-memory", "--web", "none"],
           {"DOOZER_LISTN": "x", "DOOZER_URI": "doozer:?ca=h:1", "DOOZER_RWSECRET": "s"})
    err = capsys.readouterr().err
    assert err == ("doozer: warning: DOOZER_LISTN is not a doozer setting (ignored); "
                   "see twistd doozer --help\n")


# -- secrets ------------------------------------------------------------------------------


def test_secrets_from_files(tmp_path):
    (tmp_path / "rw").write_bytes(b"s3cret\n")
    (tmp_path / "ro").write_bytes(b"r\xc3\xa9ad\r\n")
    options = parsed(["--in-memory", "--web", "none"],
                     {"DOOZER_RWSECRET_FILE": str(tmp_path / "rw"),
                      "DOOZER_ROSECRET_FILE": str(tmp_path / "ro")})
    assert options.cluster.secrets == Secrets(rw=b"s3cret", ro="réad".encode())


@pytest.mark.parametrize("setup, expected", [
    (lambda p: {"DOOZER_RWSECRET": "a", "DOOZER_RWSECRET_FILE": str(p / "rw")},
     "doozer: environment: give DOOZER_RWSECRET or DOOZER_RWSECRET_FILE, not both"),
    (lambda p: {"DOOZER_RWSECRET_FILE": str(p / "missing")},
     "doozer: environment: DOOZER_RWSECRET_FILE {p}/missing: No such file or directory"),
    (lambda p: {"DOOZER_ROSECRET_FILE": str(p / "empty")},
     "doozer: environment: DOOZER_ROSECRET_FILE {p}/empty: empty"),
    (lambda p: {"DOOZER_ROSECRET_FILE": str(p / "huge")},
     "doozer: environment: DOOZER_ROSECRET_FILE {p}/huge: larger than 64 KiB"),
])
def test_bad_secret_files_name_the_variable_never_the_secret(tmp_path, setup, expected):
    (tmp_path / "rw").write_text("topsecret")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "huge").write_bytes(b"x" * 70_000)
    environ = {"DOOZER_IN_MEMORY": "1", "DOOZER_WEB": "none", **setup(tmp_path)}
    line = failure([], environ)
    assert line == expected.format(p=tmp_path)
    assert "topsecret" not in line


# -- --print-config ---------------------------------------------------------------------


def test_print_config_says_where_each_value_comes_from(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("cluster: prod\nhistory: 100\nsecrets:\n  rw: filesecret\n"
                    "nodes:\n  n1:\n    listen: tcp:9001\n")
    (tmp_path / "ro").write_text("envsecret\n")
    rows, out = printed(
        ["--config", str(path), "--quorum-timeout", "3"],
        {"DOOZER_HISTORY": "200", "DOOZER_IN_MEMORY": "yes", "DOOZER_WEB": "none",
         "DOOZER_ROSECRET_FILE": str(tmp_path / "ro")}, capsys)
    assert rows["--quorum-timeout"] == ("3", "flag")
    assert rows["--config"] == (str(path), "flag")
    assert rows["--history"] == ("200", "env DOOZER_HISTORY")
    assert rows["--in-memory"] == ("on", "env DOOZER_IN_MEMORY")
    assert rows["--web"] == ("none", "env DOOZER_WEB")
    assert rows["--listen"] == ("tcp:9001", "file")
    assert rows["--cluster"] == ("prod", "file")
    assert rows["--name"] == ("n1", "file")
    assert rows["--history-bytes"] == ("67108864", "default")
    assert rows["--log-level"] == ("INFO", "default")
    assert rows["--web-access-log"] == ("off", "default")
    assert rows["rw secret"] == ("(set)", "file")
    assert rows["ro secret"] == ("(set)", "env DOOZER_ROSECRET_FILE")
    assert "filesecret" not in out and "envsecret" not in out
    options = {f"--{spec.name}" for spec in tap.option_specs()} - {"--print-config"}
    assert set(rows) == options | {"rw secret", "ro secret"}


def test_print_config_never_prints_environment_secrets(capsys):
    rows, out = printed(["--in-memory"], {"DOOZER_RWSECRET": "hunter2hunter2"}, capsys)
    assert rows["rw secret"] == ("(set)", "env DOOZER_RWSECRET")
    assert rows["ro secret"] == ("(not set)", "default")
    assert "hunter2" not in out


def test_print_config_starts_nothing(tmp_path, capsys):
    printed(["--data-dir", str(tmp_path / "never")], {}, capsys)
    assert not (tmp_path / "never").exists()


def test_print_config_still_refuses_a_bad_configuration():
    assert failure(["--print-config"], {"DOOZER_HISTORY": "x"}).startswith(
        "doozer: environment: DOOZER_HISTORY")


# -- the docs ----------------------------------------------------------------------------


def test_the_docs_table_is_generated_from_the_options():
    text = (DOCS / "configuration.md").read_text()
    begin = "<!-- options table: generated by doozertw.config_print.options_table -->\n"
    end = "<!-- end of options table -->"
    assert begin in text and end in text
    documented = text.split(begin, 1)[1].split(end, 1)[0]
    expected = options_table(tap.option_specs())
    assert documented == expected, (
        "docs/configuration.md's option table is stale; replace it with:\n" + expected)


def test_the_table_has_one_row_per_option_with_its_variable():
    table = options_table(tap.option_specs())
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == len(tap.option_specs())
    for spec, row in zip(tap.option_specs(), rows):
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[0].startswith(f"`--{spec.name}`")
        assert (spec.env or "none") in cells[1]


# -- through a real twistd -------------------------------------------------------------------


def _twistd(options, environ, cwd):
    import subprocess

    from doozertw.testing.proxy import child_env
    from doozertw.testing.spawn import twistd_command
    return subprocess.run(twistd_command(options), cwd=cwd, env={**child_env(), **environ},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_twistd_refuses_a_bad_variable_in_one_line(tmp_path):
    done = _twistd(["--in-memory"], {"DOOZER_SNAPSHOT_ENTRIES": "many"}, tmp_path)
    assert done.returncode == 1
    assert done.stderr == ("doozer: environment: DOOZER_SNAPSHOT_ENTRIES='many': "
                           "not an integer\n")


@pytest.mark.e2e
def test_twistd_prints_the_config_and_exits_zero(tmp_path):
    done = _twistd(["--print-config", "--in-memory"],
                   {"DOOZER_LISTEN": "tcp:9999:interface=127.0.0.1",
                    "DOOZER_RWSECRET": "do-not-print-me"}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "do-not-print-me" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# effective configuration of node n1")
    assert any(re.fullmatch(r"--listen\s+tcp:9999:interface=127\.0\.0\.1\s+env DOOZER_LISTEN",
                            line) for line in lines)
    assert any(re.fullmatch(r"--in-memory\s+on\s+flag", line) for line in lines)
    assert not list(tmp_path.iterdir())           # nothing started, nothing written


def test_lease_reads_from_the_file_the_flag_or_nowhere(tmp_path):
    env = {"DOOZER_IN_MEMORY": "1", "DOOZER_WEB": "none"}
    conf = tmp_path / "cluster.yaml"
    conf.write_text("lease_reads: true\n")
    assert parsed(["--config", str(conf)], env).cluster.lease_reads
    assert parsed(["--lease-reads"], env).cluster.lease_reads
    assert not parsed([], env).cluster.lease_reads
    conf.write_text("lease_reads: sometimes\n")
    assert "lease_reads must be true or false" in failure(["--config", str(conf)], env)


def test_raft_timing_in_ticks_and_its_bounds(tmp_path):
    env = {"DOOZER_IN_MEMORY": "1", "DOOZER_WEB": "none"}
    assert config.raft_ticks(parsed([], env).cluster) == (0.05, 10, 2)
    fast = parsed(["--heartbeat-interval", "0.05", "--election-timeout", "0.2"], env)
    assert config.raft_ticks(fast.cluster) == (0.025, 8, 2)
    conf = tmp_path / "cluster.yaml"
    conf.write_text("election_timeout: 0.3\nheartbeat_interval: 0.1\n")
    assert config.raft_ticks(parsed(["--config", str(conf)], env).cluster) == (0.05, 6, 2)
    assert "election_timeout 0.2s must be at least 0.25s" in failure(
        ["--election-timeout", "0.2"], env)
    assert "heartbeat_interval must be at least 0.01s" in failure(
        ["--heartbeat-interval", "0.001"], env)
    assert "must be positive" in failure(["--election-timeout", "-1"], env)


# -- the web port's access log -----------------------------------------------------------


def test_web_access_log_from_the_file_the_flag_or_nowhere(tmp_path):
    env = {"DOOZER_IN_MEMORY": "1", "DOOZER_WEB": "none"}
    conf = tmp_path / "cluster.yaml"
    conf.write_text("web_access_log: true\nprotect_metrics: true\n")
    from_file = parsed(["--config", str(conf)], env).cluster.web
    assert from_file.access_log and from_file.protect_metrics
    assert parsed(["--web-access-log"], env).cluster.web.access_log
    assert not parsed([], env).cluster.web.access_log
    assert config.parse({"web_access_log": True}).web.access_log
    assert not config.parse({}).web.access_log
    conf.write_text("web_access_log: yes please\n")
    assert "web_access_log must be true or false" in failure(["--config", str(conf)], env)


def test_print_config_shows_the_web_access_log(tmp_path, capsys):
    conf = tmp_path / "cluster.yaml"
    conf.write_text("web_access_log: true\n")
    rows, _ = printed(["--in-memory", "--config", str(conf)], {}, capsys)
    assert rows["--web-access-log"] == ("on", "file")
    rows, _ = printed(["--in-memory"], {"DOOZER_WEB_ACCESS_LOG": "1"}, capsys)
    assert rows["--web-access-log"] == ("on", "env DOOZER_WEB_ACCESS_LOG")
    rows, _ = printed(["--in-memory", "--web-access-log"], {}, capsys)
    assert rows["--web-access-log"] == ("on", "flag")


def access_log_of(argv):
    """The node's log lines of the web port's access log while a node
    configured by ``argv`` answers a PUT and a GET."""
    from twisted.internet.task import Clock
    from twisted.logger import capturedLogs, formatEvent

    from doozertw.testing.web import Conversation

    options = parsed(["--in-memory", "--web-host", "doozer.test", *argv], {})
    _, top = tap.build(options.cluster, options.node, reactor=Clock())
    [site] = [s.factory for s in top if getattr(s, "description", "") == options.node.web]
    site.startFactory()                 # the access log goes to the node's log
    try:
        with capturedLogs() as events:
            conv = Conversation(site)
            conv.send("PUT", "/v1/keys/a", body=b"v")
            conv.send("GET", "/v1/keys/a")
    finally:
        site.stopFactory()
    assert conv.transport.value().count(b"HTTP/1.1 200") == 2
    return [formatEvent(e) for e in events if " /v1/keys/a HTTP/1.1" in formatEvent(e)]


def test_a_node_logs_one_line_per_web_request_only_with_web_access_log():
    assert access_log_of([]) == []
    lines = access_log_of(["--web-access-log"])
    assert len(lines) == 2
    assert lines[0].startswith('"127.0.0.1" - - [')
    assert '"PUT /v1/keys/a HTTP/1.1" 200' in lines[0]
    assert '"GET /v1/keys/a HTTP/1.1" 200' in lines[1]
