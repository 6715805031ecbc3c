"""Benchmark the decision path, from a raw VW prediction to HTTP under load.

Run ``python bench/decide.py`` (``--help`` for options). One run measures:

a. raw VW predict: ``VWPolicy.predict_lines`` on prebuilt lines of the default
   decision point (4 actions) — the floor;
b. the in-process decide path (``app.decide.Decider``: candidates, persona,
   featurize, predict, sample, build the DecisionEvent, durable append to a real
   ``SqliteEventLog`` in a temp dir), with one caller and with 64 concurrent
   callers whose appends share fsyncs (group commit);
c. HTTP decisions/s with p50/p99 under a concurrent httpx load generator against
   a real server in a subprocess on a free loopback port, stepping concurrency
   1, 2, 4, … to find the highest rate whose p99 stays under 10 ms. ``embedded``
   is ``learnloop serve`` (API + join + online learner in one process); ``api``
   is the decision service alone over the same SQLite stores.

Results print as markdown tables (for docs/benchmarks.md). Numbers depend on the
machine and on what else runs on it: the table header says how many CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from http_load import load  # bench/http_load.py (this script's folder is on sys.path)

from app.main import create_app
from learnloop import featurizer
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog
from learnloop.eventlog.base import EventSink
from learnloop.modelstore import MemoryModelStore
from learnloop.policy import VWPolicy
from learnloop.settings import Settings
from runtime.processes import free_port
from schemas.api import DecisionRequest
from schemas.features import Context

DP = "home_products"
P99_BUDGET_MS = 10.0


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    name: str
    per_op_us: float  # amortized wall time per operation
    p50_us: float
    p99_us: float
    ops_per_s: float
    note: str = ""


def _pct(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _context(i: int) -> Context:
    pages = ("home", "category", "product", "cart")
    return Context(
        user_id=f"user-{i % 500}" if i % 3 else None,
        session_id=f"session-{i % 2000}",
        features={"page": pages[i % 4], "hour": i % 24, "device": "mobile" if i % 2 else "desktop"},
    )


# --- (a) raw VW predict ------------------------------------------------------------


def bench_raw_predict(n: int, repeats: int) -> Row:
    """``predict_lines`` on one prebuilt example; best mean of ``repeats`` runs."""
    config = load_config_file(None)[0]
    policy = VWPolicy(config.vw_args)
    lines = featurizer.example(_context(1), "unclassified", config.actions)
    for _ in range(500):
        policy.predict_lines(lines)
    best_mean = float("inf")
    samples: list[float] = []
    for _ in range(repeats):
        run: list[float] = []
        for _ in range(n):
            started = time.perf_counter()
            policy.predict_lines(lines)
            run.append(time.perf_counter() - started)
        mean = sum(run) / n
        if mean < best_mean:
            best_mean, samples = mean, sorted(run)
    policy.close()
    return Row(
        "raw VW predict (4 actions)",
        best_mean * 1e6,
        _pct(samples, 0.5) * 1e6,
        _pct(samples, 0.99) * 1e6,
        1 / best_mean,
    )


# --- (b) in-process decide ------------------------------------------------------------


def _open_sqlite_log(directory: Path) -> EventSink | None:
    try:
        from learnloop.eventlog.sqlite import SqliteEventLog
    except ImportError:
        return None
    return SqliteEventLog(directory)


async def _decide_rows(
    events: EventSink, label: str, n_single: int, callers: int, per_caller: int
) -> list[Row]:
    """Single-caller latency and amortized cost with ``callers`` concurrent callers."""
    app = create_app(
        Settings(),
        events=events,
        models=MemoryModelStore(),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
    )
    await app.state.registry.load_all()
    decider = app.state.decider
    requests = [DecisionRequest(decision_point=DP, context=_context(i)) for i in range(997)]
    for i in range(200):
        await decider.decide(requests[i % len(requests)])

    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(n_single):
        t0 = time.perf_counter()
        await decider.decide(requests[i % len(requests)])
        latencies.append(time.perf_counter() - t0)
    single_wall = time.perf_counter() - started
    latencies.sort()
    single = Row(
        f"decide, 1 caller, {label}",
        single_wall / n_single * 1e6,
        _pct(latencies, 0.5) * 1e6,
        _pct(latencies, 0.99) * 1e6,
        n_single / single_wall,
    )

    concurrent: list[float] = []
    counter = getattr(events, "transactions", None)  # only the SQLite log counts fsyncs
    transactions_before = counter

    async def caller(k: int) -> None:
        for i in range(per_caller):
            t0 = time.perf_counter()
            await decider.decide(requests[(k * per_caller + i) % len(requests)])
            concurrent.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    wall = time.perf_counter() - started
    total = callers * per_caller
    concurrent.sort()
    note = ""
    if transactions_before is not None:
        commits = events.transactions - transactions_before  # type: ignore[attr-defined]
        note = f"{total / max(1, commits):.0f} decisions per fsync"
    many = Row(
        f"decide, {callers} callers, {label}",
        wall / total * 1e6,
        _pct(concurrent, 0.5) * 1e6,
        _pct(concurrent, 0.99) * 1e6,
        total / wall,
        note,
    )
    return [single, many]


async def bench_in_process(n_single: int, callers: int, per_caller: int) -> list[Row]:
    rows = await _decide_rows(
        MemoryEventLog(), "memory log (CPU only)", n_single, callers, per_caller
    )
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-") as tmp:
        log = _open_sqlite_log(Path(tmp))
        if log is None:
            print(
                "learnloop/eventlog/sqlite.py not found: skipping the SQLite rows", file=sys.stderr
            )
            return rows
        try:
            rows += await _decide_rows(log, "SQLite log (fsync)", n_single, callers, per_caller)
        finally:
            await log.close()
    return rows


# --- (c) HTTP ------------------------------------------------------------------------


def serve_api_only(port: int, data_dir: Path) -> None:
    """The decision service alone over the SQLite log and a local model store (no join,
    no learner): ``python bench/decide.py --serve-api-only PORT DIR``."""
    import uvicorn

    from learnloop.eventlog.sqlite import SqliteEventLog
    from learnloop.modelstore.local import LocalModelStore

    sys.setswitchinterval(0.001)  # as learnloop serve: the log's writer thread gets the GIL soon
    settings = Settings(port=port, data_dir=data_dir)
    events = SqliteEventLog(data_dir / "log")
    app = create_app(
        settings,
        events=events,
        models=LocalModelStore(data_dir / "models"),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _start_server(kind: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "embedded":
        command = [
            sys.executable,
            "-m",
            "runtime.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ]
    else:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-api-only",
            str(port),
            str(data_dir),
        ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} server not ready in 60 s")


def _bodies() -> list[bytes]:
    return [
        DecisionRequest(decision_point=DP, context=_context(i))
        .model_dump_json(exclude_none=True)
        .encode()
        for i in range(997)
    ]


async def bench_http(kind: str, clients: list[str], levels: list[int], seconds: float) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix=f"learnloop-bench-{kind}-") as tmp:
        process, url = _start_server(kind, Path(tmp))
        bodies = _bodies()
        try:
            await load(url, bodies, "raw", 4, 1.0)  # warm up VW, SQLite and the model watcher
            for client_kind in clients:
                for concurrency in levels:
                    count, latencies, errors = await load(
                        url, bodies, client_kind, concurrency, seconds
                    )
                    rate = count / seconds
                    p99_ms = _pct(latencies, 0.99) * 1e3
                    verdict = "p99 < 10 ms" if p99_ms < P99_BUDGET_MS else "over budget"
                    note = f"{verdict}" + (f"; {errors} errors" if errors else "")
                    rows.append(
                        Row(
                            f"HTTP {kind} server, {client_kind} client, {concurrency} in flight",
                            1e6 / max(rate, 1e-9),
                            _pct(latencies, 0.5) * 1e6,
                            _pct(latencies, 0.99) * 1e6,
                            rate,
                            note,
                        )
                    )
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    return rows


# --- report ----------------------------------------------------------------------------


def _table(rows: list[Row]) -> str:
    lines = [
        "| measurement | per decision (amortized) | p50 | p99 | decisions/s | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.per_op_us:,.0f} µs | {r.p50_us:,.0f} µs | "
            f"{r.p99_us:,.0f} µs | {r.ops_per_s:,.0f} | {r.note} |"
        )
    return "\n".join(lines)


def _summary(raw: Row, in_process: list[Row], http: dict[str, list[Row]]) -> list[str]:
    out = []
    for row in in_process:
        if "callers" in row.name and "1 caller" not in row.name:
            out.append(
                f"- {row.name}: {row.per_op_us / raw.per_op_us:.1f}x raw VW predict "
                "(amortized; target ≤ 3x)"
            )
    for kind, rows in http.items():
        for client_kind in sorted({r.name.split(", ")[1] for r in rows}):
            mine = [r for r in rows if f", {client_kind}," in r.name]
            within = [r for r in mine if r.p99_us / 1e3 < P99_BUDGET_MS]
            label = f"HTTP {kind} server, {client_kind}"
            if within:
                best = max(within, key=lambda r: r.ops_per_s)
                level = best.name.rsplit(", ", 1)[1]
                out.append(
                    f"- {label}: sustainable {best.ops_per_s:,.0f} decisions/s with p99 "
                    f"{best.p99_us / 1e3:.1f} ms ({level})"
                )
            else:
                out.append(f"- {label}: p99 over {P99_BUDGET_MS:.0f} ms at every level measured")
    return out


async def main(args: argparse.Namespace) -> None:
    # As in ``learnloop serve``: the event-log writer thread gets the GIL back quickly.
    sys.setswitchinterval(0.001)
    raw = bench_raw_predict(args.predict_n, repeats=5)
    in_process = await bench_in_process(args.single_n, args.callers, args.per_caller)
    http: dict[str, list[Row]] = {}
    for kind in args.servers:
        http[kind] = await bench_http(kind, args.clients, args.levels, args.seconds)

    print(
        f"\n## learnloop decide benchmark — {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}\n"
    )
    print(_table([raw, *in_process]))
    for rows in http.values():
        print()
        print(_table(rows))
    print()
    print("\n".join(_summary(raw, in_process, http)))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predict-n", type=int, default=5000)
    parser.add_argument("--single-n", type=int, default=300, help="single-caller decisions")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--per-caller", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0, help="per HTTP load level")
    parser.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 4, 8, 16],
        help="HTTP concurrency levels",
    )
    parser.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        default=["embedded", "api"],
        help="comma-separated: embedded (learnloop serve), api (service alone)",
    )
    parser.add_argument(
        "--clients",
        type=lambda s: s.split(","),
        default=["httpx", "raw"],
        help="load generators: httpx (AsyncClient) and raw (asyncio streams, low overhead)",
    )
    parser.add_argument(
        "--serve-api-only", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _parse()
    if arguments.serve_api_only:
        serve_api_only(int(arguments.serve_api_only[0]), Path(arguments.serve_api_only[1]))
    else:
        asyncio.run(main(arguments))
