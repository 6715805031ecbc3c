"""The flag engine: precedence, the kill switch, conditions, reasons and sticky bucketing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from learnloop.flag_engine import (
    Resolution,
    attributes_of,
    bucket,
    bucketing_key_of,
    condition_holds,
    evaluate,
)
from schemas.features import Context, Scalar
from schemas.flags import Condition, Flag

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_flag(key: str = "checkout_layout", **fields: Any) -> Flag:
    body: dict[str, Any] = {
        "type": "string",
        "variants": {"one_page": "1p", "steps": "3s", "compact": "c"},
        "default_variant": "one_page",
    }
    body.update(fields)
    return Flag(key=key, version=1, updated_at=NOW, updated_by="test", **body)


TEAM_FLAG = make_flag(
    rules=[
        {"name": "owners", "personas": ["shop_owner"], "variant": "steps"},
        {
            "name": "consultants",
            "personas": ["consultant"],
            "personalized": ["compact", "one_page"],
        },
        {
            "name": "direct",
            "personas": ["direct"],
            "rollout": [{"variant": "compact", "weight": 20}],
        },
        {
            "conditions": [{"attribute": "device", "op": "eq", "value": "mobile"}],
            "variant": "compact",
        },
    ]
)


def test_each_reason_has_its_path() -> None:
    assert evaluate(make_flag(), {"persona": "x"}, "user:a") == Resolution("one_page", "STATIC")
    assert evaluate(TEAM_FLAG, {"persona": "shop_owner"}, None) == Resolution(
        "steps", "TARGETING_MATCH", rule_index=0
    )
    # Personalized: the default is allowed, so it comes first (the holdout gets it).
    assert evaluate(TEAM_FLAG, {"persona": "consultant"}, None) == Resolution(
        "one_page", "PERSONALIZED", ["one_page", "compact"], 1
    )
    split = evaluate(TEAM_FLAG, {"persona": "direct"}, "user:ivan")  # bucket 12.4 < 20
    assert split == Resolution("compact", "SPLIT", rule_index=2)
    assert evaluate(TEAM_FLAG, {"persona": "other"}, "user:a") == Resolution("one_page", "DEFAULT")
    off = TEAM_FLAG.model_copy(update={"enabled": False})
    assert evaluate(off, {"persona": "shop_owner"}, "user:a") == Resolution("one_page", "DISABLED")


def test_disabled_beats_every_rule_and_reenabling_restores_them() -> None:
    off = TEAM_FLAG.model_copy(update={"enabled": False})
    for persona in ("shop_owner", "consultant", "direct", "other"):
        for key in ("user:carol", "user:alice", None):
            attributes = {"persona": persona, "device": "mobile"}
            assert evaluate(off, attributes, key) == Resolution("one_page", "DISABLED")
    on = off.model_copy(update={"enabled": True})
    assert evaluate(on, {"persona": "shop_owner"}, None).variant == "steps"


def test_the_first_matching_rule_wins() -> None:
    # A shop owner on mobile matches rules 0 and 3: rule 0 decides.
    assert evaluate(TEAM_FLAG, {"persona": "shop_owner", "device": "mobile"}, None).rule_index == 0
    # A direct customer outside the 20 % (alice: bucket 49.9) falls through to rule 3 ...
    mobile = evaluate(TEAM_FLAG, {"persona": "direct", "device": "mobile"}, "user:alice")
    assert mobile == Resolution("compact", "TARGETING_MATCH", rule_index=3)
    # ... and, not on mobile, to the default.
    assert evaluate(TEAM_FLAG, {"persona": "direct"}, "user:alice").reason == "DEFAULT"
    # Reordered, the mobile rule wins for the shop owner.
    swapped = TEAM_FLAG.model_copy(update={"rules": [TEAM_FLAG.rules[3], *TEAM_FLAG.rules[:3]]})
    assert (
        evaluate(swapped, {"persona": "shop_owner", "device": "mobile"}, None).variant == "compact"
    )


def test_a_rollout_without_a_bucketing_key_falls_through() -> None:
    anonymous = evaluate(TEAM_FLAG, {"persona": "direct", "device": "mobile"}, None)
    assert anonymous == Resolution("compact", "TARGETING_MATCH", rule_index=3)
    assert evaluate(TEAM_FLAG, {"persona": "direct"}, None).reason == "DEFAULT"


def test_a_one_variant_personalized_rule_is_a_fixed_variant_and_candidates_keep_their_order() -> (
    None
):
    flag = make_flag(rules=[{"personalized": ["compact"]}])
    assert evaluate(flag, {}, None) == Resolution("compact", "TARGETING_MATCH", rule_index=0)
    without_default = make_flag(rules=[{"personalized": ["compact", "steps"]}])
    assert evaluate(without_default, {}, None) == Resolution(
        "compact", "PERSONALIZED", ["compact", "steps"], 0
    )


def test_personas_and_conditions_must_all_hold() -> None:
    flag = make_flag(
        rules=[
            {
                "personas": ["consultant", "shop_owner"],
                "conditions": [
                    {"attribute": "geo.region", "op": "in", "value": ["eu", "uk"]},
                    {"attribute": "cart_total", "op": "gte", "value": 100},
                ],
                "variant": "steps",
            }
        ]
    )
    hit: dict[str, Scalar] = {"persona": "consultant", "geo.region": "eu", "cart_total": 100}
    assert evaluate(flag, hit, None).reason == "TARGETING_MATCH"
    misses: list[dict[str, Scalar]] = [
        {"persona": "direct"},
        {"geo.region": "us"},
        {"cart_total": 99.9},
    ]
    for miss in misses:
        assert evaluate(flag, {**hit, **miss}, None).reason == "DEFAULT", miss
    without_total = {k: v for k, v in hit.items() if k != "cart_total"}
    assert evaluate(flag, without_total, None).reason == "DEFAULT"


CONDITIONS: list[tuple[str, Any, Any, bool]] = [
    # op, condition value, attribute value (... = missing), holds
    ("eq", "mobile", "mobile", True),
    ("eq", "mobile", "desktop", False),
    ("eq", 5, 5.0, True),
    ("eq", 5, "5", False),  # a string is not a number
    ("eq", "5", 5, False),
    ("eq", True, 1, False),  # a boolean is not a number
    ("eq", True, True, True),
    ("eq", "x", ..., False),
    ("neq", "mobile", "desktop", True),
    ("neq", "mobile", "mobile", False),
    ("neq", 5, "5", True),
    ("neq", "x", ..., True),
    ("in", ["eu", "uk"], "uk", True),
    ("in", ["eu", "uk"], "us", False),
    ("in", [1, 2], 2.0, True),
    ("in", [1, 2], "2", False),
    ("in", ["eu"], ..., False),
    ("not_in", ["eu", "uk"], "us", True),
    ("not_in", ["eu", "uk"], "eu", False),
    ("not_in", ["eu"], ..., True),
    ("lt", 10, 9.5, True),
    ("lt", 10, 10, False),
    ("lte", 10, 10, True),
    ("lte", 10, 10.5, False),
    ("gt", 10, 11, True),
    ("gt", 10, 10, False),
    ("gte", 10, 10, True),
    ("gte", 10, 9, False),
    ("gt", 10, "11", False),  # numeric tests hold only for numbers
    ("gt", 0, True, False),
    ("lt", 10, ..., False),
]


@pytest.mark.parametrize(("op", "value", "actual", "holds"), CONDITIONS)
def test_each_operator(op: str, value: Any, actual: Any, holds: bool) -> None:
    condition = Condition.model_validate({"attribute": "a", "op": op, "value": value})
    attributes = {} if actual is ... else {"a": actual}
    assert condition_holds(condition, attributes) is holds


def test_attributes_flatten_the_features_and_name_the_ids() -> None:
    context = Context(
        user_id="alice", session_id="s1", features={"device": "mobile", "geo": {"region": "eu"}}
    )
    assert attributes_of(context, "consultant") == {
        "device": "mobile",
        "geo.region": "eu",
        "persona": "consultant",
        "user_id": "alice",
        "session_id": "s1",
    }
    assert attributes_of(Context(), "unknown") == {"persona": "unknown"}
    assert bucketing_key_of("pseudo", "s1") == "user:pseudo"
    assert bucketing_key_of(None, "s1") == "session:s1"
    assert bucketing_key_of(None, None) is None


# Computed once and frozen: if these change, every running rollout reshuffles its users.
EXPECTED_BUCKETS = [
    ("checkout_layout", "user:alice", 93.832051),
    ("checkout_layout", "user:bob", 80.349867),
    ("checkout_layout", "session:s-1", 79.140151),
    ("checkout_layout", "user:carol", 8.853472),
    ("bulk_order_form", "user:alice", 94.289482),
    ("bulk_order_form", "user:bob", 28.529811),
    ("bulk_order_form", "session:s-2", 15.973179),
]


def test_buckets_are_a_fixed_function_of_flag_rule_and_key() -> None:
    for flag_key, key, expected in EXPECTED_BUCKETS:
        assert bucket(flag_key, 3, key) == pytest.approx(expected, abs=1e-6)


def test_buckets_are_the_same_in_a_fresh_process() -> None:
    code = (
        "from learnloop.flag_engine import bucket\n"
        f"for f, k, _ in {EXPECTED_BUCKETS!r}: print(repr(bucket(f, 3, k)))"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = [repr(bucket(f, 3, k)) for f, k, _ in EXPECTED_BUCKETS]
    assert fresh.stdout.split() == here


def test_the_same_key_gets_the_same_variant_on_every_call() -> None:
    flag = make_flag(
        rules=[
            {"rollout": [{"variant": "steps", "weight": 50}, {"variant": "compact", "weight": 50}]}
        ]
    )
    for n in range(200):
        key = f"user:{n}"
        first = evaluate(flag, {}, key)
        assert all(evaluate(flag, {}, key) == first for _ in range(3))


N_KEYS = 100_000


def test_a_20_80_split_lands_within_one_point() -> None:
    flag = make_flag(
        rules=[
            {"rollout": [{"variant": "steps", "weight": 20}, {"variant": "compact", "weight": 80}]}
        ]
    )
    steps = sum(evaluate(flag, {}, f"user:{n}").variant == "steps" for n in range(N_KEYS))
    assert abs(100 * steps / N_KEYS - 20) < 1


def test_a_partial_rollout_lets_the_rest_fall_through_in_proportion() -> None:
    flag = make_flag(rules=[{"rollout": [{"variant": "steps", "weight": 20}]}])
    reasons = [evaluate(flag, {}, f"session:{n}").reason for n in range(N_KEYS)]
    assert abs(100 * reasons.count("SPLIT") / N_KEYS - 20) < 1
    assert reasons.count("SPLIT") + reasons.count("DEFAULT") == N_KEYS


def test_flags_and_rules_bucket_independently() -> None:
    def in_first_half(flag_key: str, rule: int) -> list[bool]:
        return [bucket(flag_key, rule, f"user:{n}") < 50 for n in range(N_KEYS)]

    a = in_first_half("checkout_layout", 0)
    for other in (in_first_half("bulk_order_form", 0), in_first_half("checkout_layout", 1)):
        both = sum(x and y for x, y in zip(a, other, strict=True)) / N_KEYS
        # Independent halves overlap on a quarter of the keys; the same hash would on a half.
        assert abs(both - 0.25) < 0.01
