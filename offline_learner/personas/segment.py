"""Segmentation of user profiles with scikit-learn: the groups a data scientist names.

The profile features (:mod:`learnloop.persona_features`) are transformed (money and
counts ``log1p``: a shop owner's basket is ten times a customer's, not ten standard
deviations away), standardised, and clustered by KMeans (``k`` chosen by the silhouette
score over a range) or a Gaussian mixture (``k`` chosen by BIC). The fitted result is a
:class:`~schemas.personas.SegmentModel`, plain numbers, so :func:`assign` labels new
profiles with the same segments without scikit-learn and without refitting.

:func:`segmentation_payload` describes each segment for the report: size, feature
means against the population (z-scores), the most distinguishing features, example
profiles, a 2-D PCA projection, and the criterion over ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from learnloop.errors import InvalidInput
from learnloop.persona_features import NUMERIC_FEATURES, FeatureValue
from schemas.events import utc_now_iso
from schemas.personas import SegmentMethod, SegmentModel, Transform

Matrix = npt.NDArray[np.float64]

IDENTITY_FEATURES: Final = frozenset({"recency_days", "others_share", "n_categories"})
"""Features clustered as they are; every other (money, counts) is clustered as ``log1p``."""
MAX_SCATTER_POINTS: Final = 1_500
EXAMPLES: Final = 5
DISTINGUISHING: Final = 3
MIN_PROFILES_PER_CLUSTER: Final = 5


@dataclass(frozen=True)
class Segmentation:
    """A fitted segmentation: the model, every profile's cluster, and ``k``'s scores."""

    model: SegmentModel
    labels: npt.NDArray[np.intp]
    criterion: str
    """``silhouette`` (higher is better), ``bic`` (lower is better), or ``given``."""
    scores: dict[int, float]


def transforms_for(features: Sequence[str]) -> list[Transform]:
    return ["identity" if f in IDENTITY_FEATURES else "log1p" for f in features]


def raw_matrix(rows: Sequence[Mapping[str, FeatureValue]], features: Sequence[str]) -> Matrix:
    """The features of every row, untransformed (a missing or non-numeric value: 0)."""
    out = np.zeros((len(rows), len(features)))
    for i, row in enumerate(rows):
        for j, name in enumerate(features):
            value = row.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                out[i, j] = float(value)
    return out


def _transformed(raw: Matrix, transforms: Sequence[Transform]) -> Matrix:
    out = raw.copy()
    for j, transform in enumerate(transforms):
        if transform == "log1p":
            out[:, j] = np.log1p(np.clip(out[:, j], 0.0, None))
    return out


def scaled(model: SegmentModel, rows: Sequence[Mapping[str, FeatureValue]]) -> Matrix:
    """Rows in the model's clustering space: transformed, then standardised."""
    x = _transformed(raw_matrix(rows, model.features), model.transforms)
    result: Matrix = (x - np.asarray(model.mean)) / np.asarray(model.scale)
    return result


def assign(model: SegmentModel, rows: Sequence[Mapping[str, FeatureValue]]) -> npt.NDArray[np.intp]:
    """The cluster of each row under ``model`` (what ``retrain`` labels profiles with)."""
    if not rows:
        return np.zeros(0, dtype=np.intp)
    z = scaled(model, rows)
    centers = np.asarray(model.centers)
    if model.method == "kmeans":
        distances = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(distances.argmin(axis=1), dtype=np.intp)
    scores = np.empty((len(rows), len(centers)))
    for c, (weight, mean, cov) in enumerate(
        zip(model.weights, centers, model.covariances, strict=True)
    ):
        chol = np.linalg.cholesky(np.asarray(cov))
        solved = np.linalg.solve(chol, (z - mean).T)
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        scores[:, c] = math.log(weight) - 0.5 * (log_det + (solved**2).sum(axis=0))
    return np.asarray(scores.argmax(axis=1), dtype=np.intp)


def _fit_one(method: SegmentMethod, z: Matrix, k: int, seed: int) -> Any:
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z)
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(
        n_components=k, covariance_type="full", n_init=2, reg_covar=1e-4, random_state=seed
    ).fit(z)


def fit_segments(
    rows: Sequence[Mapping[str, FeatureValue]],
    *,
    method: SegmentMethod = "kmeans",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    seed: int = 0,
    features: Sequence[str] = NUMERIC_FEATURES,
) -> Segmentation:
    """Cluster ``rows`` (:func:`~learnloop.persona_features.profile_features` dicts).

    With ``k`` given, fits that many clusters; otherwise tries every ``k`` in
    ``k_range`` (inclusive) and keeps the best by silhouette (KMeans) or BIC (mixture).
    """
    low, high = (k, k) if k is not None else k_range
    if low < 2 or high < low:
        raise InvalidInput(f"k range {low}-{high}: give 2 <= low <= high (e.g. --k-range 2-8)")
    if len(rows) < high * MIN_PROFILES_PER_CLUSTER:
        raise InvalidInput(
            f"{len(rows)} profiles are too few for {high} segments: import more profiles "
            f"(at least {MIN_PROFILES_PER_CLUSTER} per segment) or ask for fewer"
        )
    transforms = transforms_for(features)
    x = _transformed(raw_matrix(rows, features), transforms)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature stays 0 after scaling
    z = (x - mean) / scale
    fits: dict[int, Any] = {}
    scores: dict[int, float] = {}
    for candidate in range(low, high + 1):
        fitted = _fit_one(method, z, candidate, seed)
        fits[candidate] = fitted
        if k is not None:
            continue
        if method == "kmeans":
            from sklearn.metrics import silhouette_score

            sample = min(len(rows), 4_000)
            scores[candidate] = float(
                silhouette_score(z, fitted.labels_, sample_size=sample, random_state=seed)
            )
        else:
            scores[candidate] = float(fitted.bic(z))
    if k is not None:
        chosen, criterion = k, "given"
    elif method == "kmeans":
        chosen, criterion = max(scores, key=lambda c: scores[c]), "silhouette"
    else:
        chosen, criterion = min(scores, key=lambda c: scores[c]), "bic"
    fitted = fits[chosen]
    common = {
        "method": method,
        "features": list(features),
        "transforms": transforms,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "seed": seed,
    }
    if method == "kmeans":
        model = SegmentModel(centers=fitted.cluster_centers_.tolist(), **common)
    else:
        model = SegmentModel(
            centers=fitted.means_.tolist(),
            weights=fitted.weights_.tolist(),
            covariances=fitted.covariances_.tolist(),
            **common,
        )
    # scikit-learn's own labels: tests check that assign() (what retrain uses) equals them.
    labels = fitted.labels_ if method == "kmeans" else fitted.predict(z)
    return Segmentation(
        model=model,
        labels=np.asarray(labels, dtype=np.intp),
        criterion=criterion,
        scores=scores,
    )


def describe(z: Mapping[str, float], limit: int = DISTINGUISHING) -> str:
    """What sets a segment apart, in words, from its z-scores.

    >>> describe({"recruits": 2.4, "frequency": 0.1, "others_share": -1.2})
    'high recruits (+2.4 sd), low others_share (-1.2 sd), average frequency (+0.1 sd)'
    """
    ranked = sorted(z, key=lambda name: -abs(z[name]))[:limit]
    words = []
    for name in ranked:
        level = "high" if z[name] >= 0.5 else "low" if z[name] <= -0.5 else "average"
        words.append(f"{level} {name} ({z[name]:+.1f} sd)")
    return ", ".join(words)


def _scatter(z: Matrix, labels: npt.NDArray[np.intp], seed: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    if z.shape[1] < 2 or len(z) < 3:
        return {"explained": [], "points": []}
    pca = PCA(n_components=2, random_state=seed).fit(z)
    rng = np.random.default_rng(seed)
    index = np.arange(len(z))
    if len(z) > MAX_SCATTER_POINTS:
        index = np.sort(rng.choice(len(z), MAX_SCATTER_POINTS, replace=False))
    xy = pca.transform(z[index])
    points = [
        [round(float(a), 4), round(float(b), 4), int(labels[i])]
        for (a, b), i in zip(xy, index, strict=True)
    ]
    return {
        "explained": [round(float(v), 4) for v in pca.explained_variance_ratio_],
        "points": points,
    }


def segmentation_payload(
    segmentation: Segmentation,
    rows: Sequence[Mapping[str, FeatureValue]],
    user_ids: Sequence[str],
    *,
    source: str,
    now: datetime,
    names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The ``segmentation`` report payload (JSON-able; ``--json`` prints it)."""
    model, labels = segmentation.model, segmentation.labels
    raw = raw_matrix(rows, model.features)
    z = scaled(model, rows)
    population = {f: float(raw[:, j].mean()) for j, f in enumerate(model.features)}
    segments = []
    for cluster in range(len(model.centers)):
        members = np.flatnonzero(labels == cluster)
        if len(members):
            centre = z[members].mean(axis=0)
            closest = members[np.argsort(((z[members] - centre) ** 2).sum(axis=1))[:EXAMPLES]]
        else:
            centre, closest = np.zeros(len(model.features)), members
        zscores = {f: round(float(centre[j]), 4) for j, f in enumerate(model.features)}
        segments.append(
            {
                "cluster": cluster,
                "name": (names or {}).get(cluster, ""),
                "size": len(members),
                "share": float(len(members) / max(1, len(rows))),
                "means": {
                    f: float(raw[members, j].mean()) if len(members) else 0.0
                    for j, f in enumerate(model.features)
                },
                "z": zscores,
                "distinguishing": sorted(zscores, key=lambda f: -abs(zscores[f]))[:DISTINGUISHING],
                "description": describe(zscores),
                "examples": [str(user_ids[i]) for i in closest],
            }
        )
    return {
        "kind": "segmentation",
        "generated": utc_now_iso(now),
        "source": source,
        "profiles": len(rows),
        "method": model.method,
        "k": len(model.centers),
        "criterion": segmentation.criterion,
        "scores": [{"k": c, "score": s} for c, s in sorted(segmentation.scores.items())],
        "features": list(model.features),
        "transforms": list(model.transforms),
        "population": population,
        "segments": segments,
        "scatter": _scatter(z, labels, model.seed),
    }
