"""``--print-config`` and the option table of docs/configuration.md.

Both are generated from the option specs (``doozertw.tap.option_specs``,
built from ``tap.Options``), so neither can drift from the options:
``effective`` lists every option's effective value and where it came from
(``flag``, ``env NAME``, ``file``, ``default``), secrets as set or not set,
never their values; ``options_table`` is the Markdown table the docs
carry (tests/test_config_env.py compares them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from doozertw import config
from doozertw.config import FLAG, ClusterConfig, NodeConfig, OptionSpec

ACTIONS = ("print-config",)
"""Options that do something rather than configure: not printed."""


def _value(spec: OptionSpec, options: Mapping, cluster: ClusterConfig,
           node: NodeConfig) -> Any:
    """The effective value of option ``spec``."""
    special = {
        "config": lambda: options.get("config"),
        "peers": lambda: ",".join(f"{n}={a}" for n, a in sorted(cluster.voters().items())
                                  if n != node.name) or None,
        "data-dir": lambda: "(in memory)" if node.in_memory else cluster.data_dir_of(node),
        "protect-metrics": lambda: cluster.web.protect_metrics,
        "web-access-log": lambda: cluster.web.access_log,
        "web-host": lambda: ",".join(cluster.web.hosts) or None,
    }
    if spec.name in special:
        return special[spec.name]()
    if hasattr(node, spec.key) and spec.key != "data_dir":
        return getattr(node, spec.key)
    return getattr(cluster, spec.key)


def _source(spec: OptionSpec, origins: Mapping, raw: Mapping, node: str) -> str:
    origin = origins.get(spec.key)
    if origin == "flag":
        return "flag"
    if origin:
        return f"env {origin}"
    nodes = raw.get("nodes") if isinstance(raw, Mapping) else None
    if isinstance(nodes, Mapping):  # the only node's name; the other voters
        if (spec.name, len(nodes) > 1) in (("name", False), ("peers", True)) and nodes:
            return "file"
    return "file" if config.file_has(raw, spec.yaml, node) else "default"


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def effective(specs: Sequence[OptionSpec], options: Mapping, origins: Mapping,
              cluster: ClusterConfig, node: NodeConfig, raw: Mapping,
              environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(option, value, source) rows of the effective configuration, then
    the two secrets (``(set)`` or ``(not set)``: never the value)."""
    rows = [(f"--{spec.name}", _shown(_value(spec, options, cluster, node)),
             _source(spec, origins, raw, node.name))
            for spec in specs if spec.name not in ACTIONS]
    file_secrets = raw.get("secrets") if isinstance(raw, Mapping) else None
    file_secrets = file_secrets if isinstance(file_secrets, Mapping) else {}
    for label, variable, value, key in (
            ("rw secret", "DOOZER_RWSECRET", cluster.secrets.rw, "rw"),
            ("ro secret", "DOOZER_ROSECRET", cluster.secrets.ro, "ro")):
        rows.append((label, "(set)" if value else "(not set)",
                     config.secret_source(environ, variable, file_secrets.get(key))))
    return rows


def render(rows: Sequence[tuple[str, str, str]], node: str) -> str:
    """The rows as aligned text, under one heading line."""
    width = max(len(option) for option, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 48)
    lines = [f"# effective configuration of node {node} (flag > env > file > default)"]
    lines += [f"{option:<{width}}  {value:<{value_width}}  {source}"
              for option, value, source in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Plain text for a table cell: one line, ``|`` and ``<>`` escaped."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _default(text: str) -> str:
    """A default as a table cell: a single value as code, words as text."""
    if text and " " not in text and text not in ("none", "off"):
        return f"`{text}`"
    return _cell(text)


def options_table(specs: Sequence[OptionSpec]) -> str:
    """The Markdown table of docs/configuration.md: one row per option
    (flag, environment variable, file key, default, meaning)."""
    lines = ["| option | environment | file key | default | meaning |",
             "| --- | --- | --- | --- | --- |"]
    for spec in specs:
        flag = f"`--{spec.name}`" + (f", `-{spec.short}`" if spec.short else "")
        env = f"`{spec.env}`" if spec.env else "none"
        if spec.env and spec.kind == FLAG:
            env += "=1"
        key = ", ".join(f"`{k.strip()}`" for k in spec.yaml.split(",")) if spec.yaml else "none"
        lines.append(f"| {flag} | {env} | {key} | {_default(spec.default)} "
                     f"| {_cell(spec.meaning)} |")
    return "\n".join(lines) + "\n"
