"""Scheduled retraining: label the current profiles with the segment model, fit a new
persona classifier, and publish it only if it is not worse than the one serving.

Both models are scored on the same held-out users, against the same labels (the
segments applied to today's profiles), so the comparison is paired. The new model is
published when ``new macro-F1 >= current macro-F1 - margin``; otherwise
:class:`RetrainRefused` says both numbers and nothing is published. Either way the
gate's numbers are in the payload, and a published release carries them in its
``metrics`` (``current_macro_f1``, ``margin``) as its audit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from learnloop.errors import Conflict, InvalidInput
from learnloop.persona_features import FeatureValue
from learnloop.persona_model import PersonaModel
from learnloop.persona_models import PersonaModelStore
from offline_learner.personas.segments_file import read_segments, segment_names
from offline_learner.personas.train import TrainSettings, evaluate, fit_persona_model, label_rows
from schemas.personas import PersonaModelRelease


class RetrainRefused(Conflict):
    """The new model is worse than the current one by more than the margin; ``payload``
    is the evaluation with both numbers."""

    def __init__(self, message: str, payload: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.payload = dict(payload)


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain did: the release it published (``None`` when refused) and the
    ``persona_training`` payload with the gate's numbers under ``"gate"``."""

    release: PersonaModelRelease | None
    payload: dict[str, Any]


async def retrain(
    store: PersonaModelStore,
    rows: Sequence[Mapping[str, FeatureValue]],
    segments_path: Path,
    *,
    now: datetime,
    margin: float = 0.02,
    settings: TrainSettings = TrainSettings(),
    data_source: str = "",
    publish: bool = True,
) -> RetrainOutcome:
    """Fit, evaluate against the current model on the same held-out users, and publish
    if the gate passes (``publish=False``: evaluate only). Raises
    :class:`RetrainRefused` when it does not."""
    if margin < 0:
        raise InvalidInput(f"margin {margin}: give a non-negative macro-F1 margin (e.g. 0.02)")
    segments, segment_model, reference = read_segments(segments_path)
    labels = label_rows(segment_model, segment_names(segments, segments_path), rows)
    trained = fit_persona_model(
        rows,
        labels,
        settings=settings,
        now=now,
        source="retrain",
        segments=reference,
        data_source=data_source,
    )
    new_f1 = float(trained.payload["macro_f1"])
    current = await store.current()
    gate: dict[str, Any] = {"margin": margin, "new_macro_f1": new_f1, "current_version": None}
    if current is not None:
        current_model = PersonaModel.from_bytes(await store.load(current), version=current.version)
        held_out = [rows[i] for i in trained.test_index]
        held_labels = [labels[i] for i in trained.test_index]
        current_eval = evaluate(current_model, held_out, held_labels)
        gate |= {
            "current_version": current.version,
            "current_macro_f1": float(current_eval["macro_f1"]),
        }
    passed = current is None or new_f1 >= gate["current_macro_f1"] - margin
    gate["passed"] = passed
    payload = {**trained.payload, "gate": gate}
    if not passed:
        raise RetrainRefused(
            f"not published: the retrained persona model's held-out macro-F1 {new_f1:.4f} is "
            f"below the current v{gate['current_version']}'s {gate['current_macro_f1']:.4f} "
            f"on the same users by more than the margin {margin}; check the profiles and "
            "the segments, or pass a larger --margin to accept it",
            payload,
        )
    if not publish:
        return RetrainOutcome(release=None, payload=payload)
    metrics = dict(trained.release.metrics, margin=margin)
    if "current_macro_f1" in gate:
        metrics["current_macro_f1"] = gate["current_macro_f1"]
        metrics["current_version"] = float(gate["current_version"])
    release = await store.publish(
        trained.release.model_copy(update={"metrics": metrics}), trained.model.to_bytes()
    )
    payload["release"] = {"version": release.version, "source": release.source}
    return RetrainOutcome(release=release, payload=payload)
