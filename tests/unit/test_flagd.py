"""flagd import/export: a round trip keeps every evaluation, hand-written flagd reads
as expected, and what does not map is refused (import) or kept in metadata (export)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from learnloop.errors import InvalidInput
from learnloop.flag_engine import evaluate
from learnloop.flagd import SCHEMA_URL, from_flagd, to_flagd
from schemas.features import Scalar
from schemas.flags import Flag, FlagDefinition

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VARIANTS = {"one_page": "1p", "steps": "3s", "compact": "c"}


def stored(key: str, **fields: Any) -> Flag:
    body: dict[str, Any] = {"type": "string", "variants": VARIANTS, "default_variant": "one_page"}
    body.update(fields)
    return Flag(key=key, version=3, updated_at=NOW, updated_by="team", **body)


FLAGS = [
    stored("static_banner"),
    stored(
        "checkout_layout",
        description="Which checkout the shop shows",
        holdout_share=0.1,
        reward_map={"purchase": 5.0, "basket_add": 1.0},
        window_seconds=120,
        aggregation="sum",
        rules=[
            {"name": "owners", "personas": ["shop_owner"], "variant": "steps"},
            {"personas": ["consultant"], "personalized": ["compact", "one_page"]},
            {
                "name": "direct 20 %",
                "personas": ["direct"],
                "rollout": [{"variant": "compact", "weight": 20}],
            },
            {
                "conditions": [
                    {"attribute": "device", "op": "eq", "value": "mobile"},
                    {"attribute": "cart_total", "op": "gte", "value": 50},
                ],
                "rollout": [
                    {"variant": "steps", "weight": 33.3},
                    {"variant": "compact", "weight": 66.7},
                ],
            },
            {
                "conditions": [{"attribute": "geo.region", "op": "not_in", "value": ["eu"]}],
                "variant": "steps",
            },
            {
                "conditions": [{"attribute": "user_id", "op": "in", "value": ["tester"]}],
                "variant": "compact",
            },
            {
                "conditions": [{"attribute": "cart_total", "op": "lt", "value": 5}],
                "variant": "compact",
            },
            {"conditions": [{"attribute": "vip", "op": "neq", "value": True}], "variant": "steps"},
        ],
    ),
    stored(
        "bulk_order_form",
        type="boolean",
        variants={"on": True, "off": False},
        default_variant="off",
        enabled=False,
        rules=[{"personas": ["shop_owner"], "variant": "on"}],
    ),
]

EXTRAS: list[dict[str, Scalar]] = [
    {},
    {"device": "mobile", "cart_total": 60},
    {"device": "mobile", "cart_total": 40, "geo.region": "eu"},
    {"geo.region": "eu", "vip": True},
    {"geo.region": "eu", "vip": False, "cart_total": 1},
    {"geo.region": "eu", "vip": True, "user_id": "tester"},
]
GRID: list[dict[str, Scalar]] = [
    {"persona": persona, **extra}
    for persona, extra in itertools.product(
        ["shop_owner", "consultant", "direct", "unknown"], EXTRAS
    )
]
KEYS = [None, *(f"user:{n}" for n in range(40))]


def reimported(flags: list[Flag]) -> dict[str, Flag]:
    document = json.loads(json.dumps(to_flagd(flags)))  # through real JSON text
    definitions = from_flagd(document)
    return {
        key: Flag(key=key, version=3, updated_at=NOW, updated_by="team", **d.model_dump())
        for key, d in definitions.items()
    }


def test_a_round_trip_keeps_every_definition_and_every_evaluation() -> None:
    back = reimported(FLAGS)
    assert list(back) == [flag.key for flag in FLAGS]
    reached: set[tuple[str, int | None]] = set()
    for flag in FLAGS:
        assert back[flag.key] == flag
        for attributes, key in itertools.product(GRID, KEYS):
            resolution = evaluate(flag, attributes, key)
            assert evaluate(back[flag.key], attributes, key) == resolution
            reached.add((resolution.reason, resolution.rule_index))
    # The grid reaches every reason and every rule of checkout_layout.
    assert {reason for reason, _ in reached} == {
        "STATIC",
        "TARGETING_MATCH",
        "SPLIT",
        "PERSONALIZED",
        "DEFAULT",
        "DISABLED",
    }
    assert {index for _, index in reached} == {None, *range(len(FLAGS[1].rules))}


def test_the_export_is_flagd_shaped() -> None:
    document = to_flagd(FLAGS)
    assert document["$schema"] == SCHEMA_URL
    static = document["flags"]["static_banner"]
    assert static == {"state": "ENABLED", "variants": VARIANTS, "defaultVariant": "one_page"}
    assert document["flags"]["bulk_order_form"]["state"] == "DISABLED"
    layout = document["flags"]["checkout_layout"]
    chain = layout["targeting"]["if"]
    assert chain[0:2] == [{"in": [{"var": "persona"}, ["shop_owner"]]}, "steps"]
    # flagd cannot personalize: the segment gets the fallback (the default here).
    assert chain[3] == "one_page"
    # A partial rollout: flagd's weights are relative, so the remainder is spelled out.
    assert chain[5] == {"fractional": [["compact", 20], ["one_page", 80]]}
    assert chain[6] == {
        "and": [{"===": [{"var": "device"}, "mobile"]}, {">=": [{"var": "cart_total"}, 50]}]
    }
    assert chain[8] == {"!": {"in": [{"var": "geo.region"}, ["eu"]]}}
    assert chain[10] == {"in": [{"var": "targetingKey"}, ["tester"]]}
    metadata = layout["metadata"]
    assert metadata["description"] == "Which checkout the shop shows"
    assert metadata["learnloop.rules.1.personalized"] == "compact,one_page"
    assert metadata["learnloop.rules.2.remainder"] == "falls_through"
    assert metadata["learnloop.holdout_share"] == 0.1
    # flagd metadata values are primitives.
    assert all(isinstance(v, str | int | float | bool) for v in metadata.values())


def test_hand_written_flagd_reads_as_expected() -> None:
    document = {
        "$schema": SCHEMA_URL,
        "$evaluators": {"mobile": {"==": [{"var": "device"}, "mobile"]}},
        "flags": {
            "header_color": {
                "state": "ENABLED",
                "variants": {"red": "#f00", "blue": "#00f", "green": "#0f0"},
                "defaultVariant": "red",
                "targeting": {
                    "if": [
                        {"$ref": "mobile"},
                        {"fractional": [{"var": "targetingKey"}, ["blue", 1], ["green", 3]]},
                        {"if": [{"<": [10, {"var": "age"}]}, "green", None]},
                    ]
                },
                "metadata": {"team": "web"},
            },
            "max_items": {
                "state": "ENABLED",
                "variants": {"few": 5, "many": 50},
                "defaultVariant": "few",
                "targeting": "many",
            },
            "theme": {"state": "ENABLED", "variants": {"a": {"dark": True}}, "defaultVariant": "a"},
        },
    }
    flags = from_flagd(document)
    header = flags["header_color"]
    assert header.type == "string"
    assert [r.model_dump(exclude_defaults=True) for r in header.rules] == [
        {
            "conditions": [{"attribute": "device", "op": "eq", "value": "mobile"}],
            "rollout": [{"variant": "blue", "weight": 25.0}, {"variant": "green", "weight": 75.0}],
        },
        # 10 < age reads as age > 10.
        {"conditions": [{"attribute": "age", "op": "gt", "value": 10}], "variant": "green"},
    ]
    assert flags["max_items"].type == "number"
    assert flags["max_items"].rules[0].variant == "many"
    assert flags["max_items"].rules[0].conditions == []
    assert flags["theme"] == FlagDefinition(
        type="object", variants={"a": {"dark": True}}, default_variant="a"
    )


def flag_with(targeting: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "state": "ENABLED",
        "variants": {"a": "A", "b": "B"},
        "defaultVariant": "a",
        "targeting": targeting,
    }
    body.update(extra)
    return {"flags": {"f": body}}


def same_as_a(test: Any) -> dict[str, Any]:
    return flag_with({"if": [test, "b"]})


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "or",
        same_as_a({"or": [{"==": [{"var": "x"}, 1]}, {"==": [{"var": "y"}, 1]}]}),
        "'or' is not supported",
    ),
    (
        "sem_ver",
        same_as_a({"sem_ver": [{"var": "version"}, ">=", "1.2.0"]}),
        "'sem_ver' is not supported",
    ),
    (
        "starts_with",
        same_as_a({"starts_with": [{"var": "email"}, "admin"]}),
        "'starts_with' is not supported",
    ),
    (
        "ends_with",
        same_as_a({"ends_with": [{"var": "email"}, "@shop.com"]}),
        "'ends_with' is not supported",
    ),
    (
        "substring in",
        same_as_a({"in": [{"var": "email"}, "@shop.com"]}),
        "substring 'in' is not supported",
    ),
    (
        "flagd variables",
        same_as_a({">": [{"var": "$flagd.timestamp"}, 1]}),
        "'$flagd.timestamp' is not supported",
    ),
    ("var defaults", same_as_a({"==": [{"var": ["x", "dflt"]}, 1]}), "defaults are not supported"),
    ("between", same_as_a({"<": [1, {"var": "x"}, 10]}), "exactly two arguments"),
    ("other operators", same_as_a({"%": [{"var": "x"}, 2]}), "'%' is not supported"),
    (
        "custom bucketing",
        flag_with(
            {
                "fractional": [
                    {"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]},
                    ["a", 50],
                    ["b", 50],
                ]
            }
        ),
        "learnloop buckets by the user",
    ),
    ("unknown variant", flag_with("c"), "unknown variant 'c'"),
    ("computed result", flag_with({"cat": ["a", ""]}), "must be a variant name or a fractional"),
    (
        "mixed variant types",
        {
            "flags": {
                "f": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}, "defaultVariant": "a"}
            }
        },
        "mix value types",
    ),
    (
        "no default",
        {"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": None}}},
        "defaultVariant",
    ),
    (
        "bad state",
        {"flags": {"f": {"state": "ON", "variants": {"a": 1}, "defaultVariant": "a"}}},
        "state must be",
    ),
    (
        "bad key",
        {"flags": {"flag:x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}},
        "key is not allowed",
    ),
    ("unknown ref", flag_with({"$ref": "nope"}), "names no entry of $evaluators"),
    ("not a document", {"flagz": {}}, "'flags' object"),
]


@pytest.mark.parametrize(("case", "document", "message"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_what_learnloop_cannot_represent_is_refused_by_name(
    case: str, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        from_flagd(document)
    assert message in str(refused.value), (case, str(refused.value))


def test_an_import_names_every_bad_flag_and_returns_nothing() -> None:
    document = {
        "flags": {
            "good": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
            "bad_one": flag_with({"if": [{"or": []}, "b"]})["flags"]["f"],
            "bad_two": flag_with("zz")["flags"]["f"],
        }
    }
    with pytest.raises(InvalidInput) as refused:
        from_flagd(document)
    assert "flag 'bad_one'" in str(refused.value) and "flag 'bad_two'" in str(refused.value)
    assert "'good'" not in str(refused.value)
