"""VW DSJson codec: joined examples as lines that ``vw --dsjson`` and
Azure-Personalizer tooling read.

Fields: ``_label_cost`` (= -reward, VW minimises cost), ``_label_probability``,
``_label_Action`` (1-based index of the chosen action in ``_multi``),
``_labelIndex`` (0-based), ``a`` (1-based action indices, chosen first, then by
probability), ``p`` (their probabilities), ``c`` (context namespaces and
``_multi`` with one object per action), ``EventId``, ``Timestamp``.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.events import DecisionEvent, JoinedExample, utc_now_iso
from schemas.vw_layout import ACTION_NS, CONTEXT_NS, USER_NS, flatten


def ranking_order(probabilities: list[float], chosen_index: int) -> list[int]:
    """Indices with the chosen action first, the rest by falling probability.

    >>> ranking_order([0.1, 0.6, 0.3], chosen_index=0)
    [0, 1, 2]
    >>> ranking_order([0.1, 0.6, 0.3], chosen_index=2)
    [2, 1, 0]
    """
    rest = sorted(
        (i for i in range(len(probabilities)) if i != chosen_index),
        key=lambda i: (-probabilities[i], i),
    )
    return [chosen_index, *rest]


def context_object(decision: DecisionEvent) -> dict[str, Any]:
    """The DSJson ``c`` object: context and persona namespaces plus ``_multi``."""
    return {
        CONTEXT_NS: flatten(decision.context.features),
        USER_NS: {"persona": decision.persona},
        "_multi": [
            {ACTION_NS: {"id": action.id, **action.features}} for action in decision.actions
        ],
    }


def to_dsjson(example: JoinedExample) -> str:
    """Render one joined example as a DSJson line."""
    decision = example.decision
    order = ranking_order(decision.probabilities, decision.chosen_index)
    line: dict[str, Any] = {
        "_label_cost": -example.reward,
        "_label_probability": decision.chosen_probability,
        "_label_Action": decision.chosen_index + 1,
        "_labelIndex": decision.chosen_index,
        "o": [
            {"v": o.value, "EventId": o.outcome_id, "ActionTaken": False} for o in example.outcomes
        ]
        if example.outcomes
        else [],
        "Timestamp": utc_now_iso(decision.timestamp),
        "Version": "1",
        "EventId": decision.event_id,
        "a": [i + 1 for i in order],
        "c": context_object(decision),
        "p": [decision.probabilities[i] for i in order],
        "VWState": {"m": decision.model_version},
    }
    if not line["o"]:
        del line["o"]
    return json.dumps(line, separators=(",", ":"))
