"""``doozerd``: doozerd's flags translated into ``twistd doozer`` (unit
tests), and doozerd's own fire drill run with real processes (``e2e``)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from doozertw import doozerd, tap
from doozertw.doozerd import FLAGS, AddressError, UsageError, parse, translate
from doozertw.testing.node_process import free_ports
from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import listening

PREFIX = ["-n", "--pidfile=", "doozer"]


def twistd_args(argv, environ=None, reachable=lambda address: False, hostname=lambda: "box"):
    parsed, extra = parse(argv)
    result = translate(parsed, extra, environ or {}, reachable, hostname)
    assert result.twistd_args[:3] == PREFIX
    return result.twistd_args[3:], result.notes


def option_values(options):
    """The ``twistd doozer`` options as tap.Options parses them (so every
    option doozerd gives exists there), without resolving a configuration."""

    class Parsed(tap.Options):
        def postOptions(self):
            pass

    parsed = Parsed()
    parsed.parseOptions(options)
    return parsed


def run_main(argv, environ=None):
    out, err, ran = io.StringIO(), io.StringIO(), []

    def runner(args):
        ran.append(list(args))
        return 0

    status = doozerd.main(argv, environ or {}, out, err, runner)
    return status, out.getvalue(), err.getvalue(), ran


# -- translation --------------------------------------------------------------------


def test_defaults_are_doozerds():
    options, notes = twistd_args([])
    parsed = option_values(options)
    assert parsed["listen"] == "tcp:8046:interface=127.0.0.1"
    assert parsed["web"] == "tcp:8000:interface=127.0.0.1"   # -l's host, port 8000
    assert parsed["name"] == "127.0.0.1-8046"
    assert parsed["peer-listen"] == "tcp:7046:interface=127.0.0.1"
    assert parsed["insecure-peers"]
    assert parsed["attach"] is None and parsed["cluster"] is None
    assert parsed["silent-voter-timeout"] is None and parsed["history"] is None
    assert notes == []


def test_the_fire_drill_command_lines():
    options, _ = twistd_args(["-l", "127.0.0.1:8047", "-w", ":8080", "-a", "127.0.0.1:8046",
                              "-c", "prod", "-timeout", "90", "-hist", "500"])
    parsed = option_values(options)
    assert parsed["listen"] == "tcp:8047:interface=127.0.0.1"
    assert parsed["web"] == "tcp:8080"                    # every interface, as Go's ":8080"
    assert parsed["attach"] == "127.0.0.1:8046"           # a client address, as doozerd's -a
    assert parsed["cluster"] == "prod"
    assert parsed["silent-voter-timeout"] == 90.0
    assert parsed["history"] == 500
    assert parsed["name"] == "127.0.0.1-8047"
    assert parsed["peer-listen"] == "tcp:7047:interface=127.0.0.1"


@pytest.mark.parametrize("spelling", [
    ["-l", "10.0.0.1:9046"], ["-l=10.0.0.1:9046"], ["--l", "10.0.0.1:9046"],
    ["--l=10.0.0.1:9046"]])
def test_go_flag_spellings(spelling):
    options, _ = twistd_args(spelling)
    assert option_values(options)["listen"] == "tcp:9046:interface=10.0.0.1"


@pytest.mark.parametrize("off", ["false", "0", "f", "F", "FALSE", "False", "t", "true"])
def test_w_false_means_no_web_port(off):
    # doozerd serves no web port for any value strconv.ParseBool accepts
    options, _ = twistd_args(["-w", off])
    assert option_values(options)["web"] == "none"
    options, _ = twistd_args([f"-w={off}"])
    assert option_values(options)["web"] == "none"


def test_web_address_and_wildcard_listen():
    options, _ = twistd_args(["-l", ":8046", "-w", "10.1.1.1:8081"])
    parsed = option_values(options)
    assert parsed["listen"] == "tcp:8046"
    assert parsed["web"] == "tcp:8081:interface=10.1.1.1"
    assert parsed["name"] == "box-8046"          # the host name for a wildcard host
    assert parsed["peer-listen"] == "tcp:7046"


def test_ipv6_addresses_are_escaped_endpoints():
    options, _ = twistd_args(["-l", "[::1]:8046"])
    parsed = option_values(options)
    assert parsed["listen"] == "tcp:8046:interface=\\:\\:1"
    from twisted.internet import endpoints, reactor
    endpoint = endpoints.serverFromString(reactor, parsed["listen"])
    assert endpoint._interface == "::1"
    assert all(c.isalnum() or c in ".-" for c in parsed["name"])


def test_low_ports_peer_above_and_port_zero_stays_any():
    assert doozerd.peer_port(8046) == 7046
    assert doozerd.peer_port(900) == 1900
    assert doozerd.peer_port(0) == 0


def test_timeout_zero_is_off_and_fractions_pass():
    options, _ = twistd_args(["-timeout", "0"])
    assert "--silent-voter-timeout" not in options
    options, _ = twistd_args(["-timeout=2.5"])
    assert option_values(options)["silent-voter-timeout"] == 2.5


def test_ignored_flags_say_so():
    _, notes = twistd_args(["-pulse", "2", "-fill", "0.5", "-b", "doozer:?ca=1.2.3.4:8046"])
    assert len(notes) == 3
    assert any(n.startswith("-pulse is ignored") for n in notes)
    assert any(n.startswith("-fill is ignored") for n in notes)
    assert any(n.startswith("-b (DzNS boot) is ignored") for n in notes)
    _, notes = twistd_args([], environ={"DOOZER_BOOT_URI": "doozer:?ca=x:1"})
    assert notes == ["DOOZER_BOOT_URI is ignored: doozertw does not boot through DzNS"]


def test_tls_flags_make_an_ssl_client_port():
    options, _ = twistd_args(["-tlscert", "/etc/d:x/cert.pem", "-tlskey", "key=1.pem"])
    listen = option_values(options)["listen"]
    assert listen == ("ssl:8046:interface=127.0.0.1:certKey=/etc/d\\:x/cert.pem:"
                      "privateKey=key\\=1.pem")
    with pytest.raises(UsageError, match="need both"):
        twistd_args(["-tlscert", "cert.pem"])


def test_several_attach_addresses_take_the_first_that_answers():
    asked = []

    def reachable(address):
        asked.append(address)
        return address == "10.0.0.2:8046"

    options, _ = twistd_args(["-a", "10.0.0.1:8046", "-a", "10.0.0.2:8046"],
                             reachable=reachable)
    assert option_values(options)["attach"] == "10.0.0.2:8046"
    assert asked == ["10.0.0.1:8046", "10.0.0.2:8046"]
    options, _ = twistd_args(["-a", "10.0.0.1:8046", "-a", "10.0.0.2:8046"])
    assert option_values(options)["attach"] == "10.0.0.1:8046"   # none answers: the first


def test_one_attach_address_is_not_probed():
    def reachable(address):
        raise AssertionError("probed")
    options, _ = twistd_args(["-a", "127.0.0.1:8046"], reachable=reachable)
    assert option_values(options)["attach"] == "127.0.0.1:8046"


def test_options_after_double_dash_come_last_and_win():
    options, _ = twistd_args(["-l", "127.0.0.1:8046", "--", "--name", "n9", "--data-dir", "d"])
    assert options[-4:] == ["--name", "n9", "--data-dir", "d"]
    parsed = option_values(options)
    assert parsed["name"] == "n9" and parsed["data-dir"] == "d"


def test_peer_authentication_configured_means_no_insecure_peers():
    options, _ = twistd_args(["--", "--peer-secret-file", "s"])
    assert "--insecure-peers" not in options
    options, _ = twistd_args(["--", "--peer-secret-file=s"])
    assert "--insecure-peers" not in options
    for name in doozerd.PEER_AUTH_ENV:
        options, _ = twistd_args([], environ={name: "x"})
        assert "--insecure-peers" not in options, name


def test_derived_values_yield_to_their_variables():
    options, _ = twistd_args([], environ={"DOOZER_NAME": "n1", "DOOZER_PEER_LISTEN": "tcp:1"})
    assert "--name" not in options and "--peer-listen" not in options
    options, _ = twistd_args(["-name", "given", "-peer", "127.0.0.1:7999"],
                             environ={"DOOZER_NAME": "n1"})
    parsed = option_values(options)
    assert parsed["name"] == "given"
    assert parsed["peer-listen"] == "tcp:7999:interface=127.0.0.1"


def test_listen_and_web_from_the_environment_when_not_given_as_flags():
    # doozerd's HOST:PORT form reads as -l / -w
    parsed = option_values(twistd_args([], environ={"DOOZER_LISTEN": "127.0.0.1:9046",
                                                    "DOOZER_WEB": "false"})[0])
    assert parsed["listen"] == "tcp:9046:interface=127.0.0.1" and parsed["web"] == "none"
    assert parsed["name"] == "127.0.0.1-9046"
    assert parsed["peer-listen"] == "tcp:8046:interface=127.0.0.1"
    # twistd's endpoint form is left to twistd doozer, which reads the variable
    options, _ = twistd_args([], environ={"DOOZER_LISTEN": "tcp:9046:interface=::1",
                                          "DOOZER_WEB": "tcp:9000"})
    assert not {"--listen", "--web", "--name", "--peer-listen"} & set(options)
    # flags win over both
    parsed = option_values(twistd_args(["-l", "127.0.0.1:7777", "-w", "false"],
                                       environ={"DOOZER_LISTEN": "127.0.0.1:9046",
                                                "DOOZER_WEB": "127.0.0.1:1"})[0])
    assert parsed["listen"] == "tcp:7777:interface=127.0.0.1" and parsed["web"] == "none"


def test_every_mapped_flag_names_a_twistd_option():
    known = {o.rstrip("=") for o in tap.Options().longOpt}
    for flag in FLAGS:
        assert (flag.option is None) == bool(flag.note) or flag.name == "v", flag
        if flag.option is not None:
            assert flag.option.lstrip("-") in known, flag


# -- bad flags: Go's messages, usage, exit 2 ---------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["-x"], "flag provided but not defined: -x"),
    (["--listen", "a:1"], "flag provided but not defined: -listen"),
    (["-l"], "flag needs an argument: -l"),
    (["-timeout", "soon"], 'invalid value "soon" for flag -timeout: parse error'),
    (["-timeout", "nan"], 'invalid value "nan" for flag -timeout: parse error'),
    (["-hist", "1.5"], 'invalid value "1.5" for flag -hist: parse error'),
    (["-v=maybe"], 'invalid value "maybe" for flag -v: parse error'),
    (["extra"], "unexpected argument 'extra'"),
    (["-tlskey", "k.pem"], "need both cert file and key file"),
])
def test_bad_flags_print_the_usage_and_exit_2(argv, message):
    status, out, err, ran = run_main(argv)
    assert status == 2 and ran == [] and out == ""
    assert err.startswith(message)
    assert "Usage: doozerd" in err


@pytest.mark.parametrize("argv", [["-l", "nonsense"], ["-w", "host"], ["-a", "h:port"],
                                  ["-l", "h:70000"], ["-peer", "x"]])
def test_bad_addresses_exit_2(argv):
    status, _, err, ran = run_main(argv)
    assert status == 2 and ran == []
    assert err.startswith("doozerd: -") and "expected host:port" in err


def test_hostile_values_are_bounded():
    status, _, err, ran = run_main(["-c", "x" * 100_000])
    assert status == 2 and ran == []
    assert len(err) < 4000                    # the value is not echoed whole
    with pytest.raises(AddressError):
        doozerd.split_host_port("1" * 50 + ":" + "9" * 50, "l")


@pytest.mark.parametrize("flag", ["-h", "-help", "--help", "--h"])
def test_help_lists_every_flag_and_exits_0(flag):
    status, out, err, ran = run_main(["-l", "127.0.0.1:1", flag])
    assert status == 0 and ran == [] and out == ""
    for f in FLAGS:
        assert f"\n  -{f.name}" in err, f.name
    assert "\n  -v\tprint doozerd's version string\n" in err     # Go's short layout
    assert '\n  -l string\n    \tThe address to bind to. (default "127.0.0.1:8046")\n' in err
    assert 'If you give "-w false"' in err


def test_version():
    status, out, _, ran = run_main(["-v"])
    assert status == 0 and ran == []
    assert out.startswith("doozerd ")


def test_main_runs_twistd_with_the_translation_and_prints_notes():
    status, _, err, ran = run_main(["-l", "127.0.0.1:9000", "-pulse", "3"])
    assert status == 0
    assert ran[0][:3] == PREFIX and "tcp:9000:interface=127.0.0.1" in ran[0]
    assert err.startswith("doozerd: -pulse is ignored")


# -- the fire drill (real processes) ---------------------------------------------------


def client_and_peer_ports(count):
    """``count`` free client ports whose peer ports (minus 1000) are free too."""
    found: list[int] = []
    while len(found) < count:
        for port in free_ports(count * 2):
            if port > 2024 and port not in found and _free(port - 1000):
                found.append(port)
                if len(found) == count:
                    break
    return found


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def doozerd_command():
    installed = shutil.which("doozerd", path=os.path.dirname(sys.executable))
    return [installed] if installed else [sys.executable, "-m", "doozertw.doozerd"]


def doozer(port, *args, stdin=b"", check=True):
    done = subprocess.run([sys.executable, "-m", "doozertw.cli", "-a", f"127.0.0.1:{port}",
                           *args], input=stdin, capture_output=True, env=child_env(),
                          timeout=30)
    if check:
        assert done.returncode == 0, (args, done.stderr)
    return done


def eventually(what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = what()
            if result:
                return result
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


@pytest.fixture
def doozerds(tmp_path):
    """Start ``doozerd ARGS`` processes in tmp_path; all are killed at the end."""
    started = []

    def start(name, *args):
        log = open(tmp_path / f"{name}.log", "wb")
        process = subprocess.Popen([*doozerd_command(), *args], cwd=tmp_path, env=child_env(),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        started.append(process)
        return process

    def log_of(name):
        return (tmp_path / f"{name}.log").read_text(errors="replace")

    start.log_of = log_of
    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def serving(process, probe, log):
    def check():
        assert process.poll() is None, f"exited {process.returncode}:\n{log()[-3000:]}"
        return probe()
    return check


@pytest.mark.e2e
def test_fire_drill_with_doozerd_flags(doozerds):
    p1, p2, p3 = client_and_peer_ports(3)
    w1, w2 = free_ports(2)
    a = doozerds("a", "-l", f"127.0.0.1:{p1}", "-w", f"127.0.0.1:{w1}")
    eventually(serving(a, listening(p1), lambda: doozerds.log_of("a")))
    b = doozerds("b", "-l", f"127.0.0.1:{p2}", "-w", f"127.0.0.1:{w2}",
                 "-a", f"127.0.0.1:{p1}")
    c = doozerds("c", "-l", f"127.0.0.1:{p3}", "-w", "false", "-a", f"127.0.0.1:{p1}")
    eventually(serving(b, listening(p2), lambda: doozerds.log_of("b")))
    eventually(serving(c, listening(p3), lambda: doozerds.log_of("c")))
    eventually(listening(w1))
    eventually(listening(w2))
    # doozerd's way of making the attached nodes voters: empty slots they claim
    doozer(p1, "set", "/ctl/cal/1", "0")
    doozer(p1, "set", "/ctl/cal/2", "0")

    def three_voters():
        members = doozer(p1, "members").stdout.decode()
        return members.count(" voter ") == 3 and members

    members = eventually(three_voters)
    for port in (p1, p2, p3):
        assert f"127.0.0.1-{port} voter 127.0.0.1:{port}" in members
    # write through one node, read through another
    rev = int(doozer(p2, "set", "/message", "0", stdin=b"hello").stdout)
    assert doozer(p3, "get", "-r", str(rev), "/message").stdout == b"hello"
    assert doozer(p1, "get", "/message").stdout == b"hello"
    # kill the first node (the leader): the other two keep serving
    a.kill()
    a.wait(timeout=10)
    eventually(lambda: doozer(p3, "set", "/message", "-1", stdin=b"again",
                              check=False).returncode == 0)
    assert doozer(p2, "get", "/message").stdout == b"again"
    assert b.poll() is None and c.poll() is None
    log_c = doozerds.log_of("c")
    assert "doozerd:" not in log_c          # no flag was ignored


@pytest.mark.e2e
def test_installed_doozerd_rejects_unknown_flags_like_go(tmp_path):
    done = subprocess.run([*doozerd_command(), "-nosuch"], cwd=tmp_path, env=child_env(),
                          capture_output=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.decode().startswith("flag provided but not defined: -nosuch\nUsage:")
