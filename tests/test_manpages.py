"""The man pages doozer(1) and doozerd(8): generated from the commands'
own definitions, committed under docs/man, never out of date, and
well-formed roff (a lint here; groff/man render them in the e2e test)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from doozertw import cli, doozerd, manpages

DOCS_MAN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "man")
REGENERATE = "regenerate them: python -m doozertw.manpages --out docs/man"


def test_docs_man_is_up_to_date():
    assert manpages.stale(DOCS_MAN) == [], REGENERATE


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    manpages.write_all(str(tmp_path))
    assert manpages.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "doozerd.8").write_text("old\n")
    assert manpages.main(["--out", str(tmp_path), "--check"]) == 1
    assert "doozerd.8 is out of date" in capsys.readouterr().err
    os.remove(tmp_path / "doozer.1")
    assert manpages.stale(str(tmp_path)) == ["doozer.1", "doozerd.8"]


def roff_requests(page):
    return [line for line in page.splitlines() if line.startswith((".", "'"))]


@pytest.mark.parametrize("name", sorted(manpages.PAGES))
def test_roff_lint(name):
    """Every request is a known macro; no stray escape reaches the text."""
    page = manpages.render_all()[name]
    for line in roff_requests(page):
        if line.startswith('.\\"'):
            continue
        macro = line[1:].split(" ", 1)[0]
        assert line.startswith("."), line
        assert macro in manpages.KNOWN_MACROS, line
    for line in page.splitlines():
        # a backslash only as a known escape: \e \- \& \fB \fI \fR \(dq \"
        assert not re.search(r'\\(?![e\-&"]|f[BIR]|\(dq)', line), line
    assert page.count(".nf") == page.count(".fi")
    assert page.count(".RS") == page.count(".RE")


def test_text_escapes_requests_and_backslashes():
    assert manpages.text(".hostile") == "\\&.hostile"
    assert manpages.text("'quote") == "\\&'quote"
    assert manpages.text("a\\b-c") == "a\\eb\\-c"
    assert manpages.paragraphs("..x\n\n  .nf\n  ok") == [
        "\\&..x", ".PP", ".RS 4", ".nf", "\\&.nf", "ok", ".fi", ".RE"]


def test_doozer_page_covers_the_cli():
    page = manpages.render_all()["doozer.1"]
    assert page.startswith('.\\" Generated')
    assert ".TH DOOZER 1 " in page
    for name in cli.COMMANDS:
        assert f"\n\\fB{manpages.text(name)}\\fR" in page, name
    for flag, _, _, _ in cli._FLAG_HELP:
        for spelling in flag.split(", "):
            assert f"\\fB{manpages.text(spelling)}\\fR" in page, spelling
    for env in ["DOOZER_URI", "DOOZER_BOOT_URI", *cli._TLS_ENV.values()]:
        assert f"\\fB{env}\\fR" in page
    # argparse-defined commands, introspected
    assert "\\fBsnapshot restore\\fR" in page and "\\fB\\-\\-voters\\fR" in page
    for section in ("SYNOPSIS", "OPTIONS", "COMMANDS", "ENVIRONMENT", "EXIT STATUS",
                    "EXAMPLES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in page
    assert ".BR doozerd (8)" in page


def test_doozerd_page_covers_every_flag_and_twistd_option():
    page = manpages.render_all()["doozerd.8"]
    assert ".TH DOOZERD 8 " in page
    for flag in doozerd.FLAGS:
        assert f"\\fB\\-{manpages.text(flag.name)}\\fR" in page, flag.name
        if flag.note:
            assert manpages.text(flag.note) in page
    options = manpages.twistd_options()
    assert len(options) > 20
    for variable, name, _ in options:
        assert variable == doozerd.env_name(name)
        assert f"\\fB{variable}\\fR" in page, name
    assert "DOOZER_PEER_SECRET_FILE" in page and "DOOZER_TIMEOUT" not in page  # deprecated
    for section in ("SYNOPSIS", "OPTIONS", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in page
    assert ".BR doozer (1)" in page


def test_a_changed_definition_changes_the_page(monkeypatch):
    before = manpages.doozerd_page()
    flags = (*doozerd.FLAGS, doozerd.Flag("zzz", "int", "7", "a new flag", "--history"))
    monkeypatch.setattr(doozerd, "FLAGS", flags)
    after = manpages.doozerd_page()
    assert before != after and "\\fB\\-zzz\\fR" in after


def _render(tool):
    return subprocess.run(tool, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat",
                               "PAGER": "cat"})


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(manpages.PAGES))
def test_groff_renders_without_warnings(name):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    path = os.path.join(DOCS_MAN, name)
    done = _render(["groff", "-man", "-Tutf8", "-ww", "-z", path])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    if shutil.which("man") is None:
        return
    shown = _render(["man", "-l", path])
    assert shown.returncode == 0, shown.stderr
    assert "NAME" in shown.stdout and "EXAMPLES" in shown.stdout
    assert "\\" not in shown.stdout                 # no escape leaked into the text
