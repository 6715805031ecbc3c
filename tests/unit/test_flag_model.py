"""Flag definitions: every bad definition is refused with a message naming what is
wrong, and a good one yields the automatic decision point ``flag.<key>``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from learnloop.errors import InvalidInput
from learnloop.flag_engine import change_diff, validate
from schemas.flags import Flag, FlagChange, FlagDefinition, decision_point_name


def definition(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "string",
        "variants": {"one_page": "1p", "steps": "3s", "compact": "c"},
        "default_variant": "one_page",
    }
    base.update(overrides)
    return base


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("default outside variants", definition(default_variant="wizard"), "default_variant 'wizard'"),
    ("no variants", definition(variants={}, default_variant="x"), "variants"),
    (
        "unknown variant in a fixed rule",
        definition(rules=[{"name": "owners", "variant": "wizard"}]),
        "rules[0] ('owners'): unknown variant 'wizard'",
    ),
    (
        "unknown variant in a rollout",
        definition(rules=[{"variant": "steps"}, {"rollout": [{"variant": "wiz", "weight": 5}]}]),
        "rules[1]: unknown variant 'wiz'",
    ),
    (
        "unknown variant in a personalized rule",
        definition(rules=[{"personalized": ["steps", "nope"]}]),
        "rules[0]: unknown variant 'nope'",
    ),
    ("empty personalized", definition(rules=[{"personalized": []}]), "personalized: list at least"),
    (
        "duplicate personalized",
        definition(rules=[{"personalized": ["steps", "steps"]}]),
        "only once",
    ),
    (
        "rollout over 100 %",
        definition(
            rules=[
                {
                    "rollout": [
                        {"variant": "steps", "weight": 60},
                        {"variant": "compact", "weight": 50},
                    ]
                }
            ]
        ),
        "sum to 110 %, more than 100 %",
    ),
    (
        "negative weight",
        definition(rules=[{"rollout": [{"variant": "steps", "weight": -1}]}]),
        "rules.0.rollout.0.weight",
    ),
    (
        "weight over 100",
        definition(rules=[{"rollout": [{"variant": "steps", "weight": 101}]}]),
        "rules.0.rollout.0.weight",
    ),
    ("empty rollout", definition(rules=[{"rollout": []}]), "rollout: give at least one"),
    (
        "two outcomes",
        definition(rules=[{"variant": "steps", "personalized": ["a"]}]),
        "exactly one",
    ),
    ("no outcome", definition(rules=[{"personas": ["x"]}]), "exactly one outcome"),
    ("empty personas", definition(rules=[{"personas": [], "variant": "steps"}]), "personas"),
    (
        "bad variant name",
        definition(variants={"one page": "1p"}, default_variant="one page"),
        "variant name 'one page' is not allowed",
    ),
    (
        "bad variant name with a colon",
        definition(variants={"flag:a": "1p"}, default_variant="flag:a"),
        "variant name 'flag:a'",
    ),
    ("holdout of 1", definition(holdout_share=1.0), "holdout_share"),
    ("negative holdout", definition(holdout_share=-0.1), "holdout_share"),
    (
        "string flag with a number",
        definition(variants={"a": 1}, default_variant="a"),
        "variant 'a': a string flag needs a string, got 1",
    ),
    (
        "boolean flag with a string",
        definition(type="boolean", variants={"on": "true"}, default_variant="on"),
        "a boolean flag needs a boolean",
    ),
    (
        "number flag with a boolean",
        definition(type="number", variants={"on": True}, default_variant="on"),
        "a number flag needs a number, got True",
    ),
    (
        "object flag with a list",
        definition(type="object", variants={"a": [1, 2]}, default_variant="a"),
        "an object flag needs a JSON object",
    ),
    ("unknown type", definition(type="json"), "type"),
    (
        "in with a scalar",
        definition(
            rules=[
                {"conditions": [{"attribute": "d", "op": "in", "value": "x"}], "variant": "steps"}
            ]
        ),
        "condition on 'd' (in): the value must be a non-empty list",
    ),
    (
        "eq with a list",
        definition(
            rules=[
                {"conditions": [{"attribute": "d", "op": "eq", "value": ["x"]}], "variant": "steps"}
            ]
        ),
        "must be one value, not a list",
    ),
    (
        "lt with a string",
        definition(
            rules=[
                {"conditions": [{"attribute": "n", "op": "lt", "value": "5"}], "variant": "steps"}
            ]
        ),
        "condition on 'n' (lt): the value must be a number",
    ),
    (
        "unknown operator",
        definition(
            rules=[
                {"conditions": [{"attribute": "n", "op": "like", "value": "5"}], "variant": "steps"}
            ]
        ),
        "op",
    ),
    ("bad window", definition(window_seconds=0), "window_seconds: Input should be greater than 0"),
    ("vw_args without ADF", definition(vw_args="--cb 3"), "vw_args"),
    ("unknown field", definition(colour="red"), "colour"),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_definitions_are_refused_with_a_message_naming_the_problem(
    case: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate(body)
    assert message in str(refused.value), (case, str(refused.value))
    with pytest.raises(ValidationError):
        FlagDefinition.model_validate(body)


GOOD: list[dict[str, Any]] = [
    definition(),
    definition(type="boolean", variants={"on": True, "off": False}, default_variant="off"),
    definition(type="number", variants={"low": 1, "high": 2.5}, default_variant="low"),
    definition(type="object", variants={"a": {"cols": 2}, "b": {}}, default_variant="a"),
    definition(
        rules=[
            {"personas": ["shop_owner"], "variant": "steps"},
            {"personas": ["consultant"], "personalized": ["steps", "compact"]},
            {"personas": ["direct"], "rollout": [{"variant": "compact", "weight": 20}]},
            {
                "rollout": [
                    {"variant": "steps", "weight": 33.3},
                    {"variant": "compact", "weight": 66.7},
                ]
            },
        ],
        holdout_share=0.1,
        reward_map={"purchase": 5.0},
        window_seconds=60,
    ),
]


@pytest.mark.parametrize("body", GOOD)
def test_good_definitions_pass(body: dict[str, Any]) -> None:
    assert validate(body) == FlagDefinition.model_validate(body)


def test_the_automatic_decision_point_serves_the_variants_with_the_default_first() -> None:
    body = definition(
        default_variant="steps",
        holdout_share=0.25,
        reward_map={"purchase": 5.0},
        window_seconds=60,
        rules=[{"personalized": ["compact", "steps"]}],
    )
    flag = Flag(
        key="checkout_layout",
        version=1,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_by="admin",
        **body,
    )
    point = flag.decision_point()
    assert point.name == decision_point_name("checkout_layout") == "flag.checkout_layout"
    assert [a.id for a in point.actions] == ["steps", "one_page", "compact"]
    assert point.baseline_share == 0.25
    assert point.reward_map == {"purchase": 5.0}
    assert point.window_seconds == 60
    assert point.aggregation == "max"  # the decision point default
    assert flag.is_personalized()
    assert flag.definition() == FlagDefinition.model_validate(body)


def test_flag_keys_leave_room_for_the_decision_point_prefix() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    Flag(key="k" * 123, version=1, updated_at=now, updated_by="a", **definition())
    for key in ("k" * 124, "flag:a", ""):
        with pytest.raises(ValidationError):
            Flag(key=key, version=1, updated_at=now, updated_by="a", **definition())


def test_change_diff_names_each_changed_leaf_and_a_create_lists_each_field() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    before = Flag(
        key="f",
        version=1,
        updated_at=now,
        updated_by="a",
        **definition(rules=[{"variant": "steps"}]),
    )
    after = before.model_copy(
        update={
            "enabled": False,
            "version": 2,
            "rules": [before.rules[0].model_copy(update={"variant": "compact"})],
        }
    )
    diff = change_diff(before.model_dump(mode="json"), after.model_dump(mode="json"))
    assert {"path": "enabled", "before": True, "after": False} in diff
    assert {"path": "rules/0/variant", "before": "steps", "after": "compact"} in diff
    assert {"path": "version", "before": 1, "after": 2} in diff
    assert len(diff) == 3
    created = change_diff(None, before.model_dump(mode="json"))
    fields = before.model_dump()
    assert {c["path"] for c in created} == {name for name in fields if fields[name] is not None}
    assert all(c["before"] is None for c in created)
    change = FlagChange(
        key="f", version=2, timestamp=now, by="a", action="disable", diff=diff, flag=after
    )
    assert FlagChange.model_validate_json(change.model_dump_json()) == change


@pytest.mark.parametrize("body", GOOD)
def test_a_stored_flag_survives_its_json(body: dict[str, Any]) -> None:
    flag = Flag(
        key="f", version=2, updated_at=datetime(2026, 1, 1, tzinfo=UTC), updated_by="a", **body
    )
    assert Flag.model_validate_json(flag.model_dump_json()) == flag
    assert validate(flag.definition()) == flag.definition()
