"""Start and stop real ``learnloop`` processes (demo, benchmarks, crash and end-to-end tests).

:class:`LearnloopProcess` runs any ``learnloop`` command (``join``, ``learn``) in a
child process; :class:`ServiceProcess` runs ``learnloop serve`` on a loopback port
and waits until it answers ``/readyz``. :func:`settings_env` turns a
:class:`~learnloop.settings.Settings` into the ``LEARNLOOP_*`` variables that give a
child process the same settings (the way a deployment configures its services).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import SecretStr

from learnloop.errors import Unavailable
from learnloop.settings import Settings


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps([_env_value(v) for v in value])
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """``LEARNLOOP_*`` variables for every setting that differs from its default.

    >>> settings_env(Settings(kafka_partitions=3, kafka_idempotence=False, port=8000))
    {'LEARNLOOP_KAFKA_PARTITIONS': '3', 'LEARNLOOP_KAFKA_IDEMPOTENCE': 'false'}
    """
    defaults = Settings.model_construct()
    out = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None or value == getattr(defaults, name):
            continue
        out[f"LEARNLOOP_{name.upper()}"] = _env_value(value)
    return out


def run_learnloop(*args: str | Path, timeout: float = 600.0) -> str:
    """Run one ``learnloop`` command to its end, as a user types it; its stdout. A
    non-zero exit raises with the command's output (scripts, benchmarks and tests)."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"learnloop {' '.join(map(str, args[:2]))} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


class LearnloopProcess:
    """``learnloop <args>`` in a child process, its output appended to ``log_file``.

    >>> LearnloopProcess("join").command[-2:]
    ['runtime.cli', 'join']
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.command = [sys.executable, "-m", "runtime.cli", *args]
        self.env = env or {}
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        if self.running:
            # A second start would leave the first process running with no one to stop
            # it (``with process.start():`` starts twice: use ``with process:``).
            raise RuntimeError(f"{self.command[3:5]} is already running: start it once")
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.command,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT if self.log_file else subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                # Its own process group: kill() takes the children of `learnloop serve`
                # down with it, like a machine crash, rather than leaving them to drain.
                start_new_session=True,
            )
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's output (for assertion messages)."""
        if self.log_file is None or not self.log_file.exists():
            return "(no log)"
        return self.log_file.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL to the process and every process it started: no shutdown hooks run
        anywhere (crash tests)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop within ``timeout``; the exit code."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process else None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


LOOP_STARTED = "learner resumes after offset"
"""What the embedded loop process logs once its learner runs (its embedded_runner)."""
LOOP_START_SECONDS = 20.0


class ServiceProcess(LearnloopProcess):
    """``learnloop serve`` in a child process on a loopback port; ``start`` returns once
    it is ready. Without ``data_dir`` a temporary one holds the supervisor's run files
    (the Kafka backend keeps no other local data). ``workers`` sets ``--workers``;
    ``wait_for_loop`` also waits for the embedded loop process to start learning.

    >>> ServiceProcess(Path("/tmp/x"), port=1234, workers=2).url
    'http://127.0.0.1:1234'
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
        workers: int | None = None,
        wait_for_loop: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="learnloop-serve-"))
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--data-dir", str(self.data_dir)]
        if workers is not None:
            args += ["--workers", str(workers)]
        super().__init__(*args, env=env, log_file=log_file)
        embedded = (env or {}).get("LEARNLOOP_BACKEND", "embedded") == "embedded"
        self._wait_for_loop = wait_for_loop and embedded

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_for_the_loop(self, deadline: float) -> None:
        """Wait (until ``deadline``, best effort) for the embedded loop process to start
        learning, as its log says. ``/readyz`` is the API's readiness only: traffic sent
        before the loop is up is joined and learned later, and a short simulated run
        would measure the initial model (the API starts seconds before the loop's VW,
        river and CatBoost imports are done). Only with ``wait_for_loop``, a log file and
        the embedded backend; it returns at once if the service exits."""
        if not self._wait_for_loop or self.log_file is None:
            return
        while time.monotonic() < deadline and self.running:
            if LOOP_STARTED in self.log_tail(1_000_000):
                return
            time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        """The supervisor's and every child's pid (``api-0`` …, ``loop``), as it wrote them."""
        path = self.data_dir / "run" / "processes.json"
        try:
            return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (FileNotFoundError, ValueError):
            return {}

    def kill_child(self, name: str) -> int:
        """SIGKILL one child of the supervisor (``api-0``, ``loop``); its pid."""
        pid = self.pids()[name]
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> int:
        """Wait until the supervisor runs ``name`` again under a new pid; that pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pids().get(name)
            if pid is not None and pid != old_pid:
                return pid
            time.sleep(0.05)
        raise Unavailable(f"{name} was not restarted within {timeout} s: {self.log_tail(1000)}")

    def start(self, ready_timeout: float = 60.0) -> Self:
        super().start()
        assert self.process is not None
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(
                    f"learnloop serve exited with code {self.process.returncode}: "
                    f"{self.log_tail(1000)}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    self._wait_for_the_loop(min(deadline, time.monotonic() + LOOP_START_SECONDS))
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise Unavailable(f"learnloop serve on port {self.port} not ready after {ready_timeout} s")
