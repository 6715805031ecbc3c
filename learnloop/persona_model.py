"""The persona model the decision service serves: a trained CatBoost classifier, scored by
our own evaluator of its trees.

CatBoost's own single-row ``predict`` builds a data pool per call and costs a few hundred
microseconds; a decision may add at most ~100 µs for its persona. So the model is trained
on numbers only (categorical inputs are one-hot encoded by :class:`FeatureEncoder`, with
the vocabulary stored in the model) and its oblivious trees, read from CatBoost's JSON
export, are evaluated with a few numpy operations: the same formula CatBoost applies
(``x > border`` bits give each tree's leaf; the leaves' values are summed, scaled and
biased; softmax gives the probabilities). ``tests/unit/test_persona_model.py`` checks the
probabilities equal CatBoost's own.

The bytes of a model (what the persona-model store keeps) are gzip'd JSON: the encoder,
the classes, and CatBoost's JSON export as it is, so
:meth:`PersonaModel.to_catboost` can rebuild the CatBoost model for inspection.
catboost itself is imported only there and in training, never to serve.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from learnloop.errors import InvalidInput
from learnloop.persona_features import CONTEXT_PREFIX, FeatureValue

FORMAT: Final = "learnloop.persona_model"
FORMAT_VERSION: Final = 1
_GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True)
class FeatureEncoder:
    """Feature dict -> the model's numeric columns: numeric inputs as they are (missing:
    NaN, which CatBoost sends below every border), each categorical input one-hot over
    its vocabulary (an unseen value: all zeros)."""

    numeric: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input features read, numeric first."""
        return (*self.numeric, *self.categorical)

    @property
    def column_names(self) -> list[str]:
        """The encoded columns' names (``top_category=skin`` for one-hot columns)."""
        return [*self.numeric] + [
            f"{name}={value}" for name, values in self.categorical.items() for value in values
        ]

    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, FeatureValue]],
        numeric: Sequence[str],
        categorical: Sequence[str],
        max_values: int = 32,
    ) -> FeatureEncoder:
        """The vocabulary of each categorical input: its ``max_values`` most common values."""
        vocab: dict[str, tuple[str, ...]] = {}
        for name in categorical:
            seen: dict[str, int] = {}
            for row in rows:
                value = row.get(name)
                if value is not None:
                    seen[str(value)] = seen.get(str(value), 0) + 1
            ranked = sorted(seen, key=lambda v: (-seen[v], v))[:max_values]
            vocab[name] = tuple(sorted(ranked))
        return cls(numeric=tuple(numeric), categorical=vocab)

    def encode(self, features: Mapping[str, FeatureValue]) -> list[float]:
        """One row of columns."""
        row: list[float] = []
        for name in self.numeric:
            value = features.get(name)
            row.append(float(value) if isinstance(value, int | float) else math.nan)
        for name, values in self.categorical.items():
            value = features.get(name)
            row.extend(1.0 if value == v else 0.0 for v in values)
        return row

    def encode_many(self, rows: Sequence[Mapping[str, FeatureValue]]) -> npt.NDArray[np.float64]:
        """A matrix of rows (training and batch evaluation)."""
        return np.array([self.encode(r) for r in rows], dtype=np.float64).reshape(
            len(rows), len(self.column_names)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; the categorical inputs as a list of pairs, since their order is the
        columns' order (a JSON object's keys may be re-sorted)."""
        return {
            "numeric": list(self.numeric),
            "categorical": [[name, list(values)] for name, values in self.categorical.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        return cls(
            numeric=tuple(str(n) for n in data["numeric"]),
            categorical={str(name): tuple(values) for name, values in data["categorical"]},
        )


class _Trees:
    """CatBoost's oblivious trees as arrays: every tree padded to the deepest one's depth
    with splits that are never taken (border +inf), so one gather scores them all."""

    def __init__(self, export: Mapping[str, Any], n_classes: int) -> None:
        trees = export.get("oblivious_trees") or []
        if not trees:
            raise InvalidInput("the CatBoost export has no trees: train with iterations >= 1")
        depth = max(len(t["splits"]) for t in trees)
        dims = 1 if n_classes == 2 else n_classes
        n = len(trees)
        self.feature = np.zeros((n, max(depth, 1)), dtype=np.intp)
        self.border = np.full((n, max(depth, 1)), np.inf)
        self.leaves = np.zeros((n, 2 ** max(depth, 1), dims))
        for i, tree in enumerate(trees):
            for d, split in enumerate(tree["splits"]):
                if split.get("split_type", "FloatFeature") != "FloatFeature":
                    raise InvalidInput(
                        f"the CatBoost export splits on {split.get('split_type')!r}: persona "
                        "models are trained on numeric columns only (FeatureEncoder)"
                    )
                self.feature[i, d] = split["float_feature_index"]
                self.border[i, d] = split["border"]
            values = np.asarray(tree["leaf_values"], dtype=np.float64)
            leaves = values.reshape(-1, dims)  # leaf-major: leaf 0's class values first
            self.leaves[i, : leaves.shape[0]] = leaves
        self.powers = (1 << np.arange(max(depth, 1))).astype(np.intp)
        self.rows = np.arange(n)
        scale, bias = export.get("scale_and_bias", [1.0, [0.0] * dims])
        self.scale = float(scale)
        self.bias = np.asarray(bias if isinstance(bias, list) else [bias], dtype=np.float64)
        self.binary = n_classes == 2

    def raw(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The raw formula values (one per class; one for a binary model)."""
        index = (x[self.feature] > self.border) @ self.powers
        summed: npt.NDArray[np.float64] = self.leaves[self.rows, index].sum(axis=0)
        return summed * self.scale + self.bias

    def proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        raw = self.raw(x)
        if self.binary:
            p1 = 1.0 / (1.0 + math.exp(-float(raw[0])))
            return np.array([1.0 - p1, p1])
        shifted = np.exp(raw - raw.max())
        result: npt.NDArray[np.float64] = shifted / shifted.sum()
        return result


class PersonaModel:
    """A trained persona classifier: a feature dict
    (:func:`~learnloop.persona_features.profile_features`) -> a persona name.

    Build one with :meth:`from_bytes` (serving) or :meth:`from_catboost` (training);
    ``version`` is the persona-model store's release version (0 before publishing).
    """

    kind: Final = "catboost"

    def __init__(
        self,
        encoder: FeatureEncoder,
        classes: Sequence[str],
        export: Mapping[str, Any],
        version: int = 0,
    ) -> None:
        if len(classes) < 2:
            raise InvalidInput(f"a persona model needs at least 2 classes, got {list(classes)}")
        self.encoder = encoder
        self.classes: tuple[str, ...] = tuple(classes)
        self.version = version
        self._export = export
        self._trees = _Trees(export, len(self.classes))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features the model reads (profile features and ``ctx.*`` context features)."""
        return self.encoder.feature_names

    @property
    def context_features(self) -> tuple[str, ...]:
        """The context features it was trained with, without the ``ctx.`` prefix."""
        return tuple(
            n.removeprefix(CONTEXT_PREFIX)
            for n in self.feature_names
            if n.startswith(CONTEXT_PREFIX)
        )

    def with_version(self, version: int) -> PersonaModel:
        """The same model labelled with a store version."""
        return PersonaModel(self.encoder, self.classes, self._export, version)

    # Scoring -------------------------------------------------------------------------

    def predict_proba(self, features: Mapping[str, FeatureValue]) -> dict[str, float]:
        """Each persona's probability for one feature dict."""
        proba = self._trees.proba(np.array(self.encoder.encode(features)))
        return dict(zip(self.classes, proba.tolist(), strict=True))

    def predict(self, features: Mapping[str, FeatureValue]) -> str:
        """The most probable persona for one feature dict (the fast path of a decision)."""
        raw = self._trees.raw(np.array(self.encoder.encode(features)))
        if self._trees.binary:
            return self.classes[1] if raw[0] > 0 else self.classes[0]
        return self.classes[int(raw.argmax())]

    def predict_many(self, rows: Sequence[Mapping[str, FeatureValue]]) -> list[str]:
        """:meth:`predict` for each row (evaluation)."""
        return [self.predict(r) for r in rows]

    # Bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The model as the store keeps it (gzip'd JSON; deterministic for equal models)."""
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "classes": list(self.classes),
            "encoder": self.encoder.to_dict(),
            "catboost": self._export,
        }
        return gzip.compress(json.dumps(document, sort_keys=True).encode(), mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes, version: int = 0) -> PersonaModel:
        """Load a model from :meth:`to_bytes`'s output; refuses anything else by name."""
        try:
            raw = gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data
            document = json.loads(raw)
        except (OSError, ValueError, EOFError) as exc:
            raise InvalidInput(f"not a persona model ({type(exc).__name__}: {exc})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise InvalidInput("not a persona model: its 'format' is not " + repr(FORMAT))
        if document.get("format_version") != FORMAT_VERSION or document.get("kind") != cls.kind:
            raise InvalidInput(
                f"persona model format {document.get('format_version')!r} of kind "
                f"{document.get('kind')!r} is not supported (this learnloop reads "
                f"v{FORMAT_VERSION} {cls.kind} models): retrain it with this version"
            )
        try:
            return cls(
                FeatureEncoder.from_dict(document["encoder"]),
                [str(c) for c in document["classes"]],
                document["catboost"],
                version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"the persona model is malformed ({type(exc).__name__}: {exc})"
            ) from None

    # CatBoost ------------------------------------------------------------------------

    @classmethod
    def from_catboost(cls, model: Any, encoder: FeatureEncoder, version: int = 0) -> PersonaModel:
        """Wrap a fitted ``catboost.CatBoostClassifier`` trained on ``encoder``'s columns."""
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "model.json")
            model.save_model(path, format="json")
            with open(path, encoding="utf-8") as handle:
                export = json.load(handle)
        export.get("model_info", {}).pop("output_options", None)  # paths of the training run
        return cls(encoder, [str(c) for c in model.classes_], export, version)

    def to_catboost(self) -> Any:
        """The CatBoost model again (for inspection and tests; not used to serve)."""
        import os
        import tempfile

        from catboost import CatBoostClassifier

        model = CatBoostClassifier()
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "model.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self._export, handle)
            model.load_model(path, format="json")
        return model
