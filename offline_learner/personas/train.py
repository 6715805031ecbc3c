"""Training the persona classifier: CatBoost on the named segments, evaluated on held-out
users.

The profiles are labelled by the segment model (each cluster's name from the segments
file), split stratified by persona into a training and a held-out part, and CatBoost is
fitted (seeded, single-threaded by default so two runs give the same model) on the
training part's encoded features (:class:`~learnloop.persona_model.FeatureEncoder`).
The held-out part gives the macro-F1, each persona's precision and recall and the
confusion matrix, computed on :class:`~learnloop.persona_model.PersonaModel`, the very
evaluator the decision service serves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np

from learnloop.errors import InvalidInput
from learnloop.persona_features import (
    CATEGORICAL_FEATURES,
    CONTEXT_PREFIX,
    NUMERIC_FEATURES,
    FeatureValue,
)
from learnloop.persona_model import FeatureEncoder, PersonaModel
from offline_learner.personas.segment import assign
from schemas.events import utc_now_iso
from schemas.personas import (
    PersonaModelRelease,
    PersonaModelSource,
    SegmentModel,
    SegmentsReference,
)

Rows = Sequence[Mapping[str, FeatureValue]]

MIN_PER_PERSONA: Final = 4
"""Fewest profiles a persona needs: some to train on, at least one held out."""


@dataclass(frozen=True)
class TrainSettings:
    """CatBoost's knobs: modest, so a training takes seconds on a shop's profiles."""

    test_share: float = 0.25
    seed: int = 0
    iterations: int = 300
    depth: int = 6
    learning_rate: float | None = None
    threads: int = 1


@dataclass(frozen=True)
class TrainedPersonaModel:
    """A fitted model, the release to publish it with (version 0: the store assigns one),
    its evaluation payload (``persona_training``), and the held-out rows' indices."""

    model: PersonaModel
    release: PersonaModelRelease
    payload: dict[str, Any]
    test_index: list[int]


def label_rows(model: SegmentModel, names: Mapping[int, str], rows: Rows) -> list[str]:
    """Each row's persona: the name of its segment."""
    return [names[int(c)] for c in assign(model, rows)]


def split(labels: Sequence[str], test_share: float, seed: int) -> tuple[list[int], list[int]]:
    """A stratified split of row indices into (train, held out)."""
    if not 0.0 < test_share < 1.0:
        raise InvalidInput(f"test share {test_share}: give a fraction between 0 and 1 (e.g. 0.25)")
    counts = {c: labels.count(c) for c in set(labels)}
    few = sorted(c for c, n in counts.items() if n < MIN_PER_PERSONA)
    if few:
        raise InvalidInput(
            f"personas {few} have fewer than {MIN_PER_PERSONA} profiles: merge their segments "
            "into others (give them the same name) or import more profiles"
        )
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test = train_test_split(
        index, test_size=test_share, random_state=seed, stratify=list(labels)
    )
    return sorted(int(i) for i in train), sorted(int(i) for i in test)


def evaluate(model: PersonaModel, rows: Rows, labels: Sequence[str]) -> dict[str, Any]:
    """Macro-F1, accuracy, per-persona precision/recall/F1 and the confusion matrix of
    ``model`` on ``rows`` (personas the model does not know count as misses)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = model.predict_many(rows)
    classes = sorted(set(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    matrix = confusion_matrix(labels, predicted, labels=classes)
    per_class = [
        {
            "persona": c,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    ]
    correct = sum(1 for a, b in zip(labels, predicted, strict=True) if a == b)
    return {
        "macro_f1": float(np.mean(f1)) if len(classes) else 0.0,
        "accuracy": correct / len(labels) if labels else 0.0,
        "per_class": per_class,
        "confusion": {"labels": classes, "matrix": matrix.tolist()},
    }


def release_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation flattened into a release's ``metrics``."""
    metrics = {"macro_f1": float(evaluation["macro_f1"]), "accuracy": float(evaluation["accuracy"])}
    for row in evaluation["per_class"]:
        for key in ("precision", "recall", "f1"):
            metrics[f"{key}.{row['persona']}"] = float(row[key])
    return metrics


def _latency_us(model: PersonaModel, rows: Rows, n: int = 500) -> float:
    """Median single-row predict time over (a cycle of) ``rows``, in microseconds."""
    samples = []
    for i in range(n):
        row = rows[i % len(rows)]
        start = time.perf_counter_ns()
        model.predict(row)
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples)) / 1_000.0


def fit_persona_model(
    rows: Rows,
    labels: Sequence[str],
    *,
    settings: TrainSettings = TrainSettings(),
    now: datetime,
    source: PersonaModelSource = "train",
    segments: SegmentsReference | None = None,
    data_source: str = "",
) -> TrainedPersonaModel:
    """Fit CatBoost on a stratified training part of ``rows`` and evaluate on the rest.

    The inputs are every profile feature plus the context features (``ctx.*``) the rows
    carry (e.g. the columns of a profile export named ``ctx.device``).
    """
    from catboost import CatBoostClassifier

    if len(rows) != len(labels):
        raise InvalidInput(f"{len(rows)} rows but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise InvalidInput(
            f"the profiles carry one persona only ({set(labels)}): nothing to tell apart"
        )
    train, test = split(labels, settings.test_share, settings.seed)
    context = sorted({k for r in rows for k in r if k.startswith(CONTEXT_PREFIX)})
    numeric_ctx = [k for k in context if all(isinstance(r.get(k, 0.0), float) for r in rows)]
    train_rows = [rows[i] for i in train]
    encoder = FeatureEncoder.fit(
        train_rows,
        numeric=[*NUMERIC_FEATURES, *numeric_ctx],
        categorical=[*CATEGORICAL_FEATURES, *(k for k in context if k not in numeric_ctx)],
    )
    classifier = CatBoostClassifier(
        iterations=settings.iterations,
        depth=settings.depth,
        learning_rate=settings.learning_rate,
        random_seed=settings.seed,
        thread_count=settings.threads,
        loss_function="MultiClass" if len(set(labels)) > 2 else "Logloss",
        verbose=0,
        allow_writing_files=False,
    )
    started = time.perf_counter()
    classifier.fit(encoder.encode_many(train_rows), [labels[i] for i in train])
    seconds = time.perf_counter() - started
    model = PersonaModel.from_catboost(classifier, encoder)
    test_rows, test_labels = [rows[i] for i in test], [labels[i] for i in test]
    evaluation = evaluate(model, test_rows, test_labels)
    ranked = sorted(
        zip(encoder.column_names, map(float, classifier.get_feature_importance()), strict=True),
        key=lambda pair: -pair[1],
    )
    importances = [{"feature": name, "importance": value} for name, value in ranked]
    payload: dict[str, Any] = {
        "kind": "persona_training",
        "generated": utc_now_iso(now),
        "source": data_source,
        "release_source": source,
        "profiles": len(rows),
        "train_size": len(train),
        "test_size": len(test),
        "classes": list(model.classes),
        "segments": segments.model_dump() if segments else None,
        "catboost": {
            "iterations": settings.iterations,
            "depth": settings.depth,
            "seed": settings.seed,
            "fit_seconds": round(seconds, 3),
        },
        "predict_p50_us": round(_latency_us(model, test_rows), 2),
        "feature_importances": importances[:25],
        **evaluation,
    }
    release = PersonaModelRelease(
        version=0,
        created_at=now,
        source=source,
        kind="catboost",
        classes=list(model.classes),
        feature_names=list(model.feature_names),
        context_features=list(model.context_features),
        metrics=release_metrics(evaluation),
        segments=segments,
        train_size=len(train),
        test_size=len(test),
    )
    return TrainedPersonaModel(model=model, release=release, payload=payload, test_index=test)
