"""The persona model: the feature dict training and serving share, and our tree evaluator,
which must give CatBoost's own probabilities for every row, before and after a bytes
round trip; malformed bytes are refused by name."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from learnloop.errors import InvalidInput
from learnloop.persona_features import FEATURES, RECENCY_CAP_DAYS, profile_features
from learnloop.persona_model import FeatureEncoder, PersonaModel
from offline_learner.personas.synthetic import planted_profiles
from schemas.profiles import UserProfile

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _fit(
    labels: list[str], rows: list[dict[str, Any]], depth: int = 4
) -> tuple[Any, FeatureEncoder]:
    from catboost import CatBoostClassifier

    numeric = [n for n in rows[0] if isinstance(rows[0][n], float)]
    categorical = [n for n in rows[0] if isinstance(rows[0][n], str)]
    encoder = FeatureEncoder.fit(rows, numeric, categorical)
    model = CatBoostClassifier(
        iterations=60,
        depth=depth,
        random_seed=3,
        verbose=0,
        thread_count=1,
        allow_writing_files=False,
    )
    model.fit(encoder.encode_many(rows), labels)
    return model, encoder


@pytest.fixture(scope="module")
def data() -> tuple[list[dict[str, Any]], list[str]]:
    profiles, truth = planted_profiles(600, seed=11, now=NOW)
    devices = ["mobile", "desktop"]
    rows = [
        profile_features(p, {"device": devices[i % 2], "page": {"kind": "home"}}, NOW)
        for i, p in enumerate(profiles)
    ]
    return rows, truth


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (None, {"frequency": 0.0, "recency_days": RECENCY_CAP_DAYS, "top_category": "none"}),
        (
            UserProfile(user_id="u", orders=0, sessions=3),
            {"avg_order_value": 0.0, "others_share": 0.0, "sessions": 3.0},
        ),
        (
            UserProfile(
                user_id="u",
                orders=2,
                monetary=50.0,
                items=6,
                orders_for_others=1,
                last_order_at=NOW - timedelta(days=2),
                categories={"a": 1, "b": 1},
            ),
            {
                "avg_order_value": 25.0,
                "avg_basket_size": 3.0,
                "others_share": 0.5,
                "recency_days": 2.0,
                "top_category": "a",
                "n_categories": 2.0,
            },
        ),
        (
            UserProfile(user_id="u", orders=1, last_order_at=NOW - timedelta(days=900)),
            {"recency_days": RECENCY_CAP_DAYS},
        ),
    ],
)
def test_profile_features_table(profile: UserProfile | None, expected: dict[str, Any]) -> None:
    features = profile_features(profile, {"device": "mobile"}, NOW)
    assert list(features)[: len(FEATURES)] == list(FEATURES)
    assert features["ctx.device"] == "mobile"
    assert {k: features[k] for k in expected} == expected


def test_context_is_flattened_and_typed() -> None:
    features = profile_features(None, {"n": 3, "ok": False, "geo": {"region": "eu"}}, NOW)
    assert (features["ctx.n"], features["ctx.ok"], features["ctx.geo.region"]) == (
        3.0,
        "false",
        "eu",
    )


@pytest.mark.parametrize("binary", [False, True])
def test_our_trees_give_catboosts_probabilities(
    data: tuple[list[dict[str, Any]], list[str]], binary: bool
) -> None:
    rows, truth = data
    labels = [("buyer" if t != "visitor" else "visitor") for t in truth] if binary else truth
    model, encoder = _fit(labels, rows, depth=5)
    ours = PersonaModel.from_bytes(PersonaModel.from_catboost(model, encoder).to_bytes(), version=7)
    expected = model.predict_proba(encoder.encode_many(rows))
    got = np.array([[ours.predict_proba(r)[c] for c in ours.classes] for r in rows])
    assert list(ours.classes) == [str(c) for c in model.classes_]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert ours.predict_many(rows) == [
        str(p) for p in np.ravel(model.predict(encoder.encode_many(rows)))
    ]
    assert ours.version == 7
    assert ours.context_features == ("device", "page.kind")


def test_round_trip_is_deterministic_and_rebuilds_catboost(
    data: tuple[list[dict[str, Any]], list[str]],
) -> None:
    rows, truth = data
    model, encoder = _fit(truth, rows)
    persona_model = PersonaModel.from_catboost(model, encoder)
    blob = persona_model.to_bytes()
    again = PersonaModel.from_bytes(blob)
    assert again.to_bytes() == blob
    rebuilt = again.to_catboost()
    np.testing.assert_allclose(
        rebuilt.predict_proba(encoder.encode_many(rows[:50])),
        model.predict_proba(encoder.encode_many(rows[:50])),
    )


def test_unseen_and_missing_values_still_score(
    data: tuple[list[dict[str, Any]], list[str]],
) -> None:
    rows, truth = data
    model, encoder = _fit(truth, rows)
    persona_model = PersonaModel.from_catboost(model, encoder)
    odd = dict(rows[0], top_category="never-seen")
    del odd["ctx.device"]
    assert persona_model.predict(odd) in persona_model.classes
    assert abs(sum(persona_model.predict_proba({}).values()) - 1.0) < 1e-9


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"not json", "not a persona model"),
        (json.dumps({"format": "other"}).encode(), "format"),
        (
            gzip.compress(
                json.dumps(
                    {"format": "learnloop.persona_model", "format_version": 99, "kind": "catboost"}
                ).encode()
            ),
            "not supported",
        ),
        (
            json.dumps(
                {
                    "format": "learnloop.persona_model",
                    "format_version": 1,
                    "kind": "catboost",
                    "classes": ["a", "b"],
                }
            ).encode(),
            "malformed",
        ),
    ],
)
def test_bad_bytes_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        PersonaModel.from_bytes(blob)
