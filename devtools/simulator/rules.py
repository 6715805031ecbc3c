"""The shops' hidden reward rules: who visits, and how much each block appeals to them.

A rule is the part of the simulated shop the service must learn and never sees:
the persona mix, how readily each persona buys, and the appeal of each of the
four ``home_products`` blocks given the persona and the visit's features. The
behavioural features that betray the persona are the same in every rule
(:func:`devtools.simulator.shop._shopper`); only what the personas want changes.

- ``mlm`` (the default, the shop the defaults were first tuned on): mostly one
  block per persona, plus a seasonal consultant and a category page that matters
  for visitors and direct customers.
- ``seasons`` (written to check the chosen defaults on a rule they were *not*
  tuned on): a different persona mix, and almost every persona's best block
  depends on a second context feature (season, device, region or page), so the
  signal sits in three-way interactions behavioural feature x context x action.

>>> sorted(RULES)
['mlm', 'seasons']
>>> len(RULES["seasons"].appeal("builder", {"season": "summer", "device": "mobile",
...     "region": "north", "category_page": "home"}))
4
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from learnloop.errors import ConfigurationError

Features = Mapping[str, str | float | bool]


@dataclass(frozen=True)
class HiddenRule:
    """What one simulated shop's personas want; ``appeal`` maps (persona, features) to
    the appeal of each action, in ``ACTIONS`` order, each in [0.02, 0.97]."""

    name: str
    persona_share: Mapping[str, float]
    buy_rate: Mapping[str, float]
    appeal: Callable[[str, Features], list[float]]


def _clip(appeal: list[float]) -> list[float]:
    return [min(0.97, max(0.02, a)) for a in appeal]


# --- mlm: the project's own shop -------------------------------------------------------

MLM_BASE_APPEAL: Mapping[str, tuple[float, float, float, float]] = {
    "visitor": (0.08, 0.08, 0.8, 0.25),  # newcomers trust what others buy
    "builder": (0.06, 0.06, 0.15, 0.9),  # new launches to show their recruits
    "consultant": (0.12, 0.12, 0.08, 0.08),  # seasonal: see _mlm_appeal
    "shop_owner": (0.05, 0.05, 0.9, 0.2),  # restock what resells
    "direct_customer": (0.1, 0.1, 0.45, 0.2),  # the category they came for: see _mlm_appeal
}


def _mlm_appeal(persona: str, f: Features) -> list[float]:
    appeal = list(MLM_BASE_APPEAL[persona])
    page, season, region = f["category_page"], f["season"], f["region"]
    if persona == "consultant":
        # Customers order skincare in the cold months and nutrition in the warm ones.
        seasonal = 0 if season in ("winter", "autumn") else 1
        appeal[seasonal] = 0.92
    elif persona == "direct_customer" and page != "home":
        appeal[0 if page == "skincare" else 1] = 0.88
    elif persona == "visitor" and page != "home":
        appeal[0 if page == "skincare" else 1] += 0.3
    if region == "north":
        appeal[0] += 0.08  # dry, cold air: skincare sells a little better
    elif region == "south":
        appeal[1] += 0.08
    if season == "summer":
        appeal[3] += 0.05  # summer launches
    return _clip(appeal)


MLM = HiddenRule(
    name="mlm",
    persona_share={
        "visitor": 0.30,
        "builder": 0.10,
        "consultant": 0.20,
        "shop_owner": 0.15,
        "direct_customer": 0.25,
    },
    buy_rate={
        "visitor": 0.75,
        "builder": 0.9,
        "consultant": 0.92,
        "shop_owner": 0.92,
        "direct_customer": 0.88,
    },
    appeal=_mlm_appeal,
)


# --- seasons: the held-out rule ----------------------------------------------------------

WARM = ("spring", "summer")


def _seasons_appeal(persona: str, f: Features) -> list[float]:
    appeal = [0.1, 0.1, 0.1, 0.1]
    season, device, region, page = f["season"], f["device"], f["region"], f["category_page"]
    warm = season in WARM
    if persona == "visitor":
        # On the phone they scroll what is new; at a desk they compare best sellers.
        appeal[3 if device == "mobile" else 2] = 0.75
    elif persona == "builder":
        # Launch season for recruits in the warm months; the new-year nutrition
        # challenge in the cold ones.
        appeal[3 if warm else 1] = 0.9
    elif persona == "consultant":
        # Their customers' climate decides: skincare up north and east, nutrition elsewhere.
        appeal[0 if region in ("north", "east") else 1] = 0.88
    elif persona == "shop_owner":
        # Holiday restocking of best sellers when cold, bulk nutrition for summer.
        appeal[2 if not warm else 1] = 0.9
        appeal[3] = 0.2
    else:  # direct customer: the page they came from, otherwise what is new in summer
        if page == "home":
            appeal[3 if season == "summer" else 2] = 0.55
        else:
            appeal[0 if page == "skincare" else 1] = 0.8
    return _clip(appeal)


SEASONAL = HiddenRule(
    name="seasons",
    persona_share={
        "visitor": 0.20,
        "builder": 0.20,
        "consultant": 0.15,
        "shop_owner": 0.25,
        "direct_customer": 0.20,
    },
    buy_rate={
        "visitor": 0.7,
        "builder": 0.9,
        "consultant": 0.9,
        "shop_owner": 0.95,
        "direct_customer": 0.85,
    },
    appeal=_seasons_appeal,
)

RULES: Mapping[str, HiddenRule] = {rule.name: rule for rule in (MLM, SEASONAL)}


def rule_named(name: str) -> HiddenRule:
    """The hidden rule called ``name``; a clear error listing the others."""
    try:
        return RULES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown simulated shop {name!r}: choose one of {', '.join(sorted(RULES))}"
        ) from None
