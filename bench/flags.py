"""Benchmark flag evaluation in process against a decision: the cost of a flag check.

Run ``python bench/flags.py`` (``--help`` for options; about half a minute). One app over
in-memory stores (a memory event log, so a decision's cost is its CPU, not an fsync),
the shipped decision point ``home_products`` (4 actions) and four flags; each row calls
the service method directly (no HTTP) on 9-feature contexts, a third of them anonymous:

- ``decide``: ``Decider.decide`` at ``home_products`` — the yardstick;
- ``static flag``: a flag without rules (reason ``STATIC``);
- ``targeted flag``: three rules (a condition on a feature, a persona list, a 20 % rollout)
  most contexts fall through (``TARGETING_MATCH``/``SPLIT``/``DEFAULT``);
- ``personalized flag``: a rule every context matches, so each evaluation is an exposure
  (a decision among three variants at ``flag.checkout_layout``, logged);
- ``bulk, 4 flags``: ``POST /v1/flags/evaluate``'s service call for the page's four flags.

Rounds alternate between the rows so a busy machine slows them alike; the best round's
mean counts, with the p50/p99 of single calls. The target of the issue: a static flag at
<= 0.3x the cost of a decision. Results print as markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.main import create_app
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog
from learnloop.flag_store import MemoryFlagStore
from learnloop.modelstore import MemoryModelStore
from learnloop.settings import Settings
from schemas.api import DecisionRequest
from schemas.features import Context
from schemas.flags import FlagDefinition, FlagEvaluationRequest

VARIANTS = {"classic": "classic", "one_page": "one-page", "wizard": "wizard"}
FLAGS: dict[str, dict[str, Any]] = {
    "static_banner": {"type": "boolean", "variants": {"on": True, "off": False},
                      "default_variant": "on"},
    "targeted_layout": {
        "type": "string", "variants": VARIANTS, "default_variant": "classic",
        "rules": [
            {"conditions": [{"attribute": "device", "op": "eq", "value": "kiosk"}],
             "variant": "wizard"},
            {"personas": ["shop_owner"], "variant": "one_page"},
            {"rollout": [{"variant": "wizard", "weight": 20}]},
        ],
    },
    "checkout_layout": {
        "type": "string", "variants": VARIANTS, "default_variant": "classic",
        "rules": [{"personalized": ["classic", "one_page", "wizard"]}],
    },
    "bulk_order_form": {
        "type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "off",
        "rules": [{"personas": ["shop_owner"], "variant": "on"}],
    },
}  # fmt: skip


def _context(i: int) -> Context:
    """The 9-feature context of bench/decide.py: a third anonymous, 500 known users."""
    return Context(
        user_id=f"user-{i % 500}" if i % 3 else None,
        session_id=f"session-{i % 2000}",
        features={
            "page": ("home", "category", "product", "cart")[i % 4],
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


Op = Callable[[int], Awaitable[Any]]


async def _app() -> Any:
    app = create_app(
        Settings(),
        events=MemoryEventLog(),
        models=MemoryModelStore(),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
        flags=MemoryFlagStore(),
    )
    for key, body in FLAGS.items():
        await app.state.flags.put(key, FlagDefinition.model_validate(body), "bench")
    await app.state.registry.load_all()
    return app


async def bench(n: int, rounds: int) -> list[tuple[str, float, float, float, float]]:
    """(label, mean wall µs, mean CPU µs, p50 µs, p99 µs) per row, best round."""
    app = await _app()
    service, decider = app.state.flags, app.state.decider
    contexts = [_context(i) for i in range(997)]
    decisions = [DecisionRequest(decision_point="home_products", context=c) for c in contexts]
    evaluations = [FlagEvaluationRequest(context=c) for c in contexts]

    def flag(key: str) -> Op:
        return lambda i: service.evaluate(key, evaluations[i % len(evaluations)])

    ops: dict[str, Op] = {
        "decide (home_products, 4 actions)": lambda i: decider.decide(decisions[i % 997]),
        "static flag": flag("static_banner"),
        "targeted flag (3 rules)": flag("targeted_layout"),
        "personalized flag (an exposure)": flag("checkout_layout"),
        "bulk, 4 flags (1 personalized)": lambda i: service.evaluate_all(evaluations[i % 997]),
    }
    for op in ops.values():  # warm up: models built, caches filled
        for i in range(300):
            await op(i)
    best: dict[str, tuple[float, float]] = {label: (float("inf"),) * 2 for label in ops}
    samples: dict[str, list[float]] = {label: [] for label in ops}
    for _ in range(rounds):
        for label, op in ops.items():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for i in range(n):
                await op(i)
            wall, cpu = (time.perf_counter() - wall0) / n, (time.process_time() - cpu0) / n
            best[label] = (min(best[label][0], wall), min(best[label][1], cpu))
            for i in range(200):
                started = time.perf_counter()
                await op(i)
                samples[label].append(time.perf_counter() - started)
    rows = []
    for label in ops:
        ordered = sorted(samples[label])
        p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
        rows.append((label, best[label][0] * 1e6, best[label][1] * 1e6, p50 * 1e6, p99 * 1e6))
    return rows


def report(rows: list[tuple[str, float, float, float, float]]) -> str:
    decide_wall, decide_cpu = rows[0][1], rows[0][2]
    lines = [
        "| in process, memory log | mean µs | CPU µs | p50 µs | p99 µs | x decide (wall, CPU) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, wall, cpu, p50, p99 in rows:
        lines.append(
            f"| {label} | {wall:.1f} | {cpu:.1f} | {p50:.1f} | {p99:.1f} | "
            f"{wall / decide_wall:.2f}, {cpu / decide_cpu:.2f} |"
        )
    static = max(rows[1][1] / decide_wall, rows[1][2] / decide_cpu)
    verdict = "meets" if static <= 0.3 else "misses"
    lines.append("")
    lines.append(
        f"A static flag costs at most {static:.2f}x a decision ({verdict} the <= 0.3x target)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per row and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(report(asyncio.run(bench(args.n, args.rounds))))


if __name__ == "__main__":
    main()
