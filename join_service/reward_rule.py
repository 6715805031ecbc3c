"""The reward rule: what an outcome is worth and how one window's outcomes become one reward.

Pure functions on the decision point's configuration (:class:`schemas.DecisionPointConfig`):

- the **reward map** names the outcome types that count and their reward
  (default ``basket_add: 3``, ``detail_view: 1``); a type it does not name is
  ignored. An outcome's own ``value`` is kept for the record but never replaces
  the mapped reward, so a client cannot inflate a reward by sending a value;
- the **aggregation** turns the counted outcomes into one reward: ``max``
  (default), ``sum``, or ``first`` (earliest event time, ties by arrival);
- a **direct reward** (:class:`schemas.RewardEvent`) overrides outcomes: the
  latest by event time wins (ties: the one that arrived last);
- with nothing counted and no direct reward the window closes with the
  decision point's ``default_reward``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from schemas import Aggregation, CloseReason, DecisionPointConfig, OutcomeEvent, RewardEvent
from schemas.config import DirectAggregation


class CountedOutcome(NamedTuple):
    """An outcome that counted for a decision, with the reward the map gave it.

    ``seq`` is the join's arrival number of the outcome; it breaks ties between
    equal event times so that ``first`` and the outcome order are deterministic.
    """

    outcome: OutcomeEvent
    reward: float
    seq: int


class DirectReward(NamedTuple):
    """A reward posted directly for a decision, with its arrival number."""

    event: RewardEvent
    seq: int


def outcome_reward(reward_map: Mapping[str, float], outcome_type: str) -> float | None:
    """The reward an outcome type is worth, or ``None`` when the map does not name it.

    >>> outcome_reward({"basket_add": 3.0, "detail_view": 1.0}, "basket_add")
    3.0
    >>> outcome_reward({"basket_add": 3.0}, "purchase") is None
    True
    """
    return reward_map.get(outcome_type)


def _by_time(counted: CountedOutcome) -> tuple[object, int]:
    return counted.outcome.timestamp, counted.seq


def aggregate(aggregation: Aggregation, counted: Sequence[CountedOutcome]) -> float:
    """Combine the rewards of the counted outcomes of one window into one reward.

    Parameters
    ----------
    aggregation
        ``max`` (the best thing the shopper did), ``sum`` (everything they did)
        or ``first`` (the first thing they did, by event time; ties by arrival).
    counted
        At least one counted outcome; with none, the default reward applies
        instead (see :func:`close_reward`).

    >>> from datetime import UTC, datetime
    >>> def seen(type_, reward, second, seq):
    ...     at = datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)
    ...     event = OutcomeEvent(outcome_id=f"o{seq}", event_id="d1", type=type_, timestamp=at)
    ...     return CountedOutcome(event, reward, seq)
    >>> window = [seen("detail_view", 1.0, 5, 0), seen("basket_add", 3.0, 2, 1)]
    >>> aggregate("max", window), aggregate("sum", window), aggregate("first", window)
    (3.0, 4.0, 3.0)
    """
    if not counted:
        raise ValueError("aggregate needs at least one counted outcome; use close_reward")
    if len(counted) == 1:
        return counted[0].reward
    if aggregation == "max":
        return max(c.reward for c in counted)
    if aggregation == "sum":
        return float(sum(c.reward for c in counted))
    if aggregation == "first":
        return min(counted, key=_by_time).reward
    raise ValueError(f"unknown aggregation {aggregation!r}: use max, sum or first")


def ordered_outcomes(counted: Sequence[CountedOutcome]) -> list[OutcomeEvent]:
    """The counted outcomes by event time, ties by arrival: the order a joined example lists."""
    if len(counted) == 1:
        return [counted[0].outcome]
    return [c.outcome for c in sorted(counted, key=_by_time)]


def direct_reward(aggregation: DirectAggregation, direct: Sequence[DirectReward]) -> float:
    """The rewards posted directly for one decision as one value, by event time (then
    arrival): the ``latest``, the ``first`` or the ``mean``.

    >>> from datetime import UTC, datetime
    >>> def posted(value, second, seq):
    ...     at = datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)
    ...     return DirectReward(RewardEvent(reward_id=f"r{seq}", event_id="e", value=value,
    ...                                     timestamp=at), seq)
    >>> rewards = [posted(1.0, 5, 0), posted(0.0, 1, 1), posted(0.5, 3, 2)]
    >>> direct_reward("latest", rewards), direct_reward("first", rewards)
    (1.0, 0.0)
    >>> direct_reward("mean", rewards)
    0.5
    """
    if aggregation == "mean":
        return sum(d.event.value for d in direct) / len(direct)
    ordered = sorted(direct, key=lambda d: (d.event.timestamp, d.seq))
    return ordered[0].event.value if aggregation == "first" else ordered[-1].event.value


def close_reward(
    config: DecisionPointConfig,
    counted: Sequence[CountedOutcome],
    direct: Sequence[DirectReward],
) -> tuple[float, CloseReason]:
    """The reward of a closing window and why: ``direct``, ``outcome`` or ``default``.

    >>> close_reward(DecisionPointConfig(name="p", default_reward=-1.0), [], [])
    (-1.0, 'default')
    """
    if direct:
        return direct_reward(config.direct_aggregation, direct), "direct"
    if counted:
        return aggregate(config.aggregation, counted), "outcome"
    return config.default_reward, "default"
