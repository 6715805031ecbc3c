"""How well the service knew who it served: the persona on each decision against the truth.

The simulator knows every shopper's hidden persona; the decision service answers each
decision with the persona it resolved (``DecisionResponse.persona``). Only logged-in
shoppers are scored: an anonymous shopper is ``visitor`` by definition, whoever they
are. Accuracy and macro-F1 are reported only when the service classified someone, that
is when it answered anything other than ``unclassified`` (the persona of every
logged-in shopper before a persona model serves).

Macro-F1 averages the F1 of the *true* classes seen: a prediction outside them
(``unclassified``, a default, a name the shop does not use) counts against the true
class's recall but adds no class of its own to the average.

>>> tally = PersonaTally()
>>> for truth, served in [("builder", "builder"), ("builder", "consultant"),
...                       ("consultant", "consultant"), ("shop_owner", "shop_owner")]:
...     tally.add(truth, served)
>>> tally.accuracy(), round(tally.macro_f1() or 0.0, 3)
(0.75, 0.778)
"""

from __future__ import annotations

import math
from collections import Counter

UNCLASSIFIED = "unclassified"


def f1_scores(pairs: Counter[tuple[str, str]]) -> dict[str, float]:
    """Per true class, F1 = 2 TP / (2 TP + FP + FN) from (truth, served) counts."""
    classes = sorted({truth for truth, _ in pairs})
    scores: dict[str, float] = {}
    for name in classes:
        tp = pairs[(name, name)]
        fn = sum(n for (t, s), n in pairs.items() if t == name and s != name)
        fp = sum(n for (t, s), n in pairs.items() if s == name and t != name)
        scores[name] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return scores


class PersonaTally:
    """The (true persona, served persona) pairs of one run's logged-in decisions."""

    def __init__(self) -> None:
        self._pairs: Counter[tuple[str, str]] = Counter()

    def add(self, truth: str, served: str) -> None:
        """Count one decision for a logged-in shopper."""
        self._pairs[(truth, served)] += 1

    @property
    def scored(self) -> int:
        """Decisions counted."""
        return sum(self._pairs.values())

    @property
    def classified(self) -> bool:
        """Whether the service ever answered something other than ``unclassified``."""
        return any(served != UNCLASSIFIED for _, served in self._pairs)

    def accuracy(self) -> float | None:
        """Share of decisions whose served persona is the true one; None if unclassified."""
        if not self.classified:
            return None
        return sum(n for (t, s), n in self._pairs.items() if t == s) / self.scored

    def macro_f1(self) -> float | None:
        """Mean F1 over the true classes; None while nobody was classified."""
        if not self.classified:
            return None
        scores = f1_scores(self._pairs)
        return math.fsum(scores.values()) / len(scores)

    def confusion(self) -> dict[str, dict[str, int]]:
        """true persona -> served persona -> decisions."""
        table: dict[str, dict[str, int]] = {}
        for (truth, served), n in sorted(self._pairs.items()):
            table.setdefault(truth, {})[served] = n
        return table
