"""CatBoost persona training on the simulator's profile history: held-out macro-F1 above
a seeded floor (against the segments, and against the simulator's hidden truth when the
segments are named by a reader of the report); retrain publishes when the new model
holds up against the current one on the same held-out users and refuses (saying both
numbers) when it is worse by more than the margin."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.simulator.history import shop_history
from devtools.simulator.shop import Shop
from learnloop.errors import InvalidInput
from learnloop.persona_features import profile_features
from learnloop.persona_model import PersonaModel
from learnloop.persona_models import MemoryPersonaModelStore
from offline_learner.personas.retrain import RetrainRefused, retrain
from offline_learner.personas.segment import fit_segments, segmentation_payload
from offline_learner.personas.segments_file import write_segments
from offline_learner.personas.train import TrainSettings, evaluate, fit_persona_model, split

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FAST = TrainSettings(iterations=80, depth=4, seed=3)


@pytest.fixture(scope="module")
def shop() -> tuple[list[dict[str, Any]], list[str], list[str]]:
    books = shop_history(Shop(seed=7, population=800), NOW)
    rows = [profile_features(b.profile(), {}, NOW) for b in books]
    return rows, [b.persona for b in books], [b.user_id for b in books]


@pytest.fixture(scope="module")
def segments(
    shop: tuple[list[dict[str, Any]], list[str], list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """Segments named the way a data scientist would after reading the report: each
    cluster after the persona most of its example profiles have."""
    rows, truth, ids = shop
    segmentation = fit_segments(rows, k=5, seed=1)
    payload = segmentation_payload(segmentation, rows, ids, source="sim", now=NOW)
    names = {
        s["cluster"]: Counter(
            truth[i] for i, c in enumerate(segmentation.labels) if c == s["cluster"]
        ).most_common(1)[0][0]
        for s in payload["segments"]
    }
    path, _ = write_segments(
        tmp_path_factory.mktemp("seg") / "segments.toml", segmentation.model, payload, NOW, names
    )
    return path


def test_macro_f1_on_held_out_simulated_users(
    shop: tuple[list[dict[str, Any]], list[str], list[str]], segments: Path
) -> None:
    from offline_learner.personas.segments_file import read_segments, segment_names
    from offline_learner.personas.train import label_rows

    rows, truth, _ = shop
    segment_file, model, reference = read_segments(segments)
    labels = label_rows(model, segment_names(segment_file), rows)
    trained = fit_persona_model(rows, labels, settings=FAST, now=NOW, segments=reference)
    payload = trained.payload
    assert payload["macro_f1"] > 0.9  # seeded floor against the segments it learns
    held_out = trained.test_index
    vs_truth = evaluate(trained.model, [rows[i] for i in held_out], [truth[i] for i in held_out])
    assert vs_truth["macro_f1"] > 0.85  # and against the simulator's hidden personas
    assert payload["test_size"] == len(held_out) == round(0.25 * len(rows))
    assert sum(map(sum, payload["confusion"]["matrix"])) == len(held_out)
    assert {c["persona"] for c in payload["per_class"]} == set(labels)
    release = trained.release
    assert release.version == 0 and release.source == "train"
    assert release.metrics["macro_f1"] == payload["macro_f1"]
    assert release.segments == reference
    # The served evaluator reproduces the evaluation from the published bytes.
    served = PersonaModel.from_bytes(trained.model.to_bytes())
    assert evaluate(served, [rows[i] for i in held_out], [labels[i] for i in held_out]) == {
        k: payload[k] for k in ("macro_f1", "accuracy", "per_class", "confusion")
    }


def test_the_split_is_stratified_and_refuses_tiny_personas() -> None:
    labels = ["a"] * 40 + ["b"] * 20 + ["c"] * 8
    train, test = split(labels, 0.25, seed=1)
    assert sorted(train + test) == list(range(len(labels)))
    assert Counter(labels[i] for i in test) == Counter({"a": 10, "b": 5, "c": 2})
    with pytest.raises(InvalidInput, match=r"personas \['d'\] have fewer than 4"):
        split([*labels, "d", "d"], 0.25, seed=1)
    with pytest.raises(InvalidInput, match="test share"):
        split(labels, 1.5, seed=1)


def test_retrain_publishes_then_refuses_a_worse_model(
    shop: tuple[list[dict[str, Any]], list[str], list[str]], segments: Path
) -> None:
    rows, _, _ = shop
    store = MemoryPersonaModelStore()

    async def scenario() -> None:
        first = await retrain(store, rows, segments, now=NOW, settings=FAST)
        assert first.release is not None and first.release.version == 1
        assert first.payload["gate"] == {
            "margin": 0.02,
            "new_macro_f1": first.payload["macro_f1"],
            "current_version": None,
            "passed": True,
        }
        again = await retrain(store, rows, segments, now=NOW, settings=FAST)
        assert again.release is not None and again.release.version == 2
        assert again.release.metrics["current_macro_f1"] == pytest.approx(
            again.payload["gate"]["current_macro_f1"]
        )
        stump = TrainSettings(iterations=1, depth=1, seed=3)  # can split off one persona at most
        with pytest.raises(
            RetrainRefused, match=r"macro-F1 0\.\d+ is below the current v2's"
        ) as refused:
            await retrain(store, rows, segments, now=NOW, settings=stump)
        gate = refused.value.payload["gate"]
        assert gate["passed"] is False
        assert gate["new_macro_f1"] < gate["current_macro_f1"] - 0.02
        assert (await store.current()).version == 2  # type: ignore[union-attr]
        accepted = await retrain(store, rows, segments, now=NOW, settings=stump, margin=1.0)
        assert accepted.release is not None and accepted.release.version == 3
        assert accepted.release.source == "retrain"

    asyncio.run(scenario())
