"""Snapshot and restore: a join restored at any point of a stream continues exactly as if
it had never stopped (same joined examples, dropped events, counters and state)."""

from __future__ import annotations

import json
import random

import pytest

from join_service.window import Join
from learnloop.errors import InvalidInput
from schemas import JoinInput
from tests.unit.test_join_window import (
    Points,
    activation,
    at,
    decision,
    feed,
    outcome,
    points,
    reward,
)

CONFIGS = points(
    home_products={"aggregation": "sum"},
    fast={"window_seconds": 5, "skew_tolerance_seconds": 1, "aggregation": "first"},
    slow={"window_seconds": 30, "reward_map": {"purchase": 10}},
)

EVERY_RULE: list[JoinInput] = [
    outcome("early", 0.5, event_id="d1"),
    decision("d1", 0, session="s1"),
    decision("f1", 0.2, session="s1", point="fast"),
    outcome("o1", 1, session="s1"),
    outcome("o1", 1, session="s1"),
    decision("d2", 0.8, session="s1", activated=False),
    reward("r1", "f1", 2, 4),
    decision("s1", 2, session="s2", point="slow"),
    outcome("p1", 3, "purchase", session="s2"),
    outcome("orphan", 3, event_id="nobody"),
    activation("a2", "d2", 4),
    outcome("late", 6, event_id="f1"),
    decision("f1", 0.2, point="fast"),
    decision("deferred", 7, activated=False),
    outcome("unknown", 8, "hover", event_id="d1"),
    decision("f2", 1.5, point="fast"),
    outcome("tail", 21, session="s1"),
    decision("gone", -60),
    outcome("p2", 25, "purchase", event_id="s1"),
]


def random_stream(seed: int, size: int = 80) -> list[JoinInput]:
    """Decisions, outcomes, rewards and activations with arrival jitter, duplicates and strays."""
    rng = random.Random(seed)
    events: list[tuple[float, JoinInput]] = []
    for n in range(size // 4):
        t = n * 1.5
        point = rng.choice(["home_products", "fast", "slow"])
        session = f"s{rng.randrange(3)}"
        events.append((t, decision(f"d{n}", t, session=session, point=point,
                                   activated=rng.random() > 0.2)))  # fmt: skip
        for k in range(rng.randrange(4)):
            when = t + rng.uniform(-0.5, 8)
            kind = rng.choice(["id", "session", "reward", "activation", "stray"])
            if kind == "id":
                type_ = rng.choice(["basket_add", "detail_view", "hover"])
                event: JoinInput = outcome(f"o{n}.{k}", when, type_, event_id=f"d{n}")
            elif kind == "session":
                event = outcome(f"o{n}.{k}", when, "detail_view", session=session)
            elif kind == "reward":
                event = reward(f"r{n}.{k}", f"d{n}", when, rng.uniform(0, 5))
            elif kind == "activation":
                event = activation(f"a{n}", f"d{n}", when)
            else:
                event = outcome(f"o{n}.{k}", when, event_id=f"nobody{n}")
            events.append((when + rng.uniform(-1.5, 1.5), event))
            if rng.random() < 0.1:
                events.append((when + 3, event))
    return [event for _, event in sorted(events, key=lambda pair: pair[0])]


def outputs(join: Join, events: list[JoinInput]) -> list[dict[str, object]]:
    return [e.model_dump() for e in feed(join, events)]


@pytest.mark.parametrize(
    ("events", "configs"),
    [
        (EVERY_RULE, CONFIGS),
        (random_stream(1), CONFIGS),
        (random_stream(2), CONFIGS),
        (random_stream(3), None),
    ],
    ids=["every-rule", "random-1", "random-2", "random-3-default-configs"],
)
def test_restore_at_every_split_equals_an_uninterrupted_run(
    events: list[JoinInput], configs: Points
) -> None:
    end: list[JoinInput] = [decision("closer", 3600)]
    whole = Join(configs)
    expected = outputs(whole, events + end)
    assert expected, "the stream must join something"
    for split in range(len(events) + 1):
        first = Join(configs)
        emitted = outputs(first, events[:split])
        restored = Join.restore(first.snapshot(), configs)
        emitted += outputs(restored, events[split:] + end)
        assert emitted == expected, f"split at {split}"
        assert restored.stats == whole.stats, f"split at {split}"
        assert restored.snapshot() == whole.snapshot(), f"split at {split}"


def test_every_rule_stream_exercises_every_rule() -> None:
    join = Join(CONFIGS)
    feed(join, [*EVERY_RULE, decision("closer", 3600)])
    stats = join.stats.model_dump()
    for counter in ("late", "duplicates", "orphaned", "unknown_type", "not_activated", "stale"):
        assert stats[counter] > 0, counter
    assert stats["joined_outcome"] and stats["joined_direct"] and stats["joined_default"]
    reasons = {d.reason for d in join.drain_dropped()}
    assert reasons == {"late", "orphaned", "stale", "not_activated"}


def test_snapshot_is_json_with_a_format_version() -> None:
    join = Join(CONFIGS)
    feed(join, EVERY_RULE[:5])
    state = json.loads(join.snapshot())
    assert state["format"] == 1 and state["stream_time"].startswith("2026-01-01T00:00:01")


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", json.dumps({"format": 99}).encode()],
    ids=["garbage", "empty-object", "unknown-format"],
)
def test_restore_refuses_what_it_cannot_read(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="snapshot"):
        Join.restore(data)


def test_restore_of_a_fresh_join() -> None:
    restored = Join.restore(Join().snapshot())
    assert restored.stream_time is None and restored.stats == Join().stats
    assert restored.on_decision(decision("d", 0)) == []
    assert [e.event_id for e in restored.advance(at(20))] == ["d"]
