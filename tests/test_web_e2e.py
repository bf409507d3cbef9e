"""End to end in headless Chromium: `twistd doozer` serving the web view.

The node runs as a twistd subprocess (from the same doozertw the tests
import); the browser is Debian's chromium driven by selenium through
chromedriver. A key set over the client port (text protocol) must appear in
the page's tree, highlighted; a screenshot goes to reports/.
"""

import json
import os
import pathlib
import shutil
import socket
import tempfile
import urllib.error
import urllib.request

import pytest

from doozertw.testing.node_process import endpoint, free_ports
from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import http_ok, start_twistd

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver; scripts/system-deps.sh does it)",
                allow_module_level=True)

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # a broken test setup, not a reason to skip: the browser fixture fails
    webdriver = None

REPORTS = pathlib.Path(__file__).resolve().parent.parent / "reports"


def start_node(tmp_path, env_extra=None, ports=None):
    """A durable node in ``tmp_path`` (its data survives a restart there);
    returns (Twistd, client port, web port, peer port)."""
    client, web, peer = ports or free_ports(3)
    node = start_twistd(
        ["--name", "web-e2e", "--listen", endpoint(client), "--web", endpoint(web),
         "--peer-listen", endpoint(peer)],
        tmp_path, http_ok(f"http://127.0.0.1:{web}/livez"), name="web-e2e",
        env=child_env(dict(os.environ, **(env_extra or {}))))
    return node, client, web, peer


@pytest.fixture
def node_ports(tmp_path):
    proc, client, web, _ = start_node(tmp_path)
    yield client, web
    proc.stop()


@pytest.fixture
def secured_node(tmp_path):
    proc, client, web, _ = start_node(tmp_path, {"DOOZER_RWSECRET": "e2e-secret"})
    yield client, web
    proc.stop()


@pytest.fixture
def browser():
    if webdriver is None:
        pytest.fail("selenium is not installed; it belongs in the test extras"
                    " (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="doozer-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1300,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_command(port, line):
    """Send one text-protocol command to the client port; return the reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line.encode("utf-8") + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode("utf-8").strip()


def row(driver, path):
    rows = driver.find_elements(By.CSS_SELECTOR, f'#tree tr.file[data-path="{path}"]')
    return rows[0] if rows else None


def wait_live(driver):
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "open")


def test_key_set_over_client_port_appears_highlighted(node_ports, browser):
    client, web = node_ports
    browser.get(f"http://127.0.0.1:{web}/")
    wait_live(browser)
    WebDriverWait(browser, 10).until(
        lambda d: "web-e2e" in d.find_element(By.ID, "cluster").text)
    assert "leader" in browser.find_element(By.ID, "cluster").text

    reply = text_command(client, "set /e2e/greeting hello-from-the-client-port")
    assert reply.startswith("OK REV"), reply

    def highlighted(d):
        r = row(d, "/e2e/greeting")
        return r is not None and "changed" in r.get_attribute("class").split() and r
    tr = WebDriverWait(browser, 10).until(highlighted)
    assert "hello-from-the-client-port" in tr.text
    REPORTS.mkdir(exist_ok=True)
    shot = REPORTS / "web-e2e.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000


def test_edit_from_the_page_and_history(node_ports, browser):
    client, web = node_ports
    text_command(client, "set /e2e/edit first")
    browser.get(f"http://127.0.0.1:{web}/")
    wait_live(browser)
    WebDriverWait(browser, 10).until(lambda d: row(d, "/e2e/edit") is not None)
    row(browser, "/e2e/edit").click()
    value = browser.find_element(By.ID, "edit-value")
    assert value.get_attribute("value") == "first"
    value.clear()
    value.send_keys("second")
    browser.find_element(By.ID, "edit-save").click()
    WebDriverWait(browser, 10).until(
        lambda d: "second" in (row(d, "/e2e/edit").text if row(d, "/e2e/edit") else ""))
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/v1/keys/e2e/edit") as r:
        assert json.load(r)["value"] == "second"
    # the history shows both versions (walked back through past revisions)
    WebDriverWait(browser, 10).until(
        lambda d: "first" in d.find_element(By.ID, "history").text
        and "second" in d.find_element(By.ID, "history").text)
    # a stale CAS from the page is refused and says so
    browser.find_element(By.ID, "edit-rev").clear()
    browser.find_element(By.ID, "edit-rev").send_keys("1")
    browser.find_element(By.ID, "edit-save").click()
    WebDriverWait(browser, 10).until(
        lambda d: "REV_MISMATCH" in d.find_element(By.ID, "edit-status").text)


def test_page_asks_for_the_secret(secured_node, browser):
    client, web = secured_node
    browser.get(f"http://127.0.0.1:{web}/")
    form = browser.find_element(By.ID, "secret-form")
    WebDriverWait(browser, 10).until(lambda d: form.is_displayed())
    assert browser.find_element(By.ID, "conn").get_attribute("data-state") != "open"
    browser.find_element(By.ID, "secret").send_keys("e2e-secret")
    form.find_element(By.TAG_NAME, "button").click()
    wait_live(browser)
    assert not form.is_displayed()


def test_reconnects_with_backoff_after_the_node_restarts(tmp_path, browser):
    proc, client, web, peer = start_node(tmp_path)
    try:
        text_command(client, "set /before/restart old")
        browser.get(f"http://127.0.0.1:{web}/")
        wait_live(browser)
        WebDriverWait(browser, 10).until(lambda d: row(d, "/before/restart") is not None)
        proc.stop()
        WebDriverWait(browser, 10).until(
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "closed")
        assert "retrying" in browser.find_element(By.ID, "conn").text
        proc, client, web, peer = start_node(tmp_path, ports=(client, web, peer))
        text_command(client, "set /after/restart new")
        wait_live(browser)
        # the page takes a new snapshot: the durable node kept the old file
        WebDriverWait(browser, 10).until(lambda d: row(d, "/after/restart") is not None)
        assert row(browser, "/before/restart") is not None
    finally:
        proc.stop()


def text_commands(port, lines):
    """Pipeline one-line text-protocol commands on one connection; return
    the reply lines, one per command, in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))
        buffer = b""
        while buffer.count(b"\r\n") < len(lines):
            chunk = s.recv(65536)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode("utf-8").split("\r\n")[:len(lines)]


def tree_keys(driver):
    """The tree's rows in page order, those of /ctl left out: files as
    paths, directories as 'dir/'."""
    keys = driver.execute_script(
        "return [...document.querySelectorAll('#tree tbody tr')].map("
        "r => r.dataset.path || r.dataset.dir + '/');")
    return [k for k in keys if not k.startswith("/ctl/")]


def stats(driver):
    return driver.execute_script("return window.doozerView.stats();")


def test_create_and_delete_touch_only_their_rows(node_ports, browser):
    client, web = node_ports
    text_commands(client, ["set /keep/a 1", "set /keep/b 2", "set /z 3"])
    browser.get(f"http://127.0.0.1:{web}/")
    wait_live(browser)
    WebDriverWait(browser, 10).until(lambda d: row(d, "/z") is not None)
    kept = row(browser, "/keep/a")
    browser.execute_script("arguments[0].dataset.tag = 'untouched';", kept)
    before = stats(browser)

    text_commands(client, ["set /keep/ab 4", "set /new/deep/file 5", "set /keep/b 22"])
    WebDriverWait(browser, 10).until(lambda d: "22" in (row(d, "/keep/b").text or ""))
    assert tree_keys(browser) == ["/keep/", "/keep/a", "/keep/ab", "/keep/b",
                                  "/new/", "/new/deep/", "/new/deep/file", "/z"]
    assert row(browser, "/keep/a") == kept
    assert kept.get_attribute("data-tag") == "untouched"

    text_commands(client, ["del /new/deep/file", "del /keep/ab"])
    WebDriverWait(browser, 10).until(lambda d: row(d, "/keep/ab") is None)
    assert tree_keys(browser) == ["/keep/", "/keep/a", "/keep/b", "/z"]
    assert row(browser, "/keep/a") == kept
    assert kept.get_attribute("data-tag") == "untouched"
    after = stats(browser)
    assert (after["files"], after["rows"]) == (before["files"], before["rows"])


def test_a_failed_request_is_reported_in_the_page(tmp_path, browser):
    proc, client, web, _ = start_node(tmp_path)
    try:
        browser.get(f"http://127.0.0.1:{web}/")
        wait_live(browser)
        problem = browser.find_element(By.ID, "problem")
        assert not problem.is_displayed()
        browser.find_element(By.ID, "edit-path").send_keys("/unreachable")
        browser.find_element(By.ID, "edit-value").send_keys("lost")
    finally:
        proc.stop()
    browser.find_element(By.ID, "edit-save").click()
    WebDriverWait(browser, 10).until(lambda d: problem.is_displayed())
    assert "PUT /v1/keys/unreachable" in problem.text and "failed" in problem.text
    assert "UNREACHABLE" in browser.find_element(By.ID, "edit-status").text


# What a lone node (start_node) writes about itself under /ctl once it has
# elected itself, some time *after* its web port answers /livez.
STARTUP_CTL = ("/ctl/name", "/ctl/leader", "/ctl/cal/0") + tuple(
    f"/ctl/node/web-e2e/{f}" for f in ("addr", "hostname", "version", "member", "peer"))


def server_paths(web):
    """Every file path the node's store holds now (GET /v1/walk)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/v1/walk?glob=/**", timeout=5) as r:
        return {f["path"] for f in json.load(r)["files"]}


def wait_startup_writes_shown(driver, web, timeout=20):
    """Wait until the node has written its own /ctl entries (STARTUP_CTL)
    and the page shows a row for every file the store then held: a baseline
    taken after this cannot miss a startup write still in flight."""
    written = {}

    def settled(_):
        written["paths"] = server_paths(web)
        return written["paths"] >= set(STARTUP_CTL)
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        settled, f"the node never wrote {STARTUP_CTL}")
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: all(row(d, p) is not None for p in written["paths"]),
        f"the page never showed {sorted(written['paths'])}")


def test_seen_paths_stay_bounded(node_ports, browser):
    client, web = node_ports
    browser.get(f"http://127.0.0.1:{web}/")
    wait_live(browser)
    wait_startup_writes_shown(browser, web)  # else the baseline can race them
    before = stats(browser)
    assert before["files"] >= len(STARTUP_CTL)
    limit = before["maxSeenPaths"]
    paths = [f"/churn/p{i}" for i in range(limit + 50)]
    replies = text_commands(client, [f"set {p} x" for p in paths] + [f"del {p}" for p in paths])
    assert all(r.startswith("OK REV") for r in replies), replies[-1]
    final_rev = int(replies[-1].split()[-1])
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "rev").text == str(final_rev))
    seen = stats(browser)
    assert seen["seenPaths"] == limit
    assert (seen["files"], seen["rows"]) == (before["files"], before["rows"])
    assert tree_keys(browser) == []
