"""The online persona classifier: a river model that learns from the labels the shop confirms.

Between two CatBoost trainings the shop confirms personas one user at a time
(``POST /v1/users/{user_id}/label``, e.g. a signed consultant contract). This model
learns each one as it comes (``learn_one``), on the same features as CatBoost
(:func:`~learnloop.persona_features.profile_features` of the profile, without context:
a label arrives without a decision), and serves like it: ``predict`` /
``predict_proba`` on a feature dict, a ``version``, and bytes for the persona-model store
(``kind="river"``).

The model is a one-vs-rest logistic regression over standardised ``log1p`` numbers and a
one-hot top category: ~65 µs a prediction (an adaptive random forest scored a little
better on the simulated shop but costs ~700 µs a prediction and megabytes a copy).

>>> model = OnlinePersonaClassifier()
>>> for _ in range(20):
...     model.learn_one({"recruits": 6.0, "frequency": 8.0}, "builder")
...     model.learn_one({"recruits": 0.0, "frequency": 40.0}, "shop_owner")
>>> model.predict({"recruits": 5.0, "frequency": 9.0}), model.labels_learned
('builder', 40)
>>> OnlinePersonaClassifier.from_bytes(model.to_bytes(), version=3).predict(
...     {"recruits": 0.0, "frequency": 35.0})
'shop_owner'
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from learnloop.errors import InvalidInput
from learnloop.persona_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, FeatureValue
from learnloop.persona_models import DIRECTORY, LocalPersonaModelStore, PersonaModelStore
from learnloop.settings import Settings

FORMAT: Final = b"learnloop.persona_online/1\n"
"""The first line of the bytes: what they are, before the pickled river pipeline."""


def _log1p_numbers(names: tuple[str, ...], x: Mapping[str, Any]) -> dict[str, float]:
    """Each numeric input as ``log1p`` (counts and money are heavy-tailed); missing: 0.
    Module-level (with :func:`functools.partial`) so the pipeline pickles."""
    out = {}
    for name in names:
        value = x.get(name)
        number = float(value) if isinstance(value, int | float) else 0.0
        out[name] = math.log1p(max(number, 0.0))
    return out


def _one_hot(names: tuple[str, ...], x: Mapping[str, Any]) -> dict[str, float]:
    """Each categorical input as one indicator ``name=value`` (missing: none)."""
    return {f"{name}={x[name]}": 1.0 for name in names if x.get(name) is not None}


def _pipeline(numeric: Sequence[str], categorical: Sequence[str], learning_rate: float) -> Any:
    from river import compose, linear_model, multiclass, optim, preprocessing

    logs = compose.FuncTransformer(functools.partial(_log1p_numbers, tuple(numeric)))
    parts = logs | preprocessing.StandardScaler()
    if categorical:
        parts = parts + compose.FuncTransformer(functools.partial(_one_hot, tuple(categorical)))
    binary = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))
    return parts | multiclass.OneVsRestClassifier(binary)


class OnlinePersonaClassifier:
    """Learns personas one confirmed label at a time; serves like
    :class:`~learnloop.persona_model.PersonaModel`.

    Parameters
    ----------
    numeric, categorical
        The profile features it reads (context features are not: labels come without a
        decision context).
    learning_rate
        SGD step of each one-vs-rest logistic regression.
    version
        The persona-model store's release version (0 before publishing).
    """

    kind: Final = "river"

    def __init__(
        self,
        numeric: Sequence[str] = NUMERIC_FEATURES,
        categorical: Sequence[str] = CATEGORICAL_FEATURES,
        learning_rate: float = 0.05,
        version: int = 0,
    ) -> None:
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.learning_rate = learning_rate
        self.version = version
        self._model = _pipeline(self.numeric, self.categorical, learning_rate)
        self._counts: dict[str, int] = {}

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def context_features(self) -> tuple[str, ...]:
        """None: see the class docstring."""
        return ()

    @property
    def classes(self) -> tuple[str, ...]:
        """The personas learned so far, sorted."""
        return tuple(sorted(self._counts))

    @property
    def labels_learned(self) -> int:
        return sum(self._counts.values())

    @property
    def label_counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def trained(self) -> bool:
        """At least two personas learned: before that it has nothing to tell apart."""
        return len(self._counts) >= 2

    def learn_one(self, features: Mapping[str, FeatureValue], persona: str) -> None:
        """Learn one confirmed label."""
        self._model.learn_one(dict(features), persona)
        self._counts[persona] = self._counts.get(persona, 0) + 1

    def predict_proba(self, features: Mapping[str, FeatureValue]) -> dict[str, float]:
        """Each learned persona's probability (empty before any label)."""
        if not self._counts:
            return {}
        if len(self._counts) == 1:
            return {next(iter(self._counts)): 1.0}
        proba: dict[str, float] = self._model.predict_proba_one(dict(features))
        total = sum(proba.values()) or 1.0
        return {name: proba.get(name, 0.0) / total for name in self.classes}

    def predict(self, features: Mapping[str, FeatureValue]) -> str:
        """The most probable persona; refuses before any label was learned."""
        proba = self.predict_proba(features)
        if not proba:
            raise InvalidInput("the online persona model has learned no label yet")
        return max(proba.items(), key=lambda item: (item[1], item[0]))[0]

    def with_version(self, version: int) -> OnlinePersonaClassifier:
        """The same model (shared state) labelled with a store version."""
        copy = OnlinePersonaClassifier.__new__(OnlinePersonaClassifier)
        copy.__dict__.update(self.__dict__)
        copy.version = version
        return copy

    def to_bytes(self, state: Mapping[str, Any] | None = None) -> bytes:
        """The model as the persona-model store keeps it, with the learner's ``state``
        (where it is in the label feed) so a restarted learner resumes exactly there."""
        header = {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "learning_rate": self.learning_rate,
            "counts": self._counts,
            "state": dict(state or {}),
        }
        body = json.dumps(header, sort_keys=True).encode() + b"\n" + pickle.dumps(self._model)
        return FORMAT + gzip.compress(body, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes, version: int = 0) -> OnlinePersonaClassifier:
        """Load :meth:`to_bytes`'s output (only ever bytes this learnloop wrote: the body
        is a pickle, so the persona-model store must be trusted like the VW model store)."""
        return cls.load(data, version)[0]

    @classmethod
    def load(cls, data: bytes, version: int = 0) -> tuple[OnlinePersonaClassifier, dict[str, Any]]:
        """The model and the learner state saved with it."""
        if not data.startswith(FORMAT):
            raise InvalidInput(
                "not an online persona model (it does not start with "
                f"{FORMAT.strip().decode()!r}): publish river models with learnloop"
            )
        try:
            body = gzip.decompress(data[len(FORMAT) :])
            head, _, pickled = body.partition(b"\n")
            header = json.loads(head)
            model = cls(header["numeric"], header["categorical"], header["learning_rate"], version)
            model._model = pickle.loads(pickled)
            model._counts = {str(k): int(v) for k, v in header["counts"].items()}
        except (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            raise InvalidInput(
                f"the online persona model is malformed ({type(exc).__name__}: {exc})"
            ) from None
        return model, dict(header.get("state") or {})


ONLINE_DIRECTORY: Final = "online"
"""The river releases' store: ``<data_dir>/personas/online/`` (embedded), keys under
``<redis_prefix>online:`` (distributed). A store of its own, next to the CatBoost one,
so a river release never becomes the current CatBoost model (or the reverse) and each
keeps its own versions, history and rollback."""


def online_prefix(settings: Settings) -> str:
    """The Redis key prefix of the online persona-model store."""
    return f"{settings.redis_prefix}online:"


def open_online_persona_model_store(settings: Settings) -> PersonaModelStore:
    """The online (river) persona-model store of the configured mode (close it when done)."""
    if settings.backend == "kafka":
        from learnloop.persona_models_redis import RedisPersonaModelStore

        return RedisPersonaModelStore(settings.redis_url, online_prefix(settings))
    return LocalPersonaModelStore(Path(settings.data_dir) / DIRECTORY / ONLINE_DIRECTORY)
