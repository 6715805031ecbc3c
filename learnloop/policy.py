"""One policy protocol for every learner: ``predict`` a distribution over actions,
``learn`` from a logged decision and its reward.

The public methods check and normalise; subclasses implement ``_predict`` /
``_learn`` only. A VW policy is not thread-safe: one owner thread per instance.

>>> sample([0.2, 0.8], "event-1") == sample([0.2, 0.8], "event-1")
True
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import pylibvw
import vowpalwabbit

from learnloop import featurizer
from learnloop.errors import InvalidInput
from schemas.events import DecisionEvent
from schemas.features import Action, Context


def _text(lines: Sequence[str]) -> str:
    """One multi-line example as the text VW parses (as ``Workspace.parse`` builds it)."""
    return "\n".join(lines).replace("\r", "").strip()


class Policy(ABC):
    """Scores candidate actions for a context; learns from joined examples."""

    def predict(self, context: Context, persona: str, actions: Sequence[Action]) -> list[float]:
        """Probability of each action (aligned with ``actions``), summing to 1."""
        if not actions:
            raise InvalidInput("no candidate actions left to choose from")
        pmf = self._predict(context, persona, actions)
        if len(pmf) != len(actions):
            raise RuntimeError(
                f"policy returned {len(pmf)} probabilities for {len(actions)} actions"
            )
        total = math.fsum(pmf)
        if not total > 0 or not math.isfinite(total):
            return [1.0 / len(actions)] * len(actions)
        return [p / total for p in pmf]

    def learn(self, decision: DecisionEvent, reward: float) -> None:
        """Update from one logged decision and the reward it earned."""
        self._learn(decision, reward)

    @abstractmethod
    def _predict(
        self, context: Context, persona: str, actions: Sequence[Action]
    ) -> list[float]: ...

    def _learn(self, decision: DecisionEvent, reward: float) -> None:
        """Fixed policies learn nothing; learners override this."""
        return None


class VWPolicy(Policy):
    """A Vowpal Wabbit ``--cb_explore_adf`` workspace behind the policy protocol."""

    def __init__(self, vw_args: str, model: bytes | None = None) -> None:
        self.vw_args = vw_args
        self._lines = featurizer.CachedFeaturizer()
        if model is None:
            self._ws = vowpalwabbit.Workspace(f"{vw_args} --quiet")
        else:
            with tempfile.TemporaryDirectory(prefix="learnloop-model-") as tmp:
                path = Path(tmp) / "model.vw"
                path.write_bytes(model)
                # Reductions and interactions are stored in the model file itself.
                self._ws = vowpalwabbit.Workspace(f"--quiet -i {path}")

    def _predict(self, context: Context, persona: str, actions: Sequence[Action]) -> list[float]:
        return self.predict_lines(self._lines.example(context, persona, actions))

    def predict_lines(self, lines: Sequence[str]) -> list[float]:
        """VW's distribution over the actions of prebuilt text lines.

        Goes through ``pylibvw`` directly: ``Workspace.parse`` wraps every parsed line in
        a Python ``Example`` and ``predict``/``finish_example`` check each of them, which
        cost about as much as VW's own parse and predict; the pmf is the same.
        """
        ws = self._ws
        examples = ws._parse(_text(lines))
        try:
            pylibvw.vw.predict_multi(ws, examples)
            return list(examples[0].get_action_scores())
        finally:
            pylibvw.vw._finish_example_multi_ex(ws, examples)

    def _learn(self, decision: DecisionEvent, reward: float) -> None:
        self.learn_lines(featurizer.training_example(decision, reward))

    def learn_lines(self, lines: Sequence[str]) -> list[float]:
        """Learn prebuilt labelled lines; return the pmf the model gave *before* this
        update (VW predicts on the way into learn), so progressive validation is free.

        The same direct ``pylibvw`` path as :meth:`predict_lines`: the same model and
        pmfs as ``Workspace.parse`` + ``Workspace.learn``, in about half the Python time.
        """
        ws = self._ws
        examples = ws._parse(_text(lines))
        try:
            pylibvw.vw.learn_multi(ws, examples)
            return list(examples[0].get_action_scores())
        finally:
            pylibvw.vw._finish_example_multi_ex(ws, examples)

    def to_bytes(self) -> bytes:
        """The model file's bytes (VW saves to a path only)."""
        with tempfile.TemporaryDirectory(prefix="learnloop-model-") as tmp:
            path = Path(tmp) / "model.vw"
            self._ws.save(str(path))
            return path.read_bytes()

    def close(self) -> None:
        self._ws.finish()


_UNIT = 2.0**-53  # 53 random bits -> a float in [0, 1), as random.random() makes them


def uniforms_for(event_id: str) -> tuple[float, float]:
    """Two independent uniforms in [0, 1), a pure function of ``event_id``: the decision
    service's arm draw and action draw (one BLAKE2b digest; seeding a ``random.Random``
    per decision cost ~11 µs).

    >>> uniforms_for("e1") == uniforms_for("e1") != uniforms_for("e2")
    True
    >>> all(0.0 <= u < 1.0 for u in uniforms_for("e1"))
    True
    """
    bits = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=16).digest(), "big")
    return (bits >> 75) * _UNIT, ((bits >> 11) & (2**53 - 1)) * _UNIT


def draw(pmf: Sequence[float], u: float) -> int:
    """Inverse-CDF draw for a uniform ``u`` in [0, 1), never landing on p = 0.

    >>> draw([0.2, 0.8], 0.1), draw([0.2, 0.8], 0.5), draw([0.5, 0.5, 0.0], 0.99999999)
    (0, 1, 1)
    """
    cumulative = 0.0
    for index, p in enumerate(pmf):
        cumulative += p
        if u < cumulative:
            return index
    # Rounding left u above the total: take the last action that can be chosen at all.
    return max(i for i, p in enumerate(pmf) if p > 0)


def sample(pmf: Sequence[float], event_id: str) -> int:
    """Draw an action index from ``pmf`` for ``event_id`` (reproducible): the same draw
    the decision service's learned arm makes, so an in-process replay of the same
    event ids picks the same actions."""
    return draw(pmf, uniforms_for(event_id)[1])
