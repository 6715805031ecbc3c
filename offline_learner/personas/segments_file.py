"""The editable segments file: cluster -> name, written by ``segment``, read by ``train``.

``segments.toml`` lists every cluster with a blank ``name`` for the data scientist to
fill in (several clusters may share a name: they become one persona), its size and what
defines it in words; ``segments.model.json`` beside it holds the fitted
:class:`~schemas.personas.SegmentModel`, so ``train`` and ``retrain`` label profiles
with exactly these segments. The TOML's digest goes into every persona-model release
trained from it.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from learnloop.errors import InvalidInput
from learnloop.persona_features import FeatureValue
from schemas.events import utc_now_iso
from schemas.personas import SegmentModel, SegmentsFile, SegmentsReference

HEADER = """\
# Persona segments: give every cluster a persona name (letters, digits, '_', '.', '-'),
# then run `learnloop personas train --segments {file}`.
# Clusters may share a name: they are merged into one persona. The segment model itself
# (scaling and centres) is in {model}; do not edit that one.
"""


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def model_path_for(path: Path) -> Path:
    """``segments.toml`` -> ``segments.model.json``."""
    return path.with_name(path.stem + ".model.json")


def write_segments(
    path: Path,
    model: SegmentModel,
    payload: Mapping[str, Any],
    now: datetime,
    names: Mapping[int, str] | None = None,
) -> tuple[Path, Path]:
    """Write the segments file and the segment model beside it; returns both paths."""
    path = Path(path)
    model_path = model_path_for(path)
    lines = [
        HEADER.format(file=path.name, model=model_path.name),
        f"method = {_toml_string(model.method)}",
        f"k = {len(model.centers)}",
        f"created_at = {_toml_string(utc_now_iso(now))}",
        f"profiles = {int(payload['profiles'])}",
        f"model_file = {_toml_string(model_path.name)}",
    ]
    for segment in payload["segments"]:
        cluster = int(segment["cluster"])
        name = (names or {}).get(cluster, segment.get("name", ""))
        lines += [
            "",
            "[[segments]]",
            f"cluster = {cluster}",
            f"name = {_toml_string(name)}  # suggested: segment-{cluster}",
            f"size = {int(segment['size'])}",
            f"description = {_toml_string(segment['description'])}",
        ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        model_path.write_text(model.model_dump_json(indent=1), encoding="utf-8")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write the segments file {path}: {exc}") from None
    return path, model_path


def read_segments(path: Path) -> tuple[SegmentsFile, SegmentModel, SegmentsReference]:
    """The segments file, its segment model, and the reference releases record."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise InvalidInput(
            f"no segments file {path}: run learnloop personas segment --segments-out {path} first"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read the segments file {path}: {exc}") from None
    try:
        segments = SegmentsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(
            f"segments file {path}: {where}: {first['msg']} "
            "(names use letters, digits, '_', '.', '-')"
        ) from None
    model_path = path.parent / segments.model_file
    try:
        model = SegmentModel.model_validate_json(model_path.read_bytes())
    except FileNotFoundError:
        raise InvalidInput(
            f"the segment model {model_path} named by {path} is missing: keep it beside the "
            "segments file, or segment again"
        ) from None
    except ValidationError as exc:
        raise InvalidInput(
            f"{model_path} is not a segment model ({exc.error_count()} errors)"
        ) from None
    clusters = sorted(s.cluster for s in segments.segments)
    if clusters != list(range(len(model.centers))):
        raise InvalidInput(
            f"segments file {path} lists clusters {clusters} but its model has "
            f"{len(model.centers)} (0-{len(model.centers) - 1}): list each cluster once"
        )
    digest = hashlib.sha256(text.encode() + model_path.read_bytes()).hexdigest()[:16]
    return segments, model, SegmentsReference(name=path.name, digest=digest)


def segment_names(segments: SegmentsFile, path: Path | str = "the segments file") -> dict[int, str]:
    """Cluster -> persona name; refuses a file with unnamed clusters or a single persona."""
    unnamed = [s.cluster for s in segments.segments if not s.name]
    if unnamed:
        raise InvalidInput(
            f"clusters {unnamed} in {path} have no name: give every cluster a persona name "
            "(after reading the segmentation report), then train again"
        )
    names = {s.cluster: s.name for s in segments.segments}
    if len(set(names.values())) < 2:
        raise InvalidInput(f"{path} names only one persona: a classifier needs at least two")
    return names


def rename_segments(path: Path, names: Mapping[int, str]) -> None:
    """Give clusters names in an existing segments file (what a person does in an editor;
    used by scripts and tests)."""
    segments, model, _ = read_segments(path)
    payload = {
        "profiles": segments.profiles,
        "segments": [s.model_dump() for s in segments.segments],
    }
    write_segments(path, model, payload, segments.created_at, names=names)


def name_by_majority(
    path: Path, rows: Sequence[Mapping[str, FeatureValue]], labels: Sequence[str | None]
) -> dict[int, str]:
    """Name every cluster after the label most of its members carry, and write the names
    into the segments file: for a shop that knows some of its people (signed contracts,
    a CRM field) or a simulation that knows all of them. ``labels`` are aligned with
    ``rows``; ``None`` is an unknown member. Clusters without a labelled member keep
    their name (and :func:`segment_names` refuses them until someone names them)."""
    from offline_learner.personas.segment import assign

    if len(rows) != len(labels):
        raise InvalidInput(f"{len(rows)} profiles but {len(labels)} labels: align them")
    _, model, _ = read_segments(path)
    members: dict[int, Counter[str]] = {}
    for cluster, label in zip(assign(model, rows), labels, strict=True):
        if label is not None:
            members.setdefault(int(cluster), Counter())[label] += 1
    names = {cluster: count.most_common(1)[0][0] for cluster, count in members.items()}
    rename_segments(path, names)
    return names
