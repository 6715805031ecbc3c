"""A small synthetic log with a known best action per context, for the replay and search tests.

Three pages x three actions; the click probability of each (page, action) is known, so
the true value of any fixed policy on the logged contexts is exact. The logging policy
is uniform or epsilon-greedy on a fixed action, with its full distribution recorded.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.events import DecisionEvent, JoinedExample
from schemas.features import Action, Context

ACTIONS = ("a0", "a1", "a2")
PAGES = ("home", "cart", "search")
CLICK = {
    ("home", "a0"): 0.7,
    ("home", "a1"): 0.2,
    ("home", "a2"): 0.1,
    ("cart", "a0"): 0.1,
    ("cart", "a1"): 0.8,
    ("cart", "a2"): 0.2,
    ("search", "a0"): 0.2,
    ("search", "a1"): 0.1,
    ("search", "a2"): 0.6,
}
"""Each page's best action is a different one: only a context-aware policy wins."""

START = datetime(2026, 1, 1, tzinfo=UTC)


def logged(
    count: int,
    seed: int = 0,
    *,
    epsilon: float | None = None,
    greedy: str = "a0",
    inactive_every: int = 0,
    deterministic: bool = False,
) -> list[JoinedExample]:
    """``count`` examples logged uniformly (``epsilon=None``) or epsilon-greedy on ``greedy``.

    ``deterministic`` makes the reward the click probability itself (no noise);
    ``inactive_every`` marks every n-th decision as not activated.
    """
    rng = random.Random(seed)
    actions = [Action(id=a) for a in ACTIONS]
    rows = []
    for i in range(count):
        page = rng.choice(PAGES)
        if epsilon is None:
            pmf = [1.0 / len(ACTIONS)] * len(ACTIONS)
        else:
            pmf = [epsilon / len(ACTIONS)] * len(ACTIONS)
            pmf[ACTIONS.index(greedy)] += 1.0 - epsilon
        chosen = rng.choices(range(len(ACTIONS)), weights=pmf)[0]
        p_click = CLICK[(page, ACTIONS[chosen])]
        reward = p_click if deterministic else float(rng.random() < p_click)
        when = START + timedelta(seconds=i)
        decision = DecisionEvent(
            event_id=f"e{i}",
            timestamp=when,
            decision_point="home_products",
            context=Context(features={"page": page}),
            persona="visitor",
            actions=actions,
            chosen_index=chosen,
            probabilities=pmf,
            model_version="logging",
            activated=not (inactive_every and i % inactive_every == inactive_every - 1),
        )
        rows.append(
            JoinedExample(
                event_id=f"e{i}",
                timestamp=when + timedelta(seconds=20),
                decision=decision,
                reward=reward,
                close_reason="outcome" if reward else "default",
            )
        )
    return rows


def true_constant_value(rows: list[JoinedExample], action: str) -> float:
    """Exact expected reward of always choosing ``action`` on the rows' contexts."""
    pages = [str(r.decision.context.features["page"]) for r in rows if r.decision.activated]
    return sum(CLICK[(p, action)] for p in pages) / len(pages)


def best_value(rows: list[JoinedExample]) -> float:
    """Exact expected reward of the best context-aware policy on the rows' contexts."""
    pages = [str(r.decision.context.features["page"]) for r in rows if r.decision.activated]
    return sum(max(CLICK[(p, a)] for a in ACTIONS) for p in pages) / len(pages)
