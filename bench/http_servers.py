"""The servers ``bench/decide.py`` loads: the echo ceiling and ``learnloop serve --workers N``.

Each runs as a subprocess on a free loopback port, its output in a log file next
to its data directory; :func:`scrape` reads a few of the service's own metrics
(summed over every process, Prometheus multiprocess mode).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from runtime.processes import free_port

ROOT = Path(__file__).resolve().parents[1]


_SCRAPED = {
    "appends": 'learnloop_eventlog_append_seconds_count{stream="decisions"}',
    "append_seconds": 'learnloop_eventlog_append_seconds_sum{stream="decisions"}',
    "swaps": "learnloop_model_swaps_total",
    "decisions": "learnloop_decisions_total",
}


def scrape(url: str) -> dict[str, float]:
    """Totals of a few of the service's metrics (every process's, multiprocess mode)."""
    totals = dict.fromkeys(_SCRAPED, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=5.0).text.splitlines():
        name, _, value = line.rpartition(" ")
        for key, prefix in _SCRAPED.items():
            if name == prefix or (name.startswith(prefix + "{") and "{" not in prefix):
                totals[key] += float(value)
    return totals


def bench_config(directory: Path, window_seconds: float) -> Path:
    """The shipped decision points with a short reward window, so that within a short run
    the join closes windows, the learner releases and the API workers swap models: the
    loop's steady state, which the shipped 20 s would only reach after 20 s of load."""
    text = (ROOT / "learnloop" / "default_config.toml").read_text()
    path = directory / "decision_points.toml"
    path.write_text(re.sub(r"window_seconds = [0-9.]+", f"window_seconds = {window_seconds}", text))
    return path


def start_server(server: str, data_dir: Path, config: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``echo`` or ``wN`` (``learnloop serve --workers N``), ready to answer."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if server == "echo":
        command = [sys.executable, str(ROOT / "bench" / "echo_server.py"), str(port)]
    else:
        workers = server.removeprefix("w")
        env["LEARNLOOP_WORKERS"] = workers
        command = [
            *(sys.executable, "-m", "runtime.cli", "serve", "--port", str(port)),
            *("--data-dir", str(data_dir), "--workers", workers, "--config", str(config)),
        ]
    log = (data_dir.parent / f"{server}.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server} exited with {process.returncode}; see {log.name}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{server} not ready in 90 s; see {log.name}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)  # the supervisor drains its workers
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
