"""A synthetic multi-level-marketing shop: who visits, what they see, what they do.

Pure model, no I/O and no clock: the driver passes event times in. Five personas
(visitor, builder, consultant, shop owner, direct customer) visit the home page;
each visit carries observable behavioural features that correlate with the
persona (the persona itself stays hidden from the service) plus the page context
(category page, season, region). How likely a shopper is to look at products
(``detail_view``) or add one to the basket (``basket_add``) depends on persona,
context and the product block shown — the four actions of ``home_products`` — by
the shop's hidden rule (:mod:`devtools.simulator.rules`).
Outcomes arrive after lognormal delays, some after the reward window. A basket
add carries the basket's value, and with a persona-dependent probability a
``purchase`` of that value follows (:meth:`Shop.checkout`): no reward map counts it,
but the service's real-time profile updates apply it.

What a front end sends of a visit is :mod:`devtools.simulator.front_end`'s choice.

Because the probabilities and delay distributions are known, the expected reward
of every action in every visit is computed exactly: the best of them is the
*oracle*, their mean is *uniform random*.

>>> from datetime import UTC, datetime
>>> shop = Shop(seed=7)
>>> visit = next(shop.visits(datetime(2026, 1, 1, tzinfo=UTC), count=1))
>>> rewards = shop.expected_rewards(visit)
>>> sorted(rewards) == sorted(ACTIONS)
True
>>> shop.oracle(visit) == max(rewards.values())
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from devtools.simulator.rules import MLM, HiddenRule, rule_named
from learnloop.errors import ConfigurationError

ACTIONS: tuple[str, ...] = ("category1", "category2", "bestsellers", "trending")
"""The ``home_products`` actions: skincare block, nutrition block, bestsellers, trending."""

PERSONAS: tuple[str, ...] = ("visitor", "builder", "consultant", "shop_owner", "direct_customer")
SEASONS = ("winter", "spring", "summer", "autumn")
REGIONS = ("north", "south", "east", "west")
DEFAULT_REWARD_MAP: Mapping[str, float] = {"basket_add": 3.0, "detail_view": 1.0}
PERSONA_SHARE: Mapping[str, float] = MLM.persona_share  # the default shop's mix

# Outcome delays after the decision: lognormal, given as (median seconds, sigma).
DETAIL_VIEW_DELAY = (4.0, 0.9)
BASKET_ADD_DELAY = (8.0, 0.9)
MEAN_GAP = 0.125  # seconds of event time between visits, on average (8 visits a second)
MAX_DELAY = 120.0  # the session is over: nothing happens later (keeps events < 5 min ahead)
TICK_MARGIN = 10.0  # the closing clock tick comes this long after the latest possible outcome
FUTURE_LIMIT = 300.0  # the service refuses event times further ahead of its clock than this

CHECKOUT_DELAY = (6.0, 0.8)  # a purchase after its basket add: lognormal (median s, sigma)
PURCHASE_RATE: Mapping[str, float] = {  # P(purchase | basket add), by persona
    "visitor": 0.25,
    "builder": 0.6,
    "consultant": 0.75,
    "shop_owner": 0.8,
    "direct_customer": 0.5,
}
TYPICAL_ORDER: Mapping[str, float] = {  # order value of a shopper without an avg_basket
    "visitor": 45.0,
    "builder": 150.0,
    "consultant": 130.0,
    "shop_owner": 600.0,
    "direct_customer": 60.0,
}
ORDER_SPREAD = 0.25  # sigma of the lognormal spread of one order around the shopper's mean


@dataclass(frozen=True)
class Shopper:
    """One person with stable behavioural features; ``user_id`` is None when anonymous."""

    persona: str
    user_id: str | None
    features: Mapping[str, str | float | bool]


@dataclass(frozen=True)
class Visit:
    """One home-page visit: a session with one ``home_products`` decision."""

    index: int
    timestamp: datetime
    session_id: str
    shopper: Shopper
    features: Mapping[str, str | float | bool]

    @property
    def persona(self) -> str:
        return self.shopper.persona


@dataclass(frozen=True)
class Engagement:
    """Probabilities of a visit's two outcome paths for one action.

    ``basket``: a detail view and a basket add (independent delays);
    ``view``: a detail view only; otherwise nothing happens.
    """

    basket: float
    view: float


@dataclass(frozen=True, order=True)
class Outcome:
    """Something the shopper did, ``delay`` seconds after the decision (``value``: a
    basket add's or purchase's money value, if any)."""

    delay: float
    type: str = field(compare=False)
    value: float | None = field(default=None, compare=False)


def order_value(rng: random.Random, shopper: Shopper) -> float:
    """One order's (or basket's) value: the shopper's ``avg_basket`` with a lognormal spread,
    or the persona's typical order for a shopper with none (anonymous, no orders yet)."""
    mean = float(shopper.features.get("avg_basket", 0.0)) or TYPICAL_ORDER[shopper.persona]
    return round(mean * rng.lognormvariate(-(ORDER_SPREAD**2) / 2, ORDER_SPREAD), 2)


def lognormal_cdf(x: float, median: float, sigma: float) -> float:
    """P(delay <= x) for a lognormal delay with this median and sigma.

    >>> round(lognormal_cdf(4.0, 4.0, 0.9), 3)
    0.5
    """
    if x <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf(math.log(x / median) / (sigma * math.sqrt(2.0))))


def closing_tick_delay(window: float) -> float:
    """Seconds after the last decision for the run's closing clock tick: 60 s past the
    last window, and past every outcome's time plus :data:`TICK_MARGIN`, so the join
    also settles the follow-ups it holds briefly (skew tolerance) for the last visits.

    >>> closing_tick_delay(20.0), closing_tick_delay(100.0)
    (130.0, 160.0)
    """
    return max(window + 60.0, MAX_DELAY + TICK_MARGIN)


def plan_event_time(
    decisions: int,
    mean_gap: float,
    window: float,
    now: datetime,
    stream_time: datetime | None = None,
) -> tuple[datetime, float]:
    """Where a run's event time starts, and its mean gap between visits.

    By default the whole run, its outcomes and its final clock tick lie before
    ``now``. If the service's ``stream_time`` is already later (a previous run),
    windows behind it would close at once, so the run starts just after it and
    packs its visits closer to finish inside the service's future limit.

    >>> from datetime import UTC, datetime, timedelta
    >>> now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> start, gap = plan_event_time(20000, 0.125, 20.0, now)
    >>> gap, round((now - start).total_seconds() / 60)
    (0.125, 45)
    >>> start, gap = plan_event_time(20000, 0.125, 20.0, now, now - timedelta(minutes=1))
    >>> start > now - timedelta(minutes=1), round(gap, 4)
    (True, 0.0097)
    """
    # Gaps are uniform in [0.4, 1.6] x the mean: the mean span plus ten standard deviations.
    per_gap = decisions + 10 * 0.35 * math.sqrt(decisions)
    tail = closing_tick_delay(window)  # last outcomes and the closing clock tick
    start = now - timedelta(seconds=per_gap * mean_gap + tail + 30.0)
    if stream_time is None or stream_time < start:
        return start, mean_gap
    start = stream_time + timedelta(seconds=1)
    room = (now - start).total_seconds() + FUTURE_LIMIT - tail - 30.0
    gap = min(mean_gap, room / per_gap)
    if gap < 0.005:
        raise ConfigurationError(
            f"the service's event time is already at {stream_time.isoformat()}: {decisions} "
            "decisions no longer fit before its future limit. Run fewer decisions, wait a few "
            "minutes, or start the service on a fresh data dir."
        )
    return start, gap


def _bucket(value: float, edges: tuple[float, ...], names: tuple[str, ...]) -> str:
    """The bucket ``value`` falls in: a categorical twin of a number, for VW interactions."""
    for edge, name in zip(edges, names, strict=False):
        if value < edge:
            return name
    return names[-1]


def _shopper(rng: random.Random, persona: str, user_id: str | None) -> Shopper:
    """Behavioural features typical of ``persona``, with overlap so none is a give-away."""
    tail = rng.random() < 0.12  # an atypical member of the persona
    if persona == "visitor":
        visits, orders, basket, recruits, share = rng.randint(0, 3), 0, 0.0, 0, 0.0
    elif persona == "builder":
        visits, orders = rng.randint(8, 30), rng.randint(2, 8)
        basket = rng.uniform(80, 220)
        recruits = rng.randint(1, 2) if tail else rng.randint(3, 25)
        share = rng.uniform(0.05, 0.4)
    elif persona == "consultant":
        visits, orders = rng.randint(6, 25), rng.randint(4, 15)
        basket = rng.uniform(60, 200)
        recruits = rng.randint(0, 2)
        share = rng.uniform(0.15, 0.45) if tail else rng.uniform(0.5, 0.95)
    elif persona == "shop_owner":
        visits, orders = rng.randint(3, 15), rng.randint(3, 10)
        basket = rng.uniform(150, 300) if tail else rng.uniform(300, 900)
        recruits = rng.randint(0, 1)
        share = rng.uniform(0.0, 0.2)
    else:  # direct customer
        visits, orders = rng.randint(1, 8), rng.randint(0, 3)
        basket = rng.uniform(150, 280) if tail else rng.uniform(20, 100)
        recruits, share = 0, rng.uniform(0.0, 0.05)
    if user_id is None and persona != "visitor":
        orders, basket, recruits, share = 0, 0.0, 0, 0.0  # logged out: only the cookie's visits
    features: dict[str, str | float | bool] = {
        "visits_30d": float(visits),
        "orders_90d": float(orders),
        "avg_basket": round(basket, 2),
        "recruits": float(recruits),
        "orders_for_others_share": round(share, 3),
        "visits_bucket": _bucket(visits, (1, 4, 10), ("0", "1-3", "4-9", "10+")),
        "orders_bucket": _bucket(orders, (1, 4), ("0", "1-3", "4+")),
        "basket_bucket": _bucket(basket, (1, 100, 300), ("0", "<100", "100-299", "300+")),
        "recruits_bucket": _bucket(recruits, (1, 3), ("0", "1-2", "3+")),
        "others_share_bucket": _bucket(share, (0.05, 0.5), ("none", "some", "most")),
        "logged_in": user_id is not None,
        "region": rng.choice(REGIONS),
        "device": "desktop" if rng.random() < (0.3 if persona == "visitor" else 0.6) else "mobile",
    }
    return Shopper(persona=persona, user_id=user_id, features=features)


class Shop:
    """The shop's population, traffic and response model; seeded and reproducible.

    Parameters
    ----------
    seed:
        Seeds the population, the traffic and every outcome draw.
    window_seconds:
        The reward window the expected rewards are computed for (the service's).
    population:
        Number of known (logged-in) shoppers to draw returning visits from.
    reward_map:
        Outcome type -> reward value (default ``basket_add`` 3, ``detail_view`` 1);
        rewards aggregate with ``max``.
    rule:
        The hidden reward rule by name (:mod:`devtools.simulator.rules`): ``mlm``,
        the project's own shop, or ``seasons``, the held-out one.
    """

    def __init__(
        self,
        seed: int = 7,
        window_seconds: float = 20.0,
        population: int = 2000,
        reward_map: Mapping[str, float] | None = None,
        mean_gap_seconds: float = MEAN_GAP,
        rule: str = "mlm",
    ) -> None:
        self.seed = seed
        self.rule: HiddenRule = rule_named(rule)
        self.window_seconds = window_seconds
        self.population = population
        self.reward_map = dict(reward_map or DEFAULT_REWARD_MAP)
        self.mean_gap_seconds = mean_gap_seconds
        rng = random.Random(f"{seed}:population")
        known = PERSONAS[1:]
        self._known: dict[str, list[Shopper]] = {p: [] for p in known}
        for number in range(population):
            persona = rng.choices(known, weights=[self.rule.persona_share[p] for p in known])[0]
            self._known[persona].append(_shopper(rng, persona, f"sim-u{seed}-{number}"))

    def known_shoppers(self) -> list[Shopper]:
        """Every logged-in shopper of the population, in the order of their user ids."""
        everyone = [s for shoppers in self._known.values() for s in shoppers]
        return sorted(everyone, key=lambda s: int(str(s.user_id).rpartition("-")[2]))

    def visits(self, start: datetime, count: int) -> Iterator[Visit]:
        """``count`` visits with increasing event times from ``start`` (gaps 0.4-1.6 x the mean)."""
        rng = random.Random(f"{self.seed}:visits")
        now = start
        personas, weights = list(PERSONAS), [self.rule.persona_share[p] for p in PERSONAS]
        for index in range(count):
            now += timedelta(seconds=rng.uniform(0.4, 1.6) * self.mean_gap_seconds)
            persona = rng.choices(personas, weights=weights)[0]
            if (
                persona == "visitor"
                or not self._known[persona]
                or (
                    persona == "direct_customer" and rng.random() < 0.2  # browsing logged out
                )
            ):
                shopper = _shopper(rng, persona, None)
            else:
                shopper = rng.choice(self._known[persona])
            pages = ("home", "skincare", "nutrition")
            page_weights = (
                (0.6, 0.2, 0.2) if persona in ("visitor", "shop_owner") else (0.3, 0.35, 0.35)
            )
            features = dict(shopper.features)
            features["category_page"] = rng.choices(pages, weights=page_weights)[0]
            features["season"] = rng.choice(SEASONS)
            yield Visit(index, now, f"sim-s{self.seed}-{index}", shopper, features)

    # --- what they do -----------------------------------------------------------------

    def engagement(self, visit: Visit, action: str) -> Engagement:
        """Probabilities of the basket path and the view-only path for ``action``."""
        appeal = self.rule.appeal(visit.persona, visit.features)[ACTIONS.index(action)]
        basket = self.rule.buy_rate[visit.persona] * appeal
        view = (1.0 - basket) * (0.08 + 0.4 * appeal)
        return Engagement(basket=basket, view=view)

    def expected_reward(self, visit: Visit, action: str) -> float:
        """E[reward | visit, action]: outcomes count only if they land inside the window."""
        e = self.engagement(visit, action)
        counted = min(self.window_seconds, MAX_DELAY)
        in_view = lognormal_cdf(counted, *DETAIL_VIEW_DELAY)
        in_basket = lognormal_cdf(counted, *BASKET_ADD_DELAY)
        r_view, r_basket = (
            self.reward_map.get("detail_view", 0.0),
            self.reward_map.get("basket_add", 0.0),
        )
        best, second = max(r_basket, r_view), min(r_basket, r_view)
        p_best = in_basket if r_basket >= r_view else in_view
        p_second = in_view if r_basket >= r_view else in_basket
        basket_path = best * p_best + second * (1.0 - p_best) * p_second  # max aggregation
        return e.basket * basket_path + e.view * r_view * in_view

    def expected_rewards(self, visit: Visit) -> dict[str, float]:
        """Expected reward of every action in this visit."""
        return {a: self.expected_reward(visit, a) for a in ACTIONS}

    def oracle(self, visit: Visit) -> float:
        """Expected reward of the best action (a policy that knows the hidden persona)."""
        return max(self.expected_rewards(visit).values())

    def uniform(self, visit: Visit) -> float:
        """Expected reward of choosing uniformly at random."""
        rewards = self.expected_rewards(visit)
        return math.fsum(rewards.values()) / len(rewards)

    def outcomes(self, visit: Visit, action: str) -> list[Outcome]:
        """Sample what the shopper does after seeing ``action``, sorted by delay.

        The draw uses an RNG seeded by (seed, visit index) only, so every policy
        faces the same shopper luck (common random numbers) and runs replay exactly.
        """
        rng = random.Random(f"{self.seed}:{visit.index}")
        e = self.engagement(visit, action)
        draw = rng.random()
        view = Outcome(
            rng.lognormvariate(math.log(DETAIL_VIEW_DELAY[0]), DETAIL_VIEW_DELAY[1]), "detail_view"
        )
        basket = Outcome(
            rng.lognormvariate(math.log(BASKET_ADD_DELAY[0]), BASKET_ADD_DELAY[1]), "basket_add"
        )
        if draw < e.basket:
            return sorted(o for o in (view, basket) if o.delay <= MAX_DELAY)
        if draw < e.basket + e.view and view.delay <= MAX_DELAY:
            return [view]
        return []

    def checkout(self, visit: Visit, outcomes: list[Outcome]) -> list[Outcome]:
        """``outcomes`` with the basket add's value, and the ``purchase`` that may follow it.

        Drawn from an RNG of its own per visit, so the draws of :meth:`outcomes` (and
        hence every reward) are the same with or without checkouts.
        """
        basket = next((o for o in outcomes if o.type == "basket_add"), None)
        if basket is None:
            return list(outcomes)
        rng = random.Random(f"{self.seed}:{visit.index}:checkout")
        value = order_value(rng, visit.shopper)
        buys = rng.random() < PURCHASE_RATE[visit.persona]
        paid = basket.delay + rng.lognormvariate(math.log(CHECKOUT_DELAY[0]), CHECKOUT_DELAY[1])
        out = [Outcome(o.delay, o.type, value if o is basket else None) for o in outcomes]
        if buys and paid <= MAX_DELAY:
            out.append(Outcome(paid, "purchase", value))
        return sorted(out)

    def realised_reward(self, outcomes: list[Outcome]) -> float:
        """The reward the join computes: max over outcomes inside the window, else 0."""
        values = [
            self.reward_map.get(o.type, 0.0) for o in outcomes if o.delay <= self.window_seconds
        ]
        return max(values, default=0.0)
