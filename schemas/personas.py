"""Persona models and segments: the contracts of the offline persona pipeline.

- :class:`PersonaModelRelease` — one published persona classifier in the persona-model
  store (``<data_dir>/personas/`` embedded, Redis distributed): what it predicts, from
  which features, how well it did on held-out users, and which segments named it.
- :class:`SegmentsFile` — the editable file ``learnloop personas segment`` writes and a
  data scientist edits to name the segments; ``train`` and ``retrain`` read it.
- :class:`SegmentModel` — the fitted segmentation itself (transform, scaler, centroids
  or mixture parameters), saved next to the segments file, so new profiles are labelled
  with the very same segments.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import UtcTime
from schemas.features import NAME_PATTERN

PersonaModelSource = Literal["train", "retrain", "rollback", "online"]
"""Who made a persona-model release: ``learnloop personas train``, the scheduled
``retrain``, a ``rollback``, or the online (river) learner."""
PersonaModelKind = Literal["catboost", "river"]
SegmentMethod = Literal["kmeans", "gmm"]
Transform = Literal["identity", "log1p"]


class SegmentsReference(BaseModel):
    """The segments a model's labels came from: the file's name and its content digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    digest: str


class PersonaModelRelease(BaseModel):
    """A persona classifier published to the persona-model store.

    ``metrics`` holds the held-out evaluation (``macro_f1``, ``accuracy``,
    ``precision.<persona>``, ``recall.<persona>``, ``f1.<persona>``) and, for a retrain,
    the audit of its gate (``current_macro_f1``: the model it replaced, on the same
    held-out users; ``margin``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=0)]
    """0 asks the store for the next version."""
    created_at: UtcTime
    source: PersonaModelSource
    kind: PersonaModelKind = "catboost"
    classes: list[str]
    feature_names: list[str]
    context_features: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    segments: SegmentsReference | None = None
    train_size: int = 0
    test_size: int = 0
    model_location: str = ""
    restores_version: int | None = None
    note: str = ""


class StoredPersonaRelease(BaseModel):
    """A history entry: the release and whether its model bytes are still stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release: PersonaModelRelease
    model_kept: bool


class SegmentModel(BaseModel):
    """A fitted segmentation: features -> transform -> standard scaling -> cluster.

    ``kmeans``: the nearest of ``centers`` (scaled space). ``gmm``: the component with
    the highest weighted density (``weights``, ``centers`` as means, full ``covariances``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: SegmentMethod
    features: list[str]
    transforms: list[Transform]
    mean: list[float]
    scale: list[float]
    centers: list[list[float]]
    weights: list[float] = Field(default_factory=list)
    covariances: list[list[list[float]]] = Field(default_factory=list)
    seed: int = 0


class Segment(BaseModel):
    """One cluster of the segments file: its id, the name the data scientist gives it
    (blank until named), and what defines it, in words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: Annotated[int, Field(ge=0)]
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | Literal[""] = ""
    description: str = ""
    size: int = 0


class SegmentsFile(BaseModel):
    """The editable segments file (TOML): the segments and where the segment model is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: SegmentMethod
    k: int
    created_at: UtcTime
    profiles: int
    model_file: str
    """The :class:`SegmentModel` JSON, relative to the segments file's directory."""
    segments: list[Segment]
