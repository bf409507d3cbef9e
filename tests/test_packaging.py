"""Packaging: one version number, and an sdist and a wheel that work.

The quick tests (no process) check that ``doozertw.__version__`` is the one
version: setup.py reads it, ``doozer -v``/``--version`` print it, /health
and ``/ctl/node/<name>/version`` show it, CHANGELOG.md has its section.

The e2e test builds the sdist and the wheel from this checkout with
``python -m build`` (the wheel from the sdist, as a release would), checks
what they carry, installs the wheel into a fresh venv (dependencies from the
package index) and, from another directory, runs ``twistd doozer --help``,
``doozer -v``, ``doozerd -h`` (when the wheel has that script) and a node
whose web port must serve the web view's static files.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile

import pytest

from doozertw import __version__, cli
from doozertw.node import Node
from doozertw.testing.node_process import free_ports
from doozertw.testing.web import Client, make_site

ROOT = pathlib.Path(__file__).parent.parent


# -- one version number --------------------------------------------------------------


def read_version_of_setup_py():
    """setup.py's own ``read_version``, run on this checkout (setup.py itself
    calls setup() when imported, so only that function is taken out)."""
    source = (ROOT / "setup.py").read_text("utf-8")
    func = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)
                and n.name == "read_version")
    scope = {"__file__": str(ROOT / "setup.py")}
    exec("import pathlib\nimport re\n" + ast.get_source_segment(source, func), scope)
    return scope["read_version"]()


def test_setup_py_reads_the_packages_version():
    assert read_version_of_setup_py() == __version__
    text = (ROOT / "setup.py").read_text("utf-8")
    assert "version=read_version()" in text
    assert not re.search(r"version\s*=\s*['\"]\d", text), "a second version number"


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_doozer_prints_the_version(flag):
    out, err = io.BytesIO(), io.StringIO()
    assert cli.main([flag], stdout=out, stderr=err, environ={}) == 0
    assert out.getvalue() == f"doozer {__version__}\n".encode()


def test_health_and_ctl_show_the_version():
    node = Node(name="n1")
    client = Client(make_site(node))
    code, body = client.json("GET", "/health")
    assert code == 200 and body["version"] == __version__
    done = []
    node.describe_self("127.0.0.1:8046", hostname="h").addCallback(done.append)
    assert done
    assert node.store.get("/ctl/node/n1/version")[0] == __version__.encode()


def test_changelog_has_a_section_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text("utf-8")
    assert "Keep a Changelog" in text
    assert re.search(rf"^## \[{re.escape(__version__)}\]", text, re.MULTILINE)


# -- build, install, run ------------------------------------------------------------


def run(args, cwd, timeout=120, env=None):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_sdist(path):
    with tarfile.open(path) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for name in ("setup.py", "MANIFEST.in", "README.md", "CHANGELOG.md",
                 "twisted/plugins/doozer_plugin.py", "web/index.html", "web/app.js",
                 "web/app.css", "docs/operations.md", "contrib/grafana/doozertw.json",
                 "doozertw/__init__.py"):
        assert name in names, name
    man = ROOT / "docs" / "man"
    if man.is_dir():
        for page in man.iterdir():
            assert f"docs/man/{page.name}" in names, page.name


def check_wheel(path):
    with zipfile.ZipFile(path) as whl:
        names = set(whl.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert f"Version: {__version__}\n" in whl.read(meta).decode()
    for name in ("twisted/plugins/doozer_plugin.py", "doozertw_web/index.html",
                 "doozertw_web/app.js", "doozertw/frontends/web/metrics.py"):
        assert name in names, name


def serve_and_fetch(venv_bin, cwd):
    """A node from the installed package, in memory on free ports: its web
    port serves the web view and /health shows the version."""
    client, web = free_ports(2)
    node = subprocess.Popen(
        [str(venv_bin / "twistd"), "-n", "--pidfile=", "doozer", "--in-memory",
         "--listen", f"tcp:{client}:interface=127.0.0.1",
         "--web", f"tcp:{web}:interface=127.0.0.1"],
        cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{web}"
        deadline = time.monotonic() + 30
        while True:
            assert node.poll() is None, node.stdout.read().decode(errors="replace")
            try:
                code, body = get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline, "the web port never answered"
                time.sleep(0.2)
        assert code == 200 and b"<title>doozer</title>" in body
        for name in ("app.js", "app.css", "favicon.svg"):
            assert get(f"{base}/{name}")[0] == 200, name
        code, body = get(base + "/health")
        assert code == 200 and json.loads(body)["version"] == __version__
    finally:
        node.terminate()
        node.wait(timeout=20)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_sdist_and_wheel_build_install_and_run(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp_path,
        timeout=180, env=clean_env())
    sdists = list(dist.glob(f"doozertw-{__version__}.tar.gz"))
    wheels = list(dist.glob(f"doozertw-{__version__}-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(dist.iterdir())
    check_sdist(sdists[0])
    check_wheel(wheels[0])

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    bin_ = venv / "bin"
    run([str(bin_ / "pip"), "install", "--quiet", str(wheels[0])], cwd=tmp_path,
        timeout=180, env=clean_env())

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    helped = run([str(bin_ / "twistd"), "doozer", "--help"], cwd=elsewhere, env=clean_env())
    assert "--data-dir" in helped.stdout and "--in-memory" in helped.stdout
    shown = run([str(bin_ / "doozer"), "-v"], cwd=elsewhere, env=clean_env())
    assert shown.stdout == f"doozer {__version__}\n"
    if (bin_ / "doozerd").exists():
        usage = subprocess.run([str(bin_ / "doozerd"), "-h"], cwd=elsewhere, env=clean_env(),
                               capture_output=True, text=True, timeout=60)
        assert usage.returncode in (0, 2), usage.stderr  # Go's flag package exits 2 on -h
        assert "-l" in usage.stdout + usage.stderr
    serve_and_fetch(bin_, elsewhere)
