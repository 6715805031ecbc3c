"""Benchmark the learning loop behind the decision service, in one run.

a. join throughput: the pure join core alone, and the embedded join runner over a
   real SQLite event log (decode, join, append joined examples, checkpoint);
b. learner throughput: ``OnlineLearner.learn`` against raw VW learn
   (``VWPolicy.learn_lines`` on prebuilt labelled lines) on the same examples;
c. freshness: a real ``learnloop serve``; from the moment the event that closes a
   window is acknowledged to the moment the decision service serves a model that
   learned that window's decisions.

Prints a markdown table (copied into docs/benchmarks.md). CPU-bound rows use
process time and the best of ``--repeats`` runs: other load on the machine
inflates wall time, not the work done.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from join_service.embedded_runner import EmbeddedJoinRunner
from join_service.window import Join
from learnloop import featurizer
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import Append, Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.policy import VWPolicy
from online_learner.learner import OnlineLearner
from runtime.processes import ServiceProcess
from schemas import DecisionEvent, JoinedExample, JoinInput, OutcomeEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = load_config_file(None)[0]
PAGES = ("home", "skincare", "nutrition", "cart")


def events(decisions: int, seed: int = 1) -> list[JoinInput]:
    """Decisions every 50 ms of event time, each followed within 25 s by one outcome
    (half by event id, half by session; some after the 20 s window), in time order."""
    rng = random.Random(seed)
    timeline: list[tuple[datetime, int, JoinInput]] = []
    for n in range(decisions):
        at = T0 + timedelta(seconds=n * 0.05)
        decision = DecisionEvent(
            event_id=f"d{n}", timestamp=at, decision_point=CONFIG.name,
            context={"session_id": f"s{n % 500}",
                     "features": {"page": PAGES[n % 4], "visits": n % 7, "mobile": n % 2 == 0}},
            persona="visitor", actions=CONFIG.actions, chosen_index=n % 4,
            probabilities=[0.25] * 4, model_version="0",
        )  # fmt: skip
        timeline.append((at, 0, decision))
        later = at + timedelta(seconds=rng.uniform(0.5, 25.0))
        outcome = OutcomeEvent(
            outcome_id=f"o{n}", timestamp=later,
            type="basket_add" if rng.random() < 0.3 else "detail_view",
            **({"event_id": f"d{n}"} if n % 2 else {"session_id": f"s{n % 500}"}),
        )  # fmt: skip
        timeline.append((later, 1, outcome))
    timeline.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in timeline]


def best_cpu(repeats: int, run: object) -> float:
    """Smallest process time over ``repeats`` calls of ``run()``."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()  # type: ignore[operator]
        times.append(time.process_time() - started)
    return min(times)


def bench_pure_join(stream: list[JoinInput], repeats: int) -> tuple[float, list[JoinedExample]]:
    out: list[JoinedExample] = []

    def run() -> None:
        join = Join({CONFIG.name: CONFIG})
        out.clear()
        for event in stream:
            out.extend(join.on_event(event))
        out.extend(join.advance(T0 + timedelta(days=1)))

    seconds = best_cpu(repeats, run)
    return len(stream) / seconds, list(out)


async def bench_embedded_join(stream: list[JoinInput]) -> float:
    """Events/s through the embedded runner: read, decode, join, commit, checkpoint."""
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-") as tmp:
        log = SqliteEventLog(Path(tmp))
        stream_name = {DecisionEvent: Streams.DECISIONS, OutcomeEvent: Streams.OUTCOMES}
        records = [Append(stream_name[type(e)], e.model_dump_json().encode()) for e in stream]
        for start in range(0, len(records), 5000):
            await log.append(records[start : start + 5000])
        end = await log.end_offset()
        runner = EmbeddedJoinRunner(log, MemoryDecisionPointStore([CONFIG]))
        await runner.start()
        started = time.perf_counter()
        cpu = time.process_time()
        while runner.offset < end:
            await runner.step()
        await runner.checkpoint()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        await log.close()
    return len(stream) / max(wall, cpu)


def bench_learner(examples: list[JoinedExample], repeats: int) -> tuple[float, float]:
    """(learner examples/s, raw VW learn examples/s) on the same examples."""
    lines = [
        featurizer.training_example(e.decision, e.reward) for e in examples
    ]  # prebuilt, outside the timing

    def raw() -> None:
        policy = VWPolicy(CONFIG.vw_args)
        for labelled in lines:
            policy.learn_lines(labelled)

    def learner() -> None:
        core = OnlineLearner({CONFIG.name: CONFIG}, release_every_examples=10**9)
        for offset, example in enumerate(examples):
            core.learn(example, offset)

    return len(examples) / best_cpu(repeats, learner), len(examples) / best_cpu(repeats, raw)


async def bench_freshness(rounds: int) -> list[float]:
    """Seconds from the window-closing event's acknowledgement to a served model that
    learned that window (a real ``learnloop serve`` with its default settings)."""
    results: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="learnloop-bench-") as tmp,
        ServiceProcess(Path(tmp) / "data") as service,
    ):
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            start = datetime.now(UTC) - timedelta(hours=1)
            learned = 0
            for r in range(rounds):
                at = start + timedelta(minutes=r)
                bodies = [
                    {
                        "decision_point": CONFIG.name,
                        "timestamp": (at + timedelta(seconds=i * 0.1)).isoformat(),
                        "context": {"session_id": f"f{r}-{i}", "features": {"page": PAGES[i % 4]}},
                    }
                    for i in range(50)
                ]
                await asyncio.gather(*(client.post("/v1/decisions", json=b) for b in bodies))
                learned += len(bodies)
                tick = {"session_id": "bench-clock", "type": "clock_tick",
                        "timestamp": (at + timedelta(seconds=30)).isoformat()}  # fmt: skip
                (await client.post("/v1/outcomes", json=tick)).raise_for_status()
                closed_at = time.perf_counter()
                while True:
                    model = (await client.get(f"/v1/models/{CONFIG.name}")).json()
                    if model["examples_learned"] >= learned:
                        results.append(time.perf_counter() - closed_at)
                        break
                    if time.perf_counter() - closed_at > 30:
                        raise RuntimeError(f"no fresh model after 30 s: {model}")
                    await asyncio.sleep(0.01)
    return results


async def main(args: argparse.Namespace) -> None:
    stream = events(args.decisions)
    join_rate, joined = bench_pure_join(stream, args.repeats)
    runner_rate = await bench_embedded_join(stream)
    learner_rate, raw_rate = bench_learner(joined, args.repeats)
    fresh = await bench_freshness(args.rounds)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.platform()}")  # fmt: skip
    print(f"{len(stream):,} join events ({args.decisions:,} decisions + outcomes)\n")
    print("| measurement | result | target |")
    print("| --- | ---: | --- |")
    print(f"| pure join core | {join_rate:,.0f} events/s | ≥ 100,000 events/s |")
    print(f"| embedded join runner (SQLite log) | {runner_rate:,.0f} events/s | |")
    print(f"| raw VW learn (`learn_lines`, prebuilt lines) | {raw_rate:,.0f} examples/s | |")
    print(f"| online learner (`OnlineLearner.learn`) | {learner_rate:,.0f} examples/s "
          f"({learner_rate / raw_rate:.0%} of raw) | ≥ 70 % of raw |")  # fmt: skip
    print(f"| freshness, median of {len(fresh)} | {statistics.median(fresh):.2f} s "
          f"(max {max(fresh):.2f} s) | ≤ 2 s |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
