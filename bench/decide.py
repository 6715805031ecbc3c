"""Benchmark the decision path, from a raw VW prediction to HTTP under load, side by side.

Run ``python bench/decide.py`` (``--help`` for options; about two minutes). One run measures:

a. raw VW predict: ``VWPolicy.predict_lines`` on prebuilt lines of the default
   decision point (4 actions) — the floor;
b. the in-process decide path (``app.decide.Decider.decide``: candidates, persona,
   featurize, predict, sample, encode the logged event, durable append), over a
   memory log and over a real ``SqliteEventLog`` in a temp dir, 64 concurrent
   callers (their appends share transactions and fsyncs). Cost per decision is
   given as wall time and as process CPU time (the SQLite writer thread included),
   each as a multiple of (a);
c. HTTP with ``wrk -t1 -cN`` (N requests in flight) posting a 9-feature context:
   a bare FastAPI echo endpoint on the same uvicorn/uvloop/httptools stack (the
   ceiling, and the proof that the load generator is not the bottleneck: wrk's
   own CPU share is printed for every row), then ``learnloop serve --workers 1``
   and ``--workers 2`` (API workers plus the loop process joining and learning
   from that same load, with a 2 s reward window so windows close, the learner
   releases and the workers swap models while we measure). Each learnloop row
   also shows, from the service's own metrics, the mean durable-append latency,
   decisions per append and model swaps during the run. Without ``wrk`` (and no
   way to install it) the Python load generator of ``bench/http_load.py`` is
   used, and the report says so.

d. the persona resolution (``bench/persona_cost.py``): ``ModelPersonaResolver.resolve``
   p50/p99 for a known user (persona remembered, or scored by a CatBoost model of the
   simulated shop), a user without a profile, an anonymous shopper and an explicit
   persona, and ``Decider.decide`` with the full chain against the default resolver:
   the added p50/p99 (target ≤ 100 µs p50). ``--personas-only`` runs just this part.

The fsync latency of the disk is probed before the HTTP runs: each decision
waits for one, so on a busy disk it bounds the tail. Results print as markdown
(for docs/benchmarks.md); numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asgi_cost import cpu_per_request  # bench/ is on sys.path when this script runs
from decide_report import Cost, HttpRow, report
from echo_server import echo_app
from http_load import load
from http_servers import bench_config, scrape, start_server, stop_server
from persona_cost import bench_personas, persona_report
from wrk_load import WrkResult, find_wrk, run_wrk

from app.main import create_app
from learnloop import featurizer
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog
from learnloop.eventlog.base import EventSink
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.modelstore import MemoryModelStore
from learnloop.policy import VWPolicy
from learnloop.settings import Settings
from schemas.api import DecisionRequest
from schemas.features import Context

DP = "home_products"


def _context(i: int) -> Context:
    """A 9-feature context; a third of the shoppers anonymous, 500 known users."""
    pages = ("home", "category", "product", "cart")
    return Context(
        user_id=f"user-{i % 500}" if i % 3 else None,
        session_id=f"session-{i % 2000}",
        features={
            "page": pages[i % 4],
            "hour": i % 24,
            "device": "mobile" if i % 2 else "desktop",
            "country": ("de", "fr", "it")[i % 3],
            "campaign": f"c{i % 5}",
            "returning": bool(i % 2),
            "basket_items": i % 7,
            "price_band": ("low", "mid", "high")[i % 3],
            "weekday": i % 7,
        },
    )


def _requests(n: int = 997) -> list[DecisionRequest]:
    return [DecisionRequest(decision_point=DP, context=_context(i)) for i in range(n)]


# --- (a) and (b): in process ------------------------------------------------------------


class _Best:
    """The lowest per-operation wall, process CPU and event-loop-thread CPU time seen."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.loop_cpu = float("inf")
        self._started = (0.0, 0.0, 0.0)

    def start(self) -> None:
        self._started = (time.perf_counter(), time.process_time(), time.thread_time())

    def stop(self, n: int) -> None:
        w0, c0, t0 = self._started
        self.wall = min(self.wall, (time.perf_counter() - w0) / n)
        self.cpu = min(self.cpu, (time.process_time() - c0) / n)
        self.loop_cpu = min(self.loop_cpu, (time.thread_time() - t0) / n)


async def _decider(events: EventSink) -> Any:
    app = create_app(
        Settings(),
        events=events,
        models=MemoryModelStore(),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
    )
    await app.state.registry.load_all()
    return app.state.decider


async def bench_in_process(
    predict_n: int, callers: int, per_caller: int, rounds: int
) -> tuple[Cost, list[Cost]]:
    """Raw predict and the decide path over both logs, measured in alternating rounds so
    that a busy machine slows all three alike; the best round of each counts."""
    config = load_config_file(None)[0]
    policy = VWPolicy(config.vw_args)
    lines = featurizer.example(_context(1), "unclassified", config.actions)
    requests = _requests()
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-") as tmp:
        sqlite = SqliteEventLog(Path(tmp))
        deciders = {
            "memory log": await _decider(MemoryEventLog()),
            "SQLite log (fsync)": await _decider(sqlite),
        }
        for decider in deciders.values():
            for i in range(300):
                await decider.decide(requests[i % len(requests)])
        for _ in range(500):
            policy.predict_lines(lines)

        async def caller(decider: Any, k: int) -> None:
            for i in range(per_caller):
                await decider.decide(requests[(k * per_caller + i) % len(requests)])

        raw, best = _Best(), {label: _Best() for label in deciders}
        transactions = sqlite.transactions
        for _ in range(rounds):
            raw.start()
            for _ in range(predict_n):
                policy.predict_lines(lines)
            raw.stop(predict_n)
            for label, decider in deciders.items():
                best[label].start()
                await asyncio.gather(*(caller(decider, k) for k in range(callers)))
                best[label].stop(callers * per_caller)
        per_commit = callers * per_caller * rounds / max(1, sqlite.transactions - transactions)
        await sqlite.close()
    policy.close()
    return (
        Cost(
            "raw VW predict (4 actions, prebuilt lines)",
            raw.wall * 1e6,
            raw.cpu * 1e6,
            raw.loop_cpu * 1e6,
        ),
        [
            Cost(
                f"decide, {callers} callers, {label}",
                b.wall * 1e6,
                b.cpu * 1e6,
                b.loop_cpu * 1e6,
                f"{per_commit:.0f} decisions per transaction" if "SQLite" in label else "",
            )
            for label, b in best.items()
        ],
    )


async def bench_asgi(n: int, rounds: int) -> tuple[float, float]:
    """CPU per request (µs) of the echo app and of learnloop's app over a SQLite log,
    called in process in alternating rounds: the CPU-bound share of the echo's rate."""
    bodies = [r.model_dump_json(exclude_none=True).encode() for r in _requests(200)]
    echo = echo_app()
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-asgi-") as tmp:
        log = SqliteEventLog(Path(tmp))
        app = create_app(
            Settings(),
            events=log,
            models=MemoryModelStore(),
            decision_points=MemoryDecisionPointStore(load_config_file(None)),
        )
        await app.state.registry.load_all()
        echo_cpu = learnloop_cpu = float("inf")
        for _ in range(rounds):
            echo_cpu = min(echo_cpu, await cpu_per_request(echo, bodies, n, 1))
            learnloop_cpu = min(learnloop_cpu, await cpu_per_request(app, bodies, n, 1))
        await log.close()
    return echo_cpu * 1e6, learnloop_cpu * 1e6


def fsync_probe(directory: Path, n: int = 100) -> tuple[float, float]:
    """p50 and p99 (ms) of ``fsync`` after a 4 KiB write: the floor of a durable append."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    samples = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return samples[n // 2] * 1e3, samples[min(n - 1, round(n * 0.99))] * 1e3


# --- (c) HTTP ----------------------------------------------------------------------------


def _python_load(url: str, bodies: list[bytes], in_flight: int, seconds: float) -> WrkResult:
    """The fallback without wrk: bench/http_load.py's raw asyncio client, same fields."""
    c0 = time.process_time()
    count, latencies, errors = asyncio.run(load(url, bodies, "raw", in_flight, seconds))

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))] * 1e6

    return WrkResult(
        count, seconds, errors, pct(0.5), pct(0.9), pct(0.99), pct(0.999), latencies[-1] * 1e6,
        (time.process_time() - c0) / seconds,
    )  # fmt: skip


def bench_http(
    servers: list[str],
    levels: list[int],
    seconds: float,
    wrk: str | None,
    workdir: Path,
    window_seconds: float,
) -> list[HttpRow]:
    bodies = [r.model_dump_json(exclude_none=True).encode() for r in _requests(200)]
    config = bench_config(workdir, window_seconds)
    rows: list[HttpRow] = []
    for server in servers:
        data_dir = workdir / server / "data"
        data_dir.parent.mkdir(parents=True)
        process, url = start_server(server, data_dir, config)
        try:
            for level, in_flight in enumerate(levels):
                # Warm up once past the reward window: from then on windows close, the
                # learner releases and the workers swap models while we measure.
                warm = window_seconds + 1.0 if level == 0 and server != "echo" else 2.0
                if wrk is not None:
                    run_wrk(wrk, url, bodies, in_flight, warm)
                    before = scrape(url) if server != "echo" else None
                    result = run_wrk(wrk, url, bodies, in_flight, seconds)
                else:
                    _python_load(url, bodies, in_flight, warm)
                    before = scrape(url) if server != "echo" else None
                    result = _python_load(url, bodies, in_flight, seconds)
                server_side = None
                if before is not None:
                    after = scrape(url)
                    server_side = {k: after[k] - before[k] for k in after}
                rows.append(HttpRow(server, in_flight, result, server_side))
                print(
                    f"  {server:>5} c{in_flight:<3} {result.rate:8,.0f}/s "
                    f"p99 {result.p99_us / 1e3:6.2f} ms",
                    file=sys.stderr,
                )
        finally:
            stop_server(process)
    return rows


def main(args: argparse.Namespace) -> None:
    personas = persona_report(*bench_personas())
    if args.personas_only:
        print(personas)
        return
    raw, in_process = asyncio.run(
        bench_in_process(args.predict_n, args.callers, args.per_caller, args.rounds)
    )
    asgi = asyncio.run(bench_asgi(2000, args.rounds // 2 or 1))
    wrk = find_wrk(install=not args.no_install)
    if wrk is None:
        print("wrk not found and not installable: using bench/http_load.py", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-http-") as tmp:
        workdir = Path(tmp)
        fsync = fsync_probe(workdir)
        http = bench_http(args.servers, args.levels, args.seconds, wrk, workdir, args.window)
    print()
    print(report(raw, in_process, asgi, http, fsync, wrk is not None))
    print()
    print(personas)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predict-n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6, help="alternating in-process rounds")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--per-caller", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0, help="per HTTP load level")
    parser.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[4, 16],
        help="requests in flight (wrk connections)",
    )
    parser.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        default=["echo", "w1", "w2"],
        help="echo (bare FastAPI), wN (learnloop serve --workers N)",
    )
    parser.add_argument(
        "--window", type=float, default=2.0, help="reward window of the benchmark's decision point"
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument(
        "--personas-only", action="store_true", help="only (d), the persona resolution cost"
    )
    return parser.parse_args()


if __name__ == "__main__":
    main(_parse())
