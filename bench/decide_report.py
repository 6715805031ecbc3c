"""The report of ``bench/decide.py``: markdown tables and a verdict per target."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from wrk_load import WrkResult

P99_TARGET_MS = 5.0
ECHO_SHARE_TARGET = 0.35
RATIO_TARGET = 3.0


@dataclass(frozen=True)
class Cost:
    """Per-operation cost of an in-process measurement, best of several runs."""

    name: str
    wall_us: float
    cpu_us: float  # the whole process: the SQLite writer thread included
    loop_cpu_us: float  # the event-loop thread alone: what the decide path costs the requests
    note: str = ""


@dataclass(frozen=True)
class HttpRow:
    server: str
    in_flight: int
    result: WrkResult
    server_side: dict[str, float] | None = None  # deltas of the service's own metrics


def _label(server: str) -> str:
    if server == "echo":
        return "bare FastAPI echo (ceiling)"
    n = server.removeprefix("w")
    return f"`learnloop serve --workers {n}` ({n} API worker{'s' if n != '1' else ''} + loop)"


def report(
    raw: Cost,
    in_process: list[Cost],
    asgi: tuple[float, float],
    http: list[HttpRow],
    fsync: tuple[float, float],
    wrk: bool,
) -> str:
    out = [
        f"## learnloop decide benchmark — {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average before the run {os.getloadavg()[0]:.1f}",
        "",
        "| in process | wall per op | x raw | process CPU per op | x raw | "
        "event-loop thread CPU per op | x raw | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in (raw, *in_process):
        out.append(
            f"| {c.name} | {c.wall_us:,.1f} µs | {c.wall_us / raw.wall_us:.1f}x | "
            f"{c.cpu_us:,.1f} µs | {c.cpu_us / raw.cpu_us:.1f}x | "
            f"{c.loop_cpu_us:,.1f} µs | {c.loop_cpu_us / raw.loop_cpu_us:.1f}x | {c.note} |"
        )
    out += [
        "",
        f"The HTTP apps called in process (ASGI, no sockets), CPU per request: echo "
        f"{asgi[0]:.0f} µs, learnloop's decision route over a SQLite log {asgi[1]:.0f} µs: "
        f"CPU-bound, one worker could reach {asgi[0] / asgi[1]:.2f}x the echo's rate "
        "(before the HTTP parsing both pay alike).",
    ]
    client = "wrk -t1" if wrk else "Python raw client (wrk missing: the client may bound these)"
    echo = {r.in_flight: r.result.rate for r in http if r.server == "echo"}
    out += [
        "",
        f"HTTP, {client}; fsync on this disk before the run: p50 {fsync[0]:.2f} ms, "
        f"p99 {fsync[1]:.2f} ms.",
        "",
        "| server | in flight | decisions/s | x echo | p50 | p99 | p99.9 | max | errors | "
        "client CPU | append (mean) | per append | swaps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in http:
        r = row.result
        share = f"{r.rate / echo[row.in_flight]:.2f}x" if row.in_flight in echo else "—"
        out.append(
            f"| {_label(row.server)} | {row.in_flight} | {r.rate:,.0f} | {share} | "
            f"{r.p50_us / 1e3:.2f} ms | {r.p99_us / 1e3:.2f} ms | {r.p999_us / 1e3:.2f} ms | "
            f"{r.max_us / 1e3:.1f} ms | {r.errors} | {r.client_cpu:.0%} | {_server_side(row)} |"
        )
    out += ["", *_verdicts(raw, in_process, http, echo)]
    return "\n".join(out)


def _server_side(row: HttpRow) -> str:
    """Mean durable-append latency, decisions per append and model swaps during the run."""
    m = row.server_side
    if not m or not m["appends"]:
        return " | | "
    return (
        f"{m['append_seconds'] / m['appends'] * 1e3:.2f} ms | "
        f"{m['decisions'] / m['appends']:.1f} | {m['swaps']:.0f}"
    )


def _verdicts(
    raw: Cost, in_process: list[Cost], http: list[HttpRow], echo: dict[int, float]
) -> list[str]:
    lines = []
    for c in in_process:
        ratio = c.cpu_us / raw.cpu_us
        loop_ratio = c.loop_cpu_us / raw.loop_cpu_us
        lines.append(
            f"- {c.name}: {ratio:.1f}x raw VW predict in process CPU, {loop_ratio:.1f}x in "
            f"event-loop CPU, {c.wall_us / raw.wall_us:.1f}x in wall time (target ≤ "
            f"{RATIO_TARGET:.0f}x: {'met' if ratio <= RATIO_TARGET else 'missed'} in process "
            f"CPU, {'met' if loop_ratio <= RATIO_TARGET else 'missed'} on the event loop)"
        )
    for row in http:
        if row.server == "echo" or row.in_flight not in echo:
            continue
        r = row.result
        share = r.rate / echo[row.in_flight]
        ok = r.p99_us / 1e3 <= P99_TARGET_MS and share >= ECHO_SHARE_TARGET and not r.errors
        lines.append(
            f"- {_label(row.server)}, {row.in_flight} in flight: p99 {r.p99_us / 1e3:.2f} ms "
            f"(target ≤ {P99_TARGET_MS:.0f}), {share:.2f}x echo (target ≥ {ECHO_SHARE_TARGET}): "
            f"{'met' if ok else 'missed'}"
        )
    return lines
