"""Segmentation: KMeans and the Gaussian mixture recover planted persona groups (adjusted
Rand index above a floor), pick the planted k by silhouette or BIC, label new profiles
with the same segments through the saved model, and the segments file round-trips with
its names; unnamed or malformed files are refused with what to do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from learnloop.errors import InvalidInput
from learnloop.persona_features import profile_features
from offline_learner.personas.segment import assign, fit_segments, segmentation_payload
from offline_learner.personas.segments_file import (
    name_by_majority,
    read_segments,
    rename_segments,
    segment_names,
    write_segments,
)
from offline_learner.personas.synthetic import planted_profiles

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def planted() -> tuple[list[dict[str, Any]], list[str], list[str]]:
    profiles, truth = planted_profiles(750, seed=5, now=NOW)
    return [profile_features(p, {}, NOW) for p in profiles], truth, [p.user_id for p in profiles]


@pytest.mark.parametrize(("method", "criterion"), [("kmeans", "silhouette"), ("gmm", "bic")])
def test_recovers_the_planted_groups_and_their_number(
    planted: tuple[list[dict[str, Any]], list[str], list[str]], method: str, criterion: str
) -> None:
    rows, truth, _ = planted
    segmentation = fit_segments(rows, method=method, k_range=(3, 7), seed=2)  # type: ignore[arg-type]
    assert segmentation.criterion == criterion
    assert sorted(segmentation.scores) == [3, 4, 5, 6, 7]
    assert len(segmentation.model.centers) == 5  # the planted k
    assert adjusted_rand_score(truth, segmentation.labels) > 0.9


def test_the_saved_model_labels_new_profiles_like_the_fit(
    planted: tuple[list[dict[str, Any]], list[str], list[str]],
) -> None:
    rows, _, _ = planted
    for method in ("kmeans", "gmm"):
        segmentation = fit_segments(rows, method=method, k=5, seed=2)
        again = type(segmentation.model).model_validate_json(segmentation.model.model_dump_json())
        # scikit-learn's labels, reproduced from the saved numbers alone
        np.testing.assert_array_equal(assign(again, rows), segmentation.labels)
    fresh, truth = planted_profiles(200, seed=99, now=NOW)
    fresh_rows = [profile_features(p, {}, NOW) for p in fresh]
    segmentation = fit_segments(rows, k=5, seed=2)
    assert adjusted_rand_score(truth, assign(segmentation.model, fresh_rows)) > 0.9


def test_payload_describes_each_segment(
    planted: tuple[list[dict[str, Any]], list[str], list[str]],
) -> None:
    rows, truth, ids = planted
    segmentation = fit_segments(rows, k=5, seed=2)
    payload = segmentation_payload(segmentation, rows, ids, source="test", now=NOW)
    assert payload["kind"] == "segmentation"
    assert sum(s["size"] for s in payload["segments"]) == len(rows)
    by_truth = {}
    for segment in payload["segments"]:
        members = [truth[ids.index(u)] for u in segment["examples"]]
        assert len(set(members)) == 1  # examples sit at the centre: one planted persona
        by_truth[members[0]] = segment
        assert len(segment["distinguishing"]) == 3
    # The builders' segment stands out by recruits, the consultants' by orders for others.
    assert "recruits" in by_truth["builder"]["distinguishing"]
    assert by_truth["builder"]["z"]["recruits"] > 1
    assert by_truth["consultant"]["z"]["others_share"] > 1
    assert by_truth["visitor"]["means"]["frequency"] == 0
    assert len(payload["scatter"]["points"]) == len(rows)


def test_segments_file_round_trip_and_names(
    planted: tuple[list[dict[str, Any]], list[str], list[str]], tmp_path: Path
) -> None:
    rows, _, ids = planted
    segmentation = fit_segments(rows, k=5, seed=2)
    payload = segmentation_payload(segmentation, rows, ids, source="test", now=NOW)
    path, model_path = write_segments(tmp_path / "segments.toml", segmentation.model, payload, NOW)
    assert model_path.name == "segments.model.json"
    segments, model, reference = read_segments(path)
    assert model == segmentation.model
    assert [s.size for s in segments.segments] == [s["size"] for s in payload["segments"]]
    with pytest.raises(InvalidInput, match=r"clusters \[0, 1, 2, 3, 4\] .* have no name"):
        segment_names(segments, path)
    rename_segments(path, {0: "a", 1: "b", 2: "b", 3: "c", 4: "d"})
    named, _, renamed = read_segments(path)
    assert segment_names(named, path) == {0: "a", 1: "b", 2: "b", 3: "c", 4: "d"}
    assert renamed.digest != reference.digest  # the names are part of what trained a model
    path.write_text(path.read_text().replace('name = "a"', 'name = "not a name!"'))
    with pytest.raises(InvalidInput, match=r"segments\.0\.name"):
        read_segments(path)


def test_clusters_are_named_after_the_label_most_members_carry(
    planted: tuple[list[dict[str, Any]], list[str], list[str]], tmp_path: Path
) -> None:
    """A shop that knows a third of its people names the segments from them."""
    rows, truth, ids = planted
    segmentation = fit_segments(rows, k=5, seed=2)
    payload = segmentation_payload(segmentation, rows, ids, source="test", now=NOW)
    path, _ = write_segments(tmp_path / "segments.toml", segmentation.model, payload, NOW)
    known = [label if i % 3 == 0 else None for i, label in enumerate(truth)]
    names = name_by_majority(path, rows, known)
    assert sorted(names.values()) == sorted(set(truth))  # each planted group got its name
    segments, _, _ = read_segments(path)
    named = segment_names(segments, path)
    assert sum(
        named[int(c)] == t for c, t in zip(segmentation.labels, truth, strict=True)
    ) > 0.95 * len(truth)
    with pytest.raises(InvalidInput, match="align"):
        name_by_majority(path, rows, known[:-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 1}, "k range"),
        ({"k_range": (5, 3)}, "k range"),
        ({"k": 200}, "too few"),
    ],
)
def test_bad_requests_are_refused(
    planted: tuple[list[dict[str, Any]], list[str], list[str]], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        fit_segments(planted[0], **kwargs)


def test_missing_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="run learnloop personas segment"):
        read_segments(tmp_path / "nothing.toml")
