"""One ``twistd doozer`` child process: the test suite's one spawner.

``twistd_command(options)`` is the one place a ``twistd`` command line is
built: the ``twistd`` installed next to this Python, in the foreground
with no pid file, logging as text to stdout (or through ``--logger``
LOGGER), then ``doozer OPTIONS``. ``Twistd`` owns one such process: it
runs it with its ``directory`` as working directory, appends everything it
prints to ``directory/<log_file>`` (default ``<name>.log``), and signals,
stops and reaps it.

``start_twistd(options, directory, *probes)`` starts one and returns once
every probe passes. A probe is a callable that returns something truthy
once the node serves; raising ``OSError`` means "not yet".
``listening(port)``, ``http_ok(url)`` and ``writable(port)`` are the usual
ones. If the process exits, or the probes do not pass within the timeout,
the process is stopped and ``HarnessError`` carries the tail of its log.

``Twistd.stop`` ends the process with SIGTERM (after a SIGCONT, so a
paused one too); one that lingers gets SIGABRT (its Python stacks go to
the log: the child runs with ``PYTHONFAULTHANDLER=1``), then SIGKILL.
``Twistd.kill`` is SIGKILL, ``pause``/``resume`` SIGSTOP/SIGCONT;
``launch`` starts it again with its options (the log is appended to).
With ``detach`` the child leads its own process group (a new session):
signals go to the whole group and the terminal's job control (Ctrl-C,
Ctrl-Z, ``fg``) does not reach it, so a node paused on purpose stays
paused. By default the child runs the doozertw this process imported
(``proxy.child_env``); pass ``env`` to choose.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence

import attrs

from doozertw.testing.node_process import HarnessError, describe_exit, twistd_path
from doozertw.testing.proxy import child_env
from doozertw.testing.workload import WireClient, WireError

Probe = Callable[[], object]
LOG_TAIL = 4000


def listening(port: int) -> Probe:
    """A probe: something accepts TCP connections on loopback ``port``."""
    def probe() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    return probe


def http_ok(url: str) -> Probe:
    """A probe: a GET of ``url`` answers 200 (other statuses: not yet)."""
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except urllib.error.HTTPError:
            return False
    return probe


def writable(port: int, path: str = "/ready") -> Probe:
    """A probe: the node on loopback ``port`` commits a write of ``path``
    (so a leader is elected and a quorum is up)."""
    def probe() -> bool:
        client = WireClient(port, timeout=5)
        try:
            client.set(path, -1, b"1")
            return True
        except WireError:
            return False
        finally:
            client.close()
    return probe


def twistd_command(options: Sequence[str], logger: str | None = None) -> list[str]:
    """``twistd doozer OPTIONS`` in the foreground with no pid file, logging
    as text to stdout, or through ``--logger LOGGER`` (the dotted name of a
    log observer factory) if given."""
    logging = ["--logger", logger] if logger else ["--logfile", "-"]
    return [twistd_path(), "--nodaemon", "--pidfile=", *logging, "doozer", *options]


@attrs.define
class Twistd:
    """One ``twistd doozer`` process, its options, log and state (see the
    module docstring for ``logger``, ``log_file`` and ``detach``)."""

    options: tuple[str, ...]
    directory: str
    name: str = "node"
    env: Mapping[str, str] | None = None
    process: subprocess.Popen | None = None
    logger: str | None = None
    log_file: str = ""
    detach: bool = False

    @property
    def log_path(self) -> str:
        """The file the process's stdout and stderr are appended to."""
        return os.path.join(self.directory, self.log_file or f"{self.name}.log")

    def command(self) -> list[str]:
        """The command line ``launch`` runs."""
        return twistd_command(self.options, self.logger)

    def note(self, line: str) -> None:
        """Append ``line`` to the process's log (between its own lines)."""
        with open(self.log_path, "ab") as log:
            log.write(f"{line}\n".encode())

    @property
    def pid(self) -> int:
        if self.process is None:
            raise HarnessError(f"{self.name} was never started")
        return self.process.pid

    def log_text(self) -> str:
        """Everything the process (every start of it) printed so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def running(self) -> bool:
        """True while the process runs (or is paused)."""
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        """The exit code (negative: the signal) once the process of the
        latest start has ended; None while it runs or if it never started."""
        return None if self.process is None else self.process.poll()

    def launch(self) -> Twistd:
        """Start the process (not waiting for it to serve)."""
        if self.running():
            raise HarnessError(f"{self.name} is already running")
        env = child_env() if self.env is None else dict(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")    # the log readable as it happens
        env.setdefault("PYTHONFAULTHANDLER", "1")  # SIGABRT dumps every stack to it
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.directory, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=self.detach)
        return self

    def send(self, sig: int) -> bool:
        """Send ``sig`` to the process (with ``detach``, to its process
        group); False if it is not running."""
        if not self.running():
            return False
        assert self.process is not None
        try:
            if self.detach:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        except ProcessLookupError:
            return False
        return True

    def pause(self) -> bool:
        """SIGSTOP; False if the process is not running."""
        return self.send(signal.SIGSTOP)

    def resume(self) -> bool:
        """SIGCONT; False if the process is not running."""
        return self.send(signal.SIGCONT)

    def terminate(self) -> None:
        """Ask the process to end (SIGCONT, then SIGTERM), not waiting."""
        if self.send(signal.SIGCONT):
            self.send(signal.SIGTERM)

    def reap(self, timeout: float = 10.0) -> int | None:
        """Wait for the process to end; the exit code (None if it never
        started). One still running after ``timeout`` seconds is hung: a
        line saying so goes into its log, then SIGABRT (its Python stacks
        follow it), then SIGKILL."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.note(f"--- {self.name} did not end within {timeout}s: SIGABRT "
                  "(its Python stacks follow)")
        self.send(signal.SIGABRT)
        try:
            return self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            return self.process.wait(timeout=10)

    def wait_ready(self, *probes: Probe, timeout: float = 30.0) -> Twistd:
        """Return once every probe passes; stop the process and raise
        ``HarnessError`` if it exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        pending = list(probes)
        while pending:
            if not self.running():
                code = self.process.returncode if self.process else None
                how = "never started" if code is None else describe_exit(code)
                raise HarnessError(f"{self.name} {how}:\n{self.log_text()[-LOG_TAIL:]}")
            try:
                if pending[0]():
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"{self.name} did not serve within {timeout}s:\n"
                                   f"{self.log_text()[-LOG_TAIL:]}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """``terminate``, then ``reap(timeout)``; the exit code (0 for a node
        that drained and stopped cleanly on SIGTERM)."""
        self.terminate()
        return self.reap(timeout)

    def kill(self) -> int | None:
        """SIGKILL (a crash, as far as the node can tell), paused or not;
        the exit code."""
        if self.process is None:
            return None
        self.send(signal.SIGKILL)
        return self.process.wait(timeout=10)

    def __enter__(self) -> Twistd:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_twistd(options: Sequence[str], directory: str | os.PathLike, *probes: Probe,
                 name: str = "node", env: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> Twistd:
    """Start ``twistd doozer OPTIONS`` in ``directory`` and wait until every
    probe passes (see the module docstring)."""
    node = Twistd(tuple(str(o) for o in options), os.fspath(directory), name, env)
    node.launch()
    try:
        return node.wait_ready(*probes, timeout=timeout)
    except BaseException:
        node.stop()
        raise
