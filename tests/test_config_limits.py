"""The ``limits:`` section of the YAML file, and the timeouts' names.

A bad limit is refused with one line naming the file and the key; the old
spellings of the timeouts (``--request-timeout``, ``--timeout``,
``request_timeout:`` at the top of the file or under ``limits:``) still
work but print a one-line warning.
"""

import inspect
import pathlib
import re

import attrs
import pytest
import yaml

from doozertw import config
from doozertw.limits import DEFAULT_QUORUM_TIMEOUT, Limits, LimitsError


def load(tmp_path, text):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return config.load(str(path)), str(path)


def refused(tmp_path, text):
    """The one-line ConfigError loading ``text`` gives."""
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(path))
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path) + ": ")
    return message


def test_no_limits_section_gives_the_defaults(tmp_path):
    cluster, _ = load(tmp_path, "cluster: c\n")
    assert cluster.limits == Limits()
    cluster, _ = load(tmp_path, "limits:\n")
    assert cluster.limits == Limits()


def test_good_limits_are_taken_and_seconds_become_floats(tmp_path):
    cluster, _ = load(tmp_path, "limits:\n  max_value: 4096\n  request_send_timeout: 10\n"
                                "  access_lockout: 0.5\n")
    assert cluster.limits.max_value == 4096
    assert cluster.limits.request_send_timeout == 10.0
    assert isinstance(cluster.limits.request_send_timeout, float)
    assert cluster.limits.access_lockout == 0.5


def test_an_unknown_limit_is_named(tmp_path):
    message = refused(tmp_path, "limits:\n  max_valeu: 10\n")
    assert "limits.max_valeu is not a setting" in message and "max_value" in message


@pytest.mark.parametrize("key, value, expected", [
    ("max_value", "'1 MiB'", "limits.max_value must be an integer, not '1 MiB'"),
    ("max_value", "1.5", "limits.max_value must be an integer, not 1.5"),
    ("max_watches", "true", "limits.max_watches must be an integer, not True"),
    ("max_frame", "[1]", "limits.max_frame must be an integer, not [1]"),
    ("request_send_timeout", "30s", "limits.request_send_timeout must be a number of seconds"),
    ("access_lockout", "false", "limits.access_lockout must be a number of seconds, not False"),
])
def test_a_limit_of_the_wrong_type_is_named(tmp_path, key, value, expected):
    assert expected in refused(tmp_path, f"limits:\n  {key}: {value}\n")


@pytest.mark.parametrize("key, value", [
    ("max_value", "0"), ("max_in_flight", "-1"), ("request_send_timeout", "0"),
    ("access_lockout", "-0.5"), ("max_connections", "0"),
])
def test_a_zero_or_negative_limit_is_refused(tmp_path, key, value):
    message = refused(tmp_path, f"limits:\n  {key}: {value}\n")
    assert f"limits.{key} must be" in message and "above 0" in message
    assert message.endswith(f"not {value}") or message.endswith(f"not {float(value)}")


@pytest.mark.parametrize("key, value", [
    ("max_value", 2 ** 40), ("max_depth", 10 ** 9), ("request_send_timeout", 10 ** 7),
    ("max_in_flight", 10 ** 12),
])
def test_an_absurd_limit_is_refused(tmp_path, key, value):
    message = refused(tmp_path, f"limits:\n  {key}: {value}\n")
    assert f"limits.{key} must be" in message and "at most" in message


def test_a_lockout_cap_below_the_lockout_is_refused(tmp_path):
    message = refused(tmp_path, "limits:\n  access_lockout: 60\n  access_lockout_max: 30\n")
    assert "limits.access_lockout_max must be at least limits.access_lockout" in message


def test_limits_must_be_a_mapping(tmp_path):
    assert "limits must be a mapping" in refused(tmp_path, "limits: [max_value]\n")


def test_every_limit_has_a_ceiling_its_default_respects():
    from doozertw.limits import _CEILINGS
    assert set(_CEILINGS) == {f.name for f in attrs.fields(Limits)}
    assert Limits.from_mapping(attrs.asdict(Limits()), "defaults") == Limits()


def test_from_mapping_names_where_and_accepts_none():
    assert Limits.from_mapping(None, "x") == Limits()
    with pytest.raises(LimitsError, match=r"^here\.yaml: limits\.max_path "):
        Limits.from_mapping({"max_path": 0}, "here.yaml")


def test_old_name_of_request_send_timeout_warns(tmp_path, capsys):
    cluster, path = load(tmp_path, "limits:\n  request_timeout: 12\n")
    assert cluster.limits.request_send_timeout == 12.0
    err = capsys.readouterr().err
    assert err == (f"warning: {path}: limits.request_timeout is deprecated; "
                   "use limits.request_send_timeout\n")
    message = refused(tmp_path, "limits:\n  request_timeout: 12\n  request_send_timeout: 9\n")
    assert "request_send_timeout only" in message
    assert "0 and" in refused(tmp_path, "limits:\n  request_timeout: 0\n")


def test_old_name_of_quorum_timeout_in_yaml_warns(tmp_path, capsys):
    cluster, path = load(tmp_path, "request_timeout: 2\n")
    assert cluster.quorum_timeout == 2.0
    assert capsys.readouterr().err == (
        f"warning: {path}: request_timeout is deprecated; use quorum_timeout\n")
    assert "quorum_timeout only" in refused(tmp_path, "request_timeout: 2\nquorum_timeout: 3\n")
    cluster, _ = load(tmp_path, "quorum_timeout: 7\n")
    assert cluster.quorum_timeout == 7.0 and capsys.readouterr().err == ""


def test_the_quorum_timeout_default_lives_in_one_place():
    from doozertw.cluster.driver import Timing
    from doozertw.cluster.service import ClusterService
    assert config.ClusterConfig().quorum_timeout == DEFAULT_QUORUM_TIMEOUT
    assert Timing().quorum_timeout == DEFAULT_QUORUM_TIMEOUT
    default = inspect.signature(ClusterService).parameters["quorum_timeout"].default
    assert default == DEFAULT_QUORUM_TIMEOUT


def parse_options(*argv):
    from doozertw import tap
    options = tap.Options()
    options.parseOptions(["--in-memory", *argv])
    return options


def test_new_timeout_options(capsys):
    options = parse_options("--quorum-timeout", "1.5", "--silent-voter-timeout", "9")
    assert options.cluster.quorum_timeout == 1.5
    assert options.node.silent_voter_timeout == 9.0
    assert capsys.readouterr().err == ""
    assert parse_options().cluster.quorum_timeout == DEFAULT_QUORUM_TIMEOUT
    assert parse_options().node.silent_voter_timeout is None


def test_old_timeout_options_still_work_with_a_warning(capsys):
    options = parse_options("--request-timeout", "2.5", "--timeout", "30")
    assert options.cluster.quorum_timeout == 2.5
    assert options.node.silent_voter_timeout == 30.0
    assert capsys.readouterr().err.splitlines() == [
        "warning: --request-timeout is deprecated; use --quorum-timeout",
        "warning: --timeout is deprecated; use --silent-voter-timeout",
    ]


def test_a_bad_old_timeout_option_is_refused():
    from twisted.python import usage
    startup_failure = (usage.UsageError, SystemExit)  # tap reports either in one line
    with pytest.raises(startup_failure, match="--quorum-timeout must be positive"):
        parse_options("--request-timeout", "-1")
    with pytest.raises(startup_failure, match="--silent-voter-timeout must be a number"):
        parse_options("--timeout", "soon")


def test_the_documented_cluster_file_loads_without_warnings(capsys):
    docs = pathlib.Path(__file__).resolve().parent.parent / "docs"
    text = (docs / "configuration.md").read_text()
    block = re.search(r"## The cluster file\s+```yaml\n(.*?)```", text, re.S).group(1)
    cluster = config.parse(yaml.safe_load(block), "docs/configuration.md")
    assert cluster.quorum_timeout == DEFAULT_QUORUM_TIMEOUT
    assert cluster.limits == Limits()  # the example lists every limit at its default
    assert capsys.readouterr().err == ""
