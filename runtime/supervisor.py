"""``learnloop serve``: one supervisor, N API worker processes and (embedded) one loop process.

The supervisor binds the listening socket once and hands the same file
descriptor to every API worker, so the kernel queues new connections while a
worker restarts instead of refusing them. Each child is a fresh
``learnloop worker …`` process (no fork of a process holding threads or a VW
workspace), started with ``PR_SET_PDEATHSIG`` so it gets SIGTERM if the
supervisor itself is killed.

- A child that exits without being asked to is restarted, at once the first
  time and then with a back-off (:class:`~runtime.restart_policy.RestartPolicy`);
  one that crashes too often in a short time makes the whole service stop with an
  error rather than flap.
- SIGTERM or SIGINT drains: the API workers first (in-flight requests finish,
  their group commit flushes), then the loop process (the join writes its
  checkpoint), then the supervisor exits 0.
- ``<data_dir>/run/processes.json`` names every child's pid (operators, crash
  tests), and ``<data_dir>/run/metrics`` is the Prometheus multiprocess directory:
  every child writes its metrics there and each API worker's ``/metrics`` sums
  them, so a scrape of any worker shows the whole service.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from learnloop.errors import ConfigurationError
from runtime.restart_policy import RestartPolicy

log = logging.getLogger("learnloop.supervisor")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One supervised process: a name (``api-0``, ``loop``) and its ``learnloop`` arguments.

    ``drains_first``: stopped before the others on shutdown (the API workers, so the
    loop process still runs while their last decisions become durable).
    """

    name: str
    args: tuple[str, ...]
    drains_first: bool = False


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The service's listening socket, inheritable so API workers can accept on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc}): is another service running there? "
            "Pick another --port"
        ) from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Child:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Runs the children until asked to stop; restarts those that crash.

    Parameters
    ----------
    specs
        The children to run.
    env
        Environment of every child (on top of this process's own).
    pass_fds
        File descriptors the children inherit (the listening socket).
    run_dir
        Where ``processes.json`` and the metrics directory live.
    policy
        When to restart and when to give up.
    drain_seconds
        How long each group of children may take to stop before SIGKILL.
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        env: Mapping[str, str],
        pass_fds: Sequence[int] = (),
        run_dir: Path,
        policy: RestartPolicy | None = None,
        drain_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.run_dir = run_dir
        self.metrics_dir = run_dir / "metrics"
        self.env = {**os.environ, **env, METRICS_DIR_ENV: str(self.metrics_dir)}
        self.pass_fds = tuple(pass_fds)
        self.policy = policy or RestartPolicy()
        self.drain_seconds = drain_seconds
        self.clock = clock
        self.failed: str | None = None

    def run(self, stop: threading.Event) -> int:
        """Start every child, supervise until ``stop`` is set, then drain; the exit code
        (0 after a requested stop, 1 when a child kept crashing)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Metrics of a previous run are stale (their pids are gone): start empty.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(parents=True)
        try:
            for child in self.children:
                self._start(child)
            while not stop.is_set() and self.failed is None:
                self._check(self.clock())
                stop.wait(0.05)
        finally:
            self._drain()
        if self.failed is not None:
            log.error("%s", self.failed)
            return 1
        log.info("stopped: every worker drained")
        return 0

    def pids(self) -> dict[str, int]:
        """The pid of every running child."""
        return {c.spec.name: c.process.pid for c in self.children if c.running and c.process}

    def _start(self, child: _Child) -> None:
        command = [sys.executable, "-m", "runtime.cli", *child.spec.args]
        child.process = subprocess.Popen(
            command,
            env=self.env,
            pass_fds=self.pass_fds,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        child.restart_at = None
        log.info("started %s (pid %d)", child.spec.name, child.process.pid)
        self._write_pids()

    def _check(self, now: float) -> None:
        """Restart children whose time has come; notice the ones that exited."""
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            if child.process is None or child.running:
                continue
            code = child.process.returncode
            self._forget_metrics(child.process.pid)
            delay = self.policy.on_crash(child.spec.name, now)
            if delay is None:
                self.failed = (
                    f"{child.spec.name} exited with code {code} "
                    f"{self.policy.crashes(child.spec.name)} times within "
                    f"{self.policy.within_seconds:.0f} s; stopping the service: "
                    "see its log lines above for the cause"
                )
                return
            log.warning(
                "%s (pid %d) exited with code %s; restarting in %.1f s",
                child.spec.name,
                child.process.pid,
                code,
                delay,
            )
            child.restart_at = now + delay

    def _drain(self) -> None:
        """SIGTERM the draining group, wait, then the rest; SIGKILL whoever is left."""
        first = [c for c in self.children if c.spec.drains_first]
        rest = [c for c in self.children if not c.spec.drains_first]
        for group in (first, rest):
            self._stop_group(group)
        self._write_pids()

    def _stop_group(self, group: list[_Child]) -> None:
        live = [c for c in group if c.running]
        for child in live:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + self.drain_seconds
        for child in live:
            assert child.process is not None
            try:
                child.process.wait(max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop in %.0f s: killing it", child.spec.name, self.drain_seconds
                )
                child.process.kill()
                child.process.wait()
            self._forget_metrics(child.process.pid)

    def _forget_metrics(self, pid: int) -> None:
        """Drop a dead child's live gauges (its counters stay: totals must not fall)."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _write_pids(self) -> None:
        path = self.run_dir / "processes.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor": os.getpid(), **self.pids()}))
        os.replace(tmp, path)


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (the supervisor's main thread has no event loop)."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop
