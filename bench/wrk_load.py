"""HTTP load with ``wrk``: a C load generator, so the client is not what saturates first.

A Python load generator on a 2-core machine takes a core of its own and hides the
server's limits (``bench/http_load.py`` is kept as the fallback). ``wrk`` runs one
thread (``-t1``) with ``-c`` connections, i.e. requests in flight; a Lua script
rotates the POST bodies and prints the latency percentiles as one JSON line. The
client's own CPU use (from the child's rusage) is reported so a table can show it
was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_LUA = """
local bodies = {%(bodies)s}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "%(path)s", nil, bodies[n %% #bodies + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"errors":%%d,"status_errors":%%d,' ..
    '"p50":%%d,"p90":%%d,"p99":%%d,"p999":%%d,"max":%%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: rate, latency percentiles (µs), errors and the client's CPU share."""

    requests: int
    seconds: float
    errors: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    client_cpu: float  # wrk's CPU seconds per wall second (1.0 = one core busy)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def find_wrk(install: bool = True) -> str | None:
    """The ``wrk`` binary; installed with apt-get when missing and allowed (as root),
    the way the Makefile installs redis-server. ``None`` if there is no way to get it."""
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
    subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet)  # type: ignore[call-overload]
    if shutil.which("wrk") is None:  # a fresh image may have no package lists yet
        subprocess.run(["apt-get", "update"], **quiet)  # type: ignore[call-overload]
        subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet)  # type: ignore[call-overload]
    return shutil.which("wrk")


def _lua(bodies: list[bytes], path: str) -> str:
    quoted = ",\n".join(f"[==[{b.decode()}]==]" for b in bodies)
    return _LUA % {"bodies": quoted, "path": path}


def run_wrk(
    wrk: str,
    url: str,
    bodies: list[bytes],
    connections: int,
    seconds: float,
    path: str = "/v1/decisions",
) -> WrkResult:
    """``wrk -t1 -c{connections}`` posting ``bodies`` in turn for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="learnloop-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_lua(bodies, path))
        command = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        out = process.stdout.read()
        err = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err.decode()[-500:]}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    return WrkResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        errors=summary["errors"] + summary["status_errors"],
        p50_us=summary["p50"],
        p90_us=summary["p90"],
        p99_us=summary["p99"],
        p999_us=summary["p999"],
        max_us=summary["max"],
        client_cpu=(usage.ru_utime + usage.ru_stime) / wall,
    )
