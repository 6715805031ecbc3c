"""Personalizer features (lists of nested JSON objects) onto learnloop's namespaces."""

from __future__ import annotations

from typing import Any

import pytest

from app.personalizer.features import FeatureError, action_features, context_features
from learnloop import featurizer
from learnloop.errors import InvalidInput
from schemas.features import Action, Context


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (None, {}),
        ([], {}),
        ([{"timeOfDay": "Morning"}], {"timeOfDay": "Morning"}),
        ([{"user": {"tier": "gold", "age": 30}}], {"user": {"tier": "gold", "age": 30.0}}),
        (
            [{"user": {"loc": {"lat": 47.6, "lon": -122.1}}}],
            {"user": {"loc.lat": 47.6, "loc.lon": -122.1}},
        ),
        ([{"user": {"a": {"b": {"c": True}}}}], {"user": {"a.b.c": True}}),
        ([{"tags": ["a", "b"]}], {"tags": {"a": True, "b": True}}),
        ([{"emb": [0.5, 0.25]}], {"emb": {"0": 0.5, "1": 0.25}}),
        ([{"u": {"tags": ["x", "", None]}}], {"u": {"tags.x": True}}),
        ([{"u": {"h": [{"k": 1}, {"k": 2}]}}], {"u": {"h.0.k": 1.0, "h.1.k": 2.0}}),
        ([{"u": {"m": [[1, 2], [3]]}}], {"u": {"m.0.0": 1.0, "m.0.1": 2.0, "m.1.0": 3.0}}),
        ([{"u": {"flags": [True, False]}}], {"u": {"flags.0": True, "flags.1": False}}),
        ([{"u": {"gone": None}, "v": None}], {}),
        ([{"u": {"a": 1}}, {"u": {"b": 2}}], {"u": {"a": 1.0, "b": 2.0}}),  # merged in order
        ([{"u": {"a": 1}}, {"u": {"a": 2}}], {"u": {"a": 2.0}}),  # the last one wins
        (["loose", 3, None, ["p"]], {"_": {"loose": True, "1": 3.0, "3.p": True}}),
        ([{"big": 10**20}], {"big": 1e20}),
    ],
)
def test_context_features_map_onto_one_level_of_namespaces(
    items: list[Any] | None, expected: dict[str, Any]
) -> None:
    features = context_features(items)
    assert features == expected
    Context(features=features)  # learnloop's own contract takes it as it is


def test_the_spec_example_featurizes_with_the_namespaces_in_the_names() -> None:
    features = context_features(
        [
            {"user": {"profileType": "AnonymousUser", "latLong": "47.6,-122.1"}},
            {"environment": {"dayOfMonth": "28", "weather": "Sunny"}},
            {"device": {"mobile": True, "windows": True}},
            {"recentActivity": {"itemsInCart": 3}},
        ]
    )
    line = featurizer.shared_line(Context(features=features), "visitor")
    assert line == (
        "shared |c user.profileType=AnonymousUser user.latLong=47.6,-122.1 "
        "environment.dayOfMonth=28 environment.weather=Sunny device.mobile=true "
        "device.windows=true recentActivity.itemsInCart:3.0 |u persona=visitor"
    )


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (None, {}),
        ([{"type": "News"}], {"type": "News"}),
        ([{"type": "News"}, {"len": 3}], {"type": "News", "len": 3.0}),
        ([{"info": {"cat": "x", "new": True}}], {"info.cat": "x", "info.new": True}),
        ([{"tags": ["hot", "new"]}], {"tags.hot": True, "tags.new": True}),
        ([{"parts": [{"w": 1}, {"w": 2}]}], {"parts.0.w": 1.0, "parts.1.w": 2.0}),
        (["flag", 7, None], {"_.flag": True, "_.1": 7.0}),
        ([{"x": None}], {}),
    ],
)
def test_action_features_are_flat(items: list[Any] | None, expected: dict[str, Any]) -> None:
    features = action_features(items)
    assert features == expected
    Action(id="a", features=features)


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([{"u": {"x": float("nan")}}], "contextFeatures[0].u.x: numbers must be finite"),
        ([{"u": {"x": float("inf")}}], "numbers must be finite"),
        ([{"u": {"x": 10**400}}], "numbers must be finite"),
        ([{"u": {"k" * 129: 1}}], "learnloop allows 128"),
        ([{"u": {"k" * 100: {"j" * 40: 1}}}], "learnloop allows 128"),
        ([{"n" * 129: 1}], "learnloop allows 128"),
        ([{"u": {"tags": ["t" * 200]}}], "learnloop allows 128"),
        ([{"u": {"s": "x" * 1025}}], "at most 1024 characters"),
        ([{"u": {"": 1}}], "feature names must be non-empty"),
        ([{"": {"a": 1}}], "namespace names must be non-empty"),
        ([{"u": "scalar"}, {"u": {"a": 1}}], "'u' is a single value in another item"),
        ([{"u": {"a": 1}}, {"u": "scalar"}], "'u' is a namespace (an object) in another item"),
        ({"u": {"a": 1}}, "features are a list of JSON objects"),
    ],
)
def test_features_learnloop_cannot_take_are_refused_saying_where(items: Any, fragment: str) -> None:
    with pytest.raises(FeatureError) as caught:
        context_features(items)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, InvalidInput)


def test_deep_nesting_is_refused() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(FeatureError, match="nest more than 16 levels"):
        context_features([{"u": deep}])


def test_action_errors_name_the_action() -> None:
    with pytest.raises(FeatureError, match=r"actions\[2\]\.features\[0\]\.x: numbers must be"):
        action_features([{"x": float("nan")}], "actions[2].features")
