"""Every example in docs/client.md runs against a fresh node over TCP.

- ```python blocks define ``main``: a coroutine function runs on the reactor
  with it as argument, a plain function runs in a worker thread;
- ```console blocks are shell sessions: each ``$ `` line is run through
  ``doozer``'s ``main`` (``printf 'x' | doozer ...`` feeds stdin, ``echo $?``
  prints the last exit status) and its stdout must match the lines shown.

``127.0.0.1:8046`` in an example is replaced by the test node's address.
That includes the "Recipes" section: one example per recipe (that each
recipe has one is checked in test_recipes.py).
"""

import inspect
import pathlib
import re
import shlex

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from doozertw.testing.servers import in_thread, run_cli, start_servers, stop_all

DOC = pathlib.Path(__file__).parent.parent / "docs" / "client.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(kind):
    return [body for lang, body in BLOCK.findall(DOC.read_text()) if lang == kind]


@pytest.fixture
def server():
    servers = start_servers(1)
    # /ctl as a fresh --in-memory node writes it: revisions 1 to 6
    pytest_twisted.blockon(servers[0].node.describe_self(servers[0].address, voter_slot=0))
    yield servers[0]
    stop_all(servers)


def localize(text, server):
    return text.replace("127.0.0.1:8046", server.address)


def test_the_doc_has_examples():
    assert len(blocks("python")) >= 3 and len(blocks("console")) >= 1


@pytest.mark.parametrize("index", range(len(blocks("python"))))
@pytest_twisted.inlineCallbacks
def test_python_example(index, server):
    source = localize(blocks("python")[index], server)
    namespace = {"__name__": "doc_example"}
    exec(compile(source, f"{DOC}:python[{index}]", "exec"), namespace)
    main = namespace["main"]
    if inspect.iscoroutinefunction(main):
        yield defer.ensureDeferred(main(reactor))
    else:
        yield in_thread(main)


def session(text):
    """(command line, expected stdout) pairs of a console block."""
    steps = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append([line[2:], []])
        else:
            steps[-1][1].append(line)
    return [(command, "".join(out + "\n" for out in lines)) for command, lines in steps]


def run_command(command, uri, last_status):
    if command == "echo $?":
        return last_status, f"{last_status}\n"
    stdin = b""
    if "|" in command:
        feeder, command = (part.strip() for part in command.split("|", 1))
        words = shlex.split(feeder)
        assert words[0] == "printf", feeder
        stdin = words[1].encode()
    words = shlex.split(command)
    assert words[0] == "doozer", command
    status, out, _ = run_cli(words[1:], stdin, uri)
    text = out.decode()
    if text and not text.endswith("\n"):
        text += "\n"        # what a terminal shows before the next prompt
    return status, text


@pytest.mark.parametrize("index", range(len(blocks("console"))))
@pytest_twisted.inlineCallbacks
def test_console_example(index, server):
    steps = session(blocks("console")[index])
    assert steps

    def run_all():
        status = 0
        for command, expected in steps:
            status, got = run_command(command, server.uri, status)
            assert got == expected, f"$ {command}"

    yield in_thread(run_all)
