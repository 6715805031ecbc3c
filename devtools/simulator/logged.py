"""A logged dataset from the synthetic shop, without a service: what a data scientist's
export would hold after the shop ran under a known logging policy.

Each visit is decided by a *logging policy* (by default uniform random over the four
actions), its outcomes are drawn exactly as in :class:`~devtools.simulator.shop.Shop`,
and the example carries the reward the join would compute (max over in-window
outcomes). Because the shop knows ``E[reward | visit, action]``, the true value of any
policy on this traffic is known too (:func:`true_value`): the ground truth that the
off-policy estimators of ``offline_learner`` are checked against in the benchmark.

The persona is the decision service's (anonymous -> ``visitor``, logged in ->
``unclassified``), so the features match what ``learnloop serve`` logs.

>>> rows = list(logged_examples(3, seed=1))
>>> [len(r.decision.actions) for r in rows], rows[0].decision.probabilities
([4, 4, 4], [0.25, 0.25, 0.25, 0.25])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from devtools.simulator.shop import ACTIONS, Shop, Visit
from learnloop.policy import draw, uniforms_for
from schemas.events import DecisionEvent, JoinedExample, OutcomeEvent
from schemas.features import Action, Context

LoggingPolicy = Callable[[Visit], list[float]]
"""A visit -> the logging probabilities of :data:`ACTIONS`, in that order."""

START = datetime(2026, 1, 1, tzinfo=UTC)


def uniform(visit: Visit) -> list[float]:
    """The uniform-random logging policy."""
    return [1.0 / len(ACTIONS)] * len(ACTIONS)


def service_persona(visit: Visit) -> str:
    """The persona the decision service logs today: ``visitor`` or ``unclassified``."""
    return "visitor" if visit.shopper.user_id is None else "unclassified"


def logged_examples(
    count: int,
    seed: int = 7,
    *,
    logging: LoggingPolicy = uniform,
    decision_point: str = "home_products",
    start: datetime = START,
    shop: str = "mlm",
    window_seconds: float = 20.0,
) -> Iterator[JoinedExample]:
    """``count`` joined examples of the shop decided by ``logging``, in event order."""
    model = Shop(seed, window_seconds, rule=shop)
    actions = [Action(id=a) for a in ACTIONS]
    window = timedelta(seconds=window_seconds)
    for visit in model.visits(start, count):
        event_id = f"log-{seed}-{visit.index}"
        pmf = logging(visit)
        chosen = draw(pmf, uniforms_for(event_id)[1])
        outcomes = model.outcomes(visit, ACTIONS[chosen])
        counted = [o for o in outcomes if o.delay <= window_seconds]
        decision = DecisionEvent(
            event_id=event_id,
            timestamp=visit.timestamp,
            decision_point=decision_point,
            context=Context(
                user_id=visit.shopper.user_id,
                session_id=visit.session_id,
                features=dict(visit.features),
            ),
            persona=service_persona(visit),
            actions=actions,
            chosen_index=chosen,
            probabilities=pmf,
            model_version="logging",
        )
        yield JoinedExample(
            event_id=event_id,
            timestamp=visit.timestamp + window,
            decision=decision,
            outcomes=[
                OutcomeEvent(
                    outcome_id=f"{event_id}-o{i}",
                    event_id=event_id,
                    type=o.type,
                    timestamp=visit.timestamp + timedelta(seconds=o.delay),
                )
                for i, o in enumerate(counted)
            ],
            reward=model.realised_reward(outcomes),
            close_reason="outcome" if counted else "default",
        )


def true_value(
    policy: Callable[[Visit], Mapping[str, float]],
    count: int,
    seed: int = 7,
    *,
    shop: str = "mlm",
    window_seconds: float = 20.0,
) -> float:
    """The exact expected reward per decision of ``policy`` (visit -> probability per
    action id) on the same ``count`` visits :func:`logged_examples` yields."""
    model = Shop(seed, window_seconds, rule=shop)
    total = math.fsum(
        math.fsum(p * model.expected_reward(visit, a) for a, p in policy(visit).items())
        for visit in model.visits(START, count)
    )
    return total / count
