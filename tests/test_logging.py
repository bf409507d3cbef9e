"""Log level and format (doozertw.logging_setup): the filter, the JSON
lines, how the plugin installs them into twistd; and, marked e2e, real
``twistd -n doozer`` processes with --log-level WARN and --log-format json."""

import io
import json

import pytest
from twisted.logger import LogLevel, Logger, eventsFromJSONLogFile

from doozertw import logging_setup
from doozertw.logging_setup import (
    FACTORY, LoggingError, Plan, filtered, format_named, install, json_line, level_named)


@pytest.mark.parametrize("text, name", [
    ("debug", "DEBUG"), ("Info", "INFO"), ("WARN", "WARN"), ("warning", "WARN"),
    (" error ", "ERROR")])
def test_level_names(text, name):
    assert level_named(text) == name


@pytest.mark.parametrize("bad", ["critical", "", "2", "WARNINGS"])
def test_bad_level_names(bad):
    with pytest.raises(LoggingError, match="use one of DEBUG, INFO, WARN, ERROR"):
        level_named(bad)


def test_format_names():
    assert format_named("JSON") == "json" and format_named("text") == "text"
    with pytest.raises(LoggingError, match="use text or json"):
        format_named("xml")


def emit_all(observer):
    log = Logger(namespace="t", observer=observer)
    log.debug("d-line")
    log.info("i-line")
    log.warn("w-line")
    log.error("e-line")
    log.critical("c-line")


@pytest.mark.parametrize("level, seen", [
    ("DEBUG", ["d", "i", "w", "e", "c"]),
    ("INFO", ["i", "w", "e", "c"]),
    ("WARN", ["w", "e", "c"]),
    ("ERROR", ["e", "c"])])
def test_the_filter_passes_the_level_and_above(level, seen):
    events = []
    emit_all(filtered(events.append, level))
    assert [e["log_format"][0] for e in events] == seen


def test_json_lines_round_trip_with_their_text():
    out = io.StringIO()
    log = Logger(namespace="doozer.test", observer=logging_setup.json_file_observer(out))
    log.warn("peer {peer} said {n} things", peer="n2", n=3)
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1 and "\x1e" not in line
    event = json.loads(line)
    assert event["log_level"]["name"] == "warn"
    assert event["log_text"] == "peer n2 said 3 things"
    assert event["peer"] == "n2" and event["log_namespace"] == "doozer.test"
    restored, = eventsFromJSONLogFile(io.StringIO(line), recordSeparator="")
    assert restored["log_level"] == LogLevel.warn


def test_json_lines_survive_unserialisable_fields():
    event = json.loads(json_line({"log_level": LogLevel.info, "log_format": "{x}",
                                  "x": object(), "log_time": 1.0}))
    assert event["log_text"].startswith("<object object")


def test_install_points_twistd_at_the_factory():
    parent = {"logger": None, "logfile": "-", "nodaemon": True, "syslog": False, "prefix": ""}
    plan = install(parent, "warning", "json")
    assert parent["logger"] == FACTORY
    assert plan == Plan(level="WARN", fmt="json", logfile="-", nodaemon=True)
    # parsing twice (twistd does not, but a test might) keeps the user's logger
    assert install(parent, "INFO", "text").logger is None


def test_install_wraps_a_logger_the_user_gave_and_keeps_its_format():
    parent = {"logger": "doozertw.testing.node_events.observer", "logfile": None}
    plan = install(parent, "ERROR", "text")
    assert plan.logger == "doozertw.testing.node_events.observer"
    assert parent["logger"] == FACTORY


@pytest.mark.parametrize("parent, message", [
    ({"logger": "x.y"}, "twistd's --logger x.y chooses the format"),
    ({"syslog": True}, "twistd's --syslog chooses the format")])
def test_json_with_a_twistd_format_choice_is_refused(parent, message):
    with pytest.raises(LoggingError, match=message):
        install(dict(parent), "INFO", "json")


def test_the_observer_writes_the_log_file_as_json(tmp_path):
    path = tmp_path / "node.log"
    observer = logging_setup.observer(Plan(level="INFO", fmt="json", logfile=str(path)))
    emit_all(observer)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["log_text"] for line in lines] == [
        "i-line", "w-line", "e-line", "c-line"]


def test_the_observer_writes_text_as_twistd_would(tmp_path):
    path = tmp_path / "node.log"
    observer = logging_setup.observer(Plan(level="WARN", fmt="text", logfile=str(path)))
    emit_all(observer)
    text = path.read_text()
    assert "w-line" in text and "i-line" not in text and "[t#warn]" in text


def test_the_observer_filters_a_user_logger():
    observer = logging_setup.observer(Plan(level="ERROR", logger="test_logging.recording"))
    emit_all(observer)
    assert [e["log_format"] for e in RECORDED] == ["e-line", "c-line"]


RECORDED = []


def recording():
    """A --logger factory for the test above."""
    RECORDED.clear()
    return RECORDED.append


# -- real twistd processes ------------------------------------------------------------------


def _node(tmp_path, *options):
    from doozertw.testing.node_process import endpoint, free_ports
    from doozertw.testing.spawn import listening, start_twistd
    client, peer = free_ports(2)
    node = start_twistd(["--data-dir", "d", "--insecure-peers", "--web", "none",
                         "--listen", endpoint(client), "--peer-listen", endpoint(peer),
                         *options], tmp_path, listening(client), name="n1")
    return node, client


def _settled(node, client):
    """Stop the node once it has served a write (so its start is all logged)."""
    from doozertw.testing.spawn import writable
    node.wait_ready(writable(client), timeout=30)
    assert node.stop() == 0
    return node.log_text()


@pytest.mark.e2e
def test_warn_level_hides_info_and_keeps_warnings(tmp_path):
    node, client = _node(tmp_path, "--log-level", "WARN")
    text = _settled(node, client)
    assert "INSECURE" in text                       # a warning
    assert "serving: client port" not in text       # info
    assert "starting up" not in text                # twistd's own info


@pytest.mark.e2e
def test_the_level_from_the_environment(tmp_path):
    from doozertw.testing.node_process import endpoint, free_ports
    from doozertw.testing.proxy import child_env
    from doozertw.testing.spawn import Twistd, listening
    client, peer = free_ports(2)
    node = Twistd(("--data-dir", "d", "--insecure-peers", "--web", "none", "--listen",
                   endpoint(client), "--peer-listen", endpoint(peer)), str(tmp_path), "n1",
                  env={**child_env(), "DOOZER_LOG_LEVEL": "error"})
    node.launch().wait_ready(listening(client))
    text = _settled(node, client)
    assert "INSECURE" not in text and "serving" not in text


@pytest.mark.e2e
def test_json_format_every_line_is_a_json_event(tmp_path):
    node, client = _node(tmp_path, "--log-format", "json")
    text = _settled(node, client)
    lines = text.splitlines()
    assert len(lines) > 5
    events = [json.loads(line) for line in lines]
    assert all(event["log_level"]["name"] in ("debug", "info", "warn", "error", "critical")
               for event in events)
    texts = [event["log_text"] for event in events]
    assert any("serving: client port" in t for t in texts)
    assert any(e["log_level"]["name"] == "warn" and "INSECURE" in e["log_text"]
               for e in events)


@pytest.mark.e2e
def test_a_user_logger_is_filtered_too(tmp_path):
    from doozertw.testing.node_process import endpoint, free_ports
    from doozertw.testing.spawn import Twistd, listening
    client, peer = free_ports(2)
    node = Twistd(("--data-dir", "d", "--insecure-peers", "--web", "none", "--listen",
                   endpoint(client), "--peer-listen", endpoint(peer), "--log-level", "WARN"),
                  str(tmp_path), "n1", logger="doozertw.testing.node_events.observer")
    node.launch().wait_ready(listening(client))
    text = _settled(node, client)
    events = (tmp_path / "events.jsonl").read_text().splitlines()
    assert "INSECURE" in text and "serving" not in text
    assert events and all(json.loads(e)["log_level"]["name"] != "info" for e in events)
