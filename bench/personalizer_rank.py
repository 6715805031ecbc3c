"""What a Personalizer rank costs beside the same decision through learnloop's own route.

Run ``python bench/personalizer_rank.py`` (``--help``; about half a minute). One app over
in-memory stores (a memory event log: a request's cost is its CPU, not an fsync), called
in process through httpx's ASGI transport, so both rows include the framework: routing,
the body, the answer. The same 9 context features and 4 actions with 2 features each go
to ``POST /v1/decisions`` (learnloop's shape) and to ``POST /personalizer/v1.0/rank``
(Personalizer's: arrays of objects, mapped onto the namespaces, then the same decision).
Rounds alternate between the rows so a busy machine slows both alike; the best round's
mean counts, with p50/p99 of single calls. Results print as markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from app.main import create_app
from learnloop.decision_points import MemoryDecisionPointStore
from learnloop.eventlog import MemoryEventLog
from learnloop.modelstore import MemoryModelStore
from learnloop.settings import Settings
from schemas.config import DecisionPointConfig

ACTIONS = [("news", "world"), ("sports", "football"), ("music", "jazz"), ("food", "pasta")]


def _features(i: int) -> dict[str, Any]:
    return {
        "user": {"tier": ("gold", "silver")[i % 2], "returning": bool(i % 3)},
        "device": {"type": ("mobile", "desktop")[i % 2], "os": ("ios", "android")[i % 2]},
        "time": {"hour": i % 24, "weekday": i % 7},
        "page": {"section": ("home", "sport", "culture")[i % 3], "depth": i % 5},
        "campaign": {"id": f"c{i % 5}"},
    }


def learnloop_body(i: int) -> dict[str, Any]:
    return {
        "decision_point": "personalizer",
        "event_id": f"ll-{i}",
        "context": {"features": _features(i)},
        "actions": [{"id": a, "features": {"topic": t, "length": n}} for n, (a, t) in
                    enumerate(ACTIONS)],
    }  # fmt: skip


def personalizer_body(i: int) -> dict[str, Any]:
    return {
        "eventId": f"pz-{i}",
        "contextFeatures": [{ns: values} for ns, values in _features(i).items()],
        "actions": [{"id": a, "features": [{"topic": t}, {"length": n}]} for n, (a, t) in
                    enumerate(ACTIONS)],
    }  # fmt: skip


async def bench(n: int, rounds: int) -> list[tuple[str, float, float, float]]:
    store = MemoryDecisionPointStore([DecisionPointConfig(name="personalizer")])
    app = create_app(
        Settings(), events=MemoryEventLog(), models=MemoryModelStore(), decision_points=store
    )
    await app.state.registry.load_all()
    rows = {
        "POST /v1/decisions": ("/v1/decisions", learnloop_body, 200),
        "POST /personalizer/v1.0/rank": ("/personalizer/v1.0/rank", personalizer_body, 201),
    }
    best: dict[str, tuple[float, float, float]] = {k: (float("inf"), 0.0, 0.0) for k in rows}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.put("/v1/decision-points/personalizer", json={"actions": []})
        serial = 0
        for round_ in range(rounds + 1):  # round 0 warms up
            for label, (path, body, status) in rows.items():
                times = []
                for _ in range(n):
                    serial += 1
                    payload = body(serial)
                    started = time.perf_counter()
                    answer = await client.post(path, json=payload)
                    times.append(time.perf_counter() - started)
                    assert answer.status_code == status, answer.text
                if round_ == 0:
                    continue
                mean = statistics.fmean(times) * 1e6
                if mean < best[label][0]:
                    times.sort()
                    p50, p99 = times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6
                    best[label] = (mean, p50, p99)
    return [(label, *values) for label, values in best.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="calls per row and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(bench(args.n, args.rounds))
    base = results[0][1]
    print("\n| in process, ASGI, memory log | mean µs | p50 µs | p99 µs | times /v1/decisions |")
    print("|---|---:|---:|---:|---:|")
    for label, mean, p50, p99 in results:
        print(f"| {label} | {mean:.1f} | {p50:.1f} | {p99:.1f} | {mean / base:.2f} |")


if __name__ == "__main__":
    main()
