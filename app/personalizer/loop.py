"""A Personalizer loop is a learnloop decision point: its defaults and how it is found.

The first Personalizer call on a loop creates its decision point with Personalizer's
defaults (:func:`personalizer_defaults`): actions come with every rank call, rewards are
posted directly (no outcome types count), the wait time is ten minutes, the earliest
reward counts, and the policy is Personalizer's explorer with a faster learning rate
(:data:`PERSONALIZER_VW_ARGS`). After that the decision point is learnloop's like any
other: ``/v1/decision-points/{name}`` shows and changes it, and the Personalizer routes
read it back.
"""

from __future__ import annotations

from typing import Final

from learnloop.decision_points import DecisionPointStore
from schemas.config import DecisionPointConfig

PERSONALIZER_VW_ARGS: Final = "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q ::"
"""A new loop's learning settings: Personalizer's explorer (epsilon-greedy,
``explorationPercentage`` 0.2), its MTR reduction and its interactions of every
namespace pair, with VW's own adaptive learning rate instead of Personalizer's constant
``-l 0.001 --power_t 0`` (:data:`AZURE_DEFAULT_VW_ARGS`). Measured over five seeds on
three problems (``bench/personalizer_learning.py``, docs/benchmarks.md), VW's rate
reached the best share of rewarded choices 2 to 7 times sooner and was never worse."""

AZURE_DEFAULT_VW_ARGS: Final = (
    "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
)
"""Azure Personalizer's own default learning settings, for a team that wants them
exactly (``PUT configurations/policy``)."""

DEFAULT_WAIT_SECONDS: Final = 600.0
"""``rewardWaitTime`` PT10M, Personalizer's default."""


def personalizer_defaults(name: str) -> DecisionPointConfig:
    """The decision point a new Personalizer loop starts as."""
    return DecisionPointConfig(
        name=name,
        actions=[],
        vw_args=PERSONALIZER_VW_ARGS,
        reward_map={},
        window_seconds=DEFAULT_WAIT_SECONDS,
        aggregation="first",
        direct_aggregation="first",
        default_reward=0.0,
        baseline="first",
        learning_mode="online",
    )


async def ensure_loop(
    store: DecisionPointStore, name: str, *, fresh: bool = False
) -> DecisionPointConfig:
    """The loop's decision point, created with Personalizer's defaults if it is new
    (``fresh``: as stored now, see :meth:`DecisionPointStore.get`).

    Two API workers creating the same new loop at once both write the same defaults.
    """
    config = await store.get(name, fresh=fresh)
    if config is None:
        config = personalizer_defaults(name)
        await store.put(config)
    return config
