"""The shop's hidden flag preferences: which variant of a UI feature each persona converts on.

A feature team's flag is a UI choice (a checkout layout, a bulk order form) whose best
variant depends on who is looking. This module is the part of the simulated shop that
knows it and the service never sees, in the spirit of :mod:`devtools.simulator.rules`:
for each flag, persona and variant an *appeal* (the chance of the flag's conversion
path), nudged a little by the device. Visits are the shop's own (:class:`Shop.visits`:
the same shoppers, personas, features and event times); a visit shown a variant
yields a light outcome (a checkout step, a detail view) and maybe the conversion
(an order placed, a basket add) after the shop's lognormal delays.

- ``checkout_layout`` (``classic``, the legacy default, ``one_page``, ``wizard``): first
  timers want to be guided (wizard), regulars want one page; consultants, who order for
  several customers at once, want the wizard's steps. ``classic`` is best for no one.
- ``bulk_order_form`` (``off``, the default, ``on``; a boolean flag): shop owners
  restocking convert far more with the form, consultants a little; visitors and direct
  customers less (a cluttered page), so the default is right for them.

Outcome draws use common random numbers (an RNG per visit and flag, whatever the
variant), and the expected reward of every (visit, variant) is exact, so runs are scored
without noise: the *oracle* serves each visit its best variant, the *default* always the
default variant.

>>> from datetime import UTC, datetime
>>> model = FlagModel("checkout_layout", seed=7)
>>> visit = next(model.visits(datetime(2026, 1, 1, tzinfo=UTC), count=1))
>>> sorted(model.expected_rewards(visit)) == sorted(model.preference.variants)
True
>>> model.oracle(visit) == max(model.expected_rewards(visit).values())
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devtools.simulator.shop import (
    BASKET_ADD_DELAY,
    DETAIL_VIEW_DELAY,
    MAX_DELAY,
    MEAN_GAP,
    Engagement,
    Outcome,
    Shop,
    Visit,
    lognormal_cdf,
)
from learnloop.errors import ConfigurationError

VIEW_SHARE = 0.3  # of the visits that do not convert, the share that still takes the light step
MOBILE = "mobile"


@dataclass(frozen=True)
class FlagPreference:
    """What the shop's personas want of one flag (hidden from the service).

    ``appeal[persona][variant]`` is the chance of the conversion path; ``mobile_lift``
    adds to a variant's appeal on a phone. ``light``/``heavy`` name the two outcome
    types (a step and the conversion) and ``reward_map`` pays for them; ``values`` are
    the variants' flag values (``type`` as in a flag definition). ``variants`` lists the
    default first: the order of the automatic decision point's actions.
    """

    key: str
    type: str
    description: str
    values: Mapping[str, Any]
    default_variant: str
    appeal: Mapping[str, Mapping[str, float]]
    light: str = "detail_view"
    heavy: str = "basket_add"
    reward_map: Mapping[str, float] = field(
        default_factory=lambda: {"basket_add": 3.0, "detail_view": 1.0}
    )
    mobile_lift: Mapping[str, float] = field(default_factory=dict)

    @property
    def variants(self) -> tuple[str, ...]:
        rest = [v for v in self.values if v != self.default_variant]
        return (self.default_variant, *rest)

    def definition(
        self, holdout_share: float = 0.1, window_seconds: float = 20.0
    ) -> dict[str, Any]:
        """The ``PUT /v1/flags/{key}`` body of this flag, personalized for everyone over
        all its variants, with ``holdout_share`` of evaluations kept on the default."""
        return {
            "description": self.description,
            "type": self.type,
            "variants": dict(self.values),
            "default_variant": self.default_variant,
            "enabled": True,
            "rules": [{"name": "learn per persona", "personalized": list(self.variants)}],
            "holdout_share": holdout_share,
            "reward_map": dict(self.reward_map),
            "window_seconds": window_seconds,
            "aggregation": "max",
        }


CHECKOUT_LAYOUT = FlagPreference(
    key="checkout_layout",
    type="string",
    description="The checkout page's layout",
    values={"classic": "classic", "one_page": "one_page", "wizard": "wizard"},
    default_variant="classic",
    appeal={
        "visitor": {"classic": 0.20, "one_page": 0.12, "wizard": 0.50},
        "builder": {"classic": 0.30, "one_page": 0.72, "wizard": 0.28},
        "consultant": {"classic": 0.30, "one_page": 0.40, "wizard": 0.78},
        "shop_owner": {"classic": 0.32, "one_page": 0.82, "wizard": 0.22},
        "direct_customer": {"classic": 0.28, "one_page": 0.62, "wizard": 0.45},
    },
    light="checkout_step",
    heavy="order_placed",
    reward_map={"order_placed": 3.0, "checkout_step": 1.0},
    mobile_lift={"wizard": 0.05, "classic": -0.03},  # big steps suit a small screen
)

BULK_ORDER_FORM = FlagPreference(
    key="bulk_order_form",
    type="boolean",
    description="The bulk order form on product pages",
    values={"off": False, "on": True},
    default_variant="off",
    appeal={
        "visitor": {"off": 0.45, "on": 0.28},
        "builder": {"off": 0.35, "on": 0.45},
        "consultant": {"off": 0.38, "on": 0.60},
        "shop_owner": {"off": 0.30, "on": 0.82},
        "direct_customer": {"off": 0.42, "on": 0.30},
    },
    mobile_lift={"on": -0.05},  # a wide form is harder on a phone
)

FLAG_PREFERENCES: Mapping[str, FlagPreference] = {
    p.key: p for p in (CHECKOUT_LAYOUT, BULK_ORDER_FORM)
}


def preference_named(key: str) -> FlagPreference:
    """The simulated preferences of flag ``key``; a clear error listing the known flags."""
    try:
        return FLAG_PREFERENCES[key]
    except KeyError:
        raise ConfigurationError(
            f"the simulated shop has no preferences for flag {key!r}: "
            f"simulate one of {', '.join(sorted(FLAG_PREFERENCES))}"
        ) from None


def expected_max_reward(
    engagement: Engagement,
    window_seconds: float,
    heavy_reward: float,
    light_reward: float,
) -> float:
    """E[reward] of one exposure under ``max`` aggregation: outcomes count only inside the
    window; the conversion path brings the light step and the conversion (independent
    delays), the light path the step alone.

    A sure conversion is worth a little less than its 3 within a 20 s window (some
    conversions come later, and then the step alone counts):

    >>> round(expected_max_reward(Engagement(basket=1.0, view=0.0), 20.0, 3.0, 1.0), 3)
    2.686
    """
    counted = min(window_seconds, MAX_DELAY)
    in_light = lognormal_cdf(counted, *DETAIL_VIEW_DELAY)
    in_heavy = lognormal_cdf(counted, *BASKET_ADD_DELAY)
    if heavy_reward >= light_reward:
        best, second, p_best, p_second = heavy_reward, light_reward, in_heavy, in_light
    else:
        best, second, p_best, p_second = light_reward, heavy_reward, in_light, in_heavy
    conversion_path = best * p_best + second * (1.0 - p_best) * p_second
    return engagement.basket * conversion_path + engagement.view * light_reward * in_light


class FlagModel:
    """The shop's visits and how they respond to one flag's variants; seeded, pure.

    Parameters
    ----------
    flag:
        The flag's key (one of :data:`FLAG_PREFERENCES`) or a :class:`FlagPreference`.
    seed:
        Seeds the shop's population and traffic (as :class:`Shop`) and every outcome draw.
    window_seconds, reward_map:
        The flag's reward window and map (its decision point's); the map defaults to the
        preference's.
    """

    def __init__(
        self,
        flag: str | FlagPreference,
        seed: int = 7,
        window_seconds: float = 20.0,
        reward_map: Mapping[str, float] | None = None,
        mean_gap_seconds: float = MEAN_GAP,
        population: int = 2000,
    ) -> None:
        self.preference = preference_named(flag) if isinstance(flag, str) else flag
        self.seed = seed
        self.window_seconds = window_seconds
        self.reward_map = dict(reward_map if reward_map is not None else self.preference.reward_map)
        self.shop = Shop(seed, window_seconds, population, mean_gap_seconds=mean_gap_seconds)

    @property
    def variants(self) -> tuple[str, ...]:
        return self.preference.variants

    @property
    def default_variant(self) -> str:
        return self.preference.default_variant

    def visits(self, start: datetime, count: int) -> Iterator[Visit]:
        """The shop's visits (the same shoppers and times as :meth:`Shop.visits`)."""
        return self.shop.visits(start, count)

    def appeal(self, visit: Visit, variant: str) -> float:
        """The chance that this visit converts when shown ``variant``."""
        base = self.preference.appeal[visit.persona][variant]
        if visit.features.get("device") == MOBILE:
            base += self.preference.mobile_lift.get(variant, 0.0)
        return min(0.97, max(0.02, base))

    def engagement(self, visit: Visit, variant: str) -> Engagement:
        """The conversion path (``basket``) and the light-step-only path (``view``)."""
        if variant not in self.preference.values:
            raise ConfigurationError(
                f"the service served variant {variant!r} of {self.preference.key!r}; the "
                f"simulated shop knows only {', '.join(self.variants)}"
            )
        convert = self.appeal(visit, variant)
        return Engagement(basket=convert, view=(1.0 - convert) * VIEW_SHARE)

    def expected_reward(self, visit: Visit, variant: str) -> float:
        """E[reward | visit, variant] under the window and reward map (``max``)."""
        return expected_max_reward(
            self.engagement(visit, variant),
            self.window_seconds,
            self.reward_map.get(self.preference.heavy, 0.0),
            self.reward_map.get(self.preference.light, 0.0),
        )

    def expected_rewards(self, visit: Visit) -> dict[str, float]:
        """Expected reward of every variant in this visit."""
        return {v: self.expected_reward(visit, v) for v in self.variants}

    def oracle(self, visit: Visit) -> float:
        """Expected reward of the best variant (a policy that knows the hidden persona)."""
        return max(self.expected_rewards(visit).values())

    def best_variant(self, persona: str, mobile: bool = False) -> str:
        """The variant with the highest appeal for ``persona`` on that device."""
        lift = self.preference.mobile_lift if mobile else {}
        appeal = self.preference.appeal[persona]
        return max(self.variants, key=lambda v: appeal[v] + lift.get(v, 0.0))

    def outcomes(self, visit: Visit, variant: str) -> list[Outcome]:
        """Sample what the shopper does after seeing ``variant``, sorted by delay.

        The RNG is seeded by (seed, flag, visit index) only: every policy faces the same
        shopper luck whatever it serves (common random numbers), and runs replay exactly.
        """
        rng = random.Random(f"{self.seed}:{self.preference.key}:{visit.index}")
        e = self.engagement(visit, variant)
        draw = rng.random()
        light = Outcome(
            rng.lognormvariate(math.log(DETAIL_VIEW_DELAY[0]), DETAIL_VIEW_DELAY[1]),
            self.preference.light,
        )
        heavy = Outcome(
            rng.lognormvariate(math.log(BASKET_ADD_DELAY[0]), BASKET_ADD_DELAY[1]),
            self.preference.heavy,
        )
        if draw < e.basket:
            return sorted(o for o in (light, heavy) if o.delay <= MAX_DELAY)
        if draw < e.basket + e.view and light.delay <= MAX_DELAY:
            return [light]
        return []

    def realised_reward(self, outcomes: list[Outcome]) -> float:
        """The reward the join computes: max over outcomes inside the window, else 0."""
        values = [
            self.reward_map.get(o.type, 0.0) for o in outcomes if o.delay <= self.window_seconds
        ]
        return max(values, default=0.0)
