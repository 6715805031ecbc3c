"""The shop's own books: a seeded 90-day history per known shopper, and its export.

After each closing a real shop hands learnloop its customers' profiles (``learnloop
personas import-profiles FILE``). :func:`shop_history` writes that history for the
simulated shop: every logged-in shopper's sessions, detail views, basket adds,
orders (value, items, category, placed for someone else or not) and recruits over
the :data:`HISTORY_DAYS` before the closing. It *realises* the behavioural features
:func:`devtools.simulator.shop._shopper` drew for the shopper's hidden persona: the
number of orders is ``orders_90d``, their mean value ``avg_basket``, the share placed
for others rounds ``orders_for_others_share``, the recruits are ``recruits`` and the
sessions about three times ``visits_30d``. So the profile the service imports
carries the same persona signal as the ``full`` front-end context.

:func:`write_profiles` exports the profiles as CSV or Parquet, columns named like
:class:`schemas.profiles.UserProfile`'s fields (``categories`` as a JSON object, times
as ISO 8601 in UTC), ``user_id`` the shop's real id (the service pseudonymizes it on
import). The truth (user id -> persona) goes to a separate file
(:func:`write_truth`): measuring only, never imported. Anonymous visitors have no
profile.

>>> from datetime import UTC, datetime
>>> from devtools.simulator.shop import Shop
>>> shop = Shop(seed=7, population=50)
>>> books = shop_history(shop, datetime(2026, 1, 1, tzinfo=UTC))
>>> len(books), books[0].user_id, books[0].profile().orders == len(books[0].orders)
(50, 'sim-u7-0', True)
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.simulator.shop import Shop, Shopper, order_value
from learnloop.errors import InvalidInput
from schemas.profiles import UserProfile

HISTORY_DAYS = 90
"""How far back the books go before the closing (``orders_90d`` counts these days)."""

CATEGORIES: tuple[str, ...] = ("skincare", "nutrition", "home_care", "starter_kits")
UNIT_PRICE: Mapping[str, float] = {  # a typical item's price, by category
    "skincare": 32.0,
    "nutrition": 45.0,
    "home_care": 18.0,
    "starter_kits": 120.0,
}
CATEGORY_MIX: Mapping[str, tuple[float, float, float, float]] = {  # in CATEGORIES order
    "builder": (0.2, 0.35, 0.05, 0.4),  # starter kits for the recruits
    "consultant": (0.45, 0.4, 0.15, 0.0),
    "shop_owner": (0.3, 0.3, 0.4, 0.0),  # restocks every shelf
    "direct_customer": (0.5, 0.35, 0.15, 0.0),
}
PROFILE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "first_seen",
    "last_seen",
    "last_order_at",
    "sessions",
    "detail_views",
    "basket_adds",
    "basket_value",
    "orders",
    "monetary",
    "items",
    "categories",
    "orders_for_others",
    "recruits",
)
"""The exported columns: the bulk fields of a profile, keyed by the shop's user id."""
TIME_COLUMNS = ("first_seen", "last_seen", "last_order_at")
FORMATS = ("csv", "parquet")
CLOSING_LEAD = timedelta(hours=1)
"""How long before now an export closes its books: a run started afterwards begins its
event time up to ~45 minutes back (20,000 decisions), still after the closing."""


@dataclass(frozen=True)
class Order:
    """One order in the books."""

    timestamp: datetime
    value: float
    items: int
    category: str
    for_others: bool


@dataclass(frozen=True)
class BasketAdd:
    """One product put in the basket (ordered later or abandoned)."""

    timestamp: datetime
    value: float
    category: str


@dataclass(frozen=True)
class ShopperHistory:
    """One known shopper's books over the history window, with the hidden truth."""

    user_id: str
    persona: str
    first_seen: datetime
    sessions: tuple[datetime, ...]
    detail_views: int
    basket_adds: tuple[BasketAdd, ...]
    orders: tuple[Order, ...]
    recruits: int

    def profile(self) -> UserProfile:
        """The profile the shop would import for this shopper (real id, no label)."""
        categories: Counter[str] = Counter()
        for order in self.orders:
            categories[order.category] += order.items
        return UserProfile(
            user_id=self.user_id,
            first_seen=self.first_seen,
            last_seen=max(self.sessions, default=None),
            last_order_at=max((o.timestamp for o in self.orders), default=None),
            sessions=len(self.sessions),
            detail_views=self.detail_views,
            basket_adds=len(self.basket_adds),
            basket_value=round(sum(b.value for b in self.basket_adds), 2),
            orders=len(self.orders),
            monetary=round(sum(o.value for o in self.orders), 2),
            items=sum(o.items for o in self.orders),
            categories=dict(sorted(categories.items())),
            orders_for_others=sum(o.for_others for o in self.orders),
            recruits=self.recruits,
        )


def _split(rng: random.Random, total: float, parts: int) -> list[float]:
    """``total`` split into ``parts`` positive values that add up to it (to the cent)."""
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    values = [round(total * w / sum(weights), 2) for w in weights]
    values[-1] = round(total - sum(values[:-1]), 2)
    return values


def shopper_history(seed: int, shopper: Shopper, closing: datetime) -> ShopperHistory:
    """The books of one known shopper, seeded by (seed, user id): the same shopper gets
    the same history whatever the population around them."""
    if shopper.user_id is None:
        raise InvalidInput("an anonymous shopper has no history: only known shoppers do")
    rng = random.Random(f"{seed}:history:{shopper.user_id}")
    f = shopper.features
    n_orders, recruits = int(f["orders_90d"]), int(f["recruits"])
    window = timedelta(days=HISTORY_DAYS).total_seconds()
    n_sessions = max(n_orders, 1, round(3 * float(f["visits_30d"]) * rng.uniform(0.8, 1.2)))
    sessions = sorted(
        closing - timedelta(seconds=rng.uniform(0.0, window)) for _ in range(n_sessions)
    )
    detail_views = sum(rng.randint(1, 5) for _ in sessions)
    values = [order_value(rng, shopper) for _ in range(n_orders)]
    if values:  # the books' mean order value is the shopper's avg_basket, to the cent
        mean = float(f["avg_basket"]) or sum(values) / len(values)
        values = [round(v * mean * len(values) / sum(values), 2) for v in values]
    for_others = set(
        rng.sample(range(n_orders), round(n_orders * float(f["orders_for_others_share"])))
    )
    mix = CATEGORY_MIX[shopper.persona]
    ordered_in = rng.sample(range(n_sessions), n_orders)
    orders: list[Order] = []
    adds: list[BasketAdd] = []
    for number, (session, value) in enumerate(zip(sorted(ordered_in), values, strict=True)):
        at = sessions[session]
        category = rng.choices(CATEGORIES, weights=mix)[0]
        items = max(1, round(value / (UNIT_PRICE[category] * rng.uniform(0.8, 1.25))))
        orders.append(Order(at, value, items, category, number in for_others))
        clicks = 1 + rng.randint(0, min(items - 1, 3))
        adds.extend(BasketAdd(at, v, category) for v in _split(rng, value, clicks))
    for session in set(range(n_sessions)) - set(ordered_in):
        if rng.random() < 0.25:  # an abandoned basket
            category = rng.choices(CATEGORIES, weights=mix)[0]
            price = round(UNIT_PRICE[category] * rng.uniform(0.8, 1.25), 2)
            adds.append(BasketAdd(sessions[session], price, category))
    first_seen = sessions[0] - timedelta(days=rng.uniform(0.0, 640.0))
    return ShopperHistory(
        user_id=shopper.user_id,
        persona=shopper.persona,
        first_seen=first_seen,
        sessions=tuple(sessions),
        detail_views=detail_views,
        basket_adds=tuple(sorted(adds, key=lambda b: b.timestamp)),
        orders=tuple(orders),
        recruits=recruits,
    )


def shop_history(shop: Shop, closing: datetime) -> list[ShopperHistory]:
    """The books of every known shopper of ``shop`` as of ``closing``, in user-id order."""
    if closing.tzinfo is None:
        raise InvalidInput("closing must be timezone-aware (UTC)")
    return [shopper_history(shop.seed, s, closing) for s in shop.known_shoppers()]


def truth(histories: Iterable[ShopperHistory]) -> dict[str, str]:
    """The hidden persona of every shopper in the books: user id -> persona."""
    return {h.user_id: h.persona for h in histories}


def profile_rows(histories: Iterable[ShopperHistory]) -> list[dict[str, Any]]:
    """One export row per shopper: :data:`PROFILE_COLUMNS`, the values as in the profile."""
    return [h.profile().model_dump(include=set(PROFILE_COLUMNS)) for h in histories]


def _format_of(path: Path, format: str | None) -> str:
    chosen = format or path.suffix.lstrip(".").lower()
    if chosen not in FORMATS:
        raise InvalidInput(
            f"cannot tell the export format of {path}: name the file .csv or .parquet"
        )
    return chosen


def write_profiles(
    path: Path, histories: Sequence[ShopperHistory], format: str | None = None
) -> int:
    """Write the profiles table the shop would import; the number of rows written.

    ``format`` is ``csv`` or ``parquet`` (default: from the file's suffix). In both,
    ``categories`` is a JSON object text (``{"skincare": 4}``); times are UTC, as
    ISO 8601 text in CSV and ``timestamp[us, UTC]`` in Parquet; an empty CSV cell or a
    Parquet null is a time that never happened (no order yet).
    """
    chosen = _format_of(path, format)
    rows = profile_rows(histories)
    for row in rows:
        row["categories"] = json.dumps(row["categories"], sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if chosen == "csv":
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=PROFILE_COLUMNS)
            writer.writeheader()
            for row in rows:
                for name in TIME_COLUMNS:
                    row[name] = "" if row[name] is None else row[name].isoformat()
                writer.writerow(row)
        return len(rows)
    import pyarrow as pa  # only a Parquet export needs it
    import pyarrow.parquet as pq

    ints = ("sessions", "detail_views", "basket_adds", "orders", "items")
    types: dict[str, Any] = {name: pa.int64() for name in (*ints, "orders_for_others", "recruits")}
    types |= {name: pa.timestamp("us", tz="UTC") for name in TIME_COLUMNS}
    types |= {"user_id": pa.string(), "categories": pa.string()}
    types |= {"basket_value": pa.float64(), "monetary": pa.float64()}
    schema = pa.schema([(name, types[name]) for name in PROFILE_COLUMNS])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return len(rows)


def write_truth(path: Path, histories: Iterable[ShopperHistory]) -> int:
    """Write the ground truth (``user_id,persona`` CSV), kept apart from the profiles."""
    answers = truth(histories)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("user_id", "persona"))
        writer.writerows(sorted(answers.items()))
    return len(answers)


def read_truth(path: Path) -> dict[str, str]:
    """The ground truth written by :func:`write_truth`."""
    with path.open(newline="", encoding="utf-8") as source:
        return {row["user_id"]: row["persona"] for row in csv.DictReader(source)}


@dataclass(frozen=True)
class HistoryExport:
    """What :func:`export_history` wrote."""

    profiles: int
    truth: Path
    closing: datetime


def export_history(
    path: Path,
    truth_path: Path | None = None,
    *,
    seed: int = 7,
    rule: str = "mlm",
    closing: datetime | None = None,
    now: datetime | None = None,
) -> HistoryExport:
    """Write the books of ``Shop(seed, rule=rule)`` to ``path`` and the truth beside them.

    The books close at ``closing`` (default: :data:`CLOSING_LEAD` before ``now``, the
    current time), so a simulated run with the same seed afterwards meets the same
    shoppers after their history. The truth goes to ``truth_path`` (default:
    ``<path stem>.truth.csv`` next to ``path``).
    """
    chosen = _format_of(path, None)
    closing = closing or (now or datetime.now(UTC)) - CLOSING_LEAD
    books = shop_history(Shop(seed, rule=rule), closing)
    truth_path = truth_path or path.with_name(f"{path.stem}.truth.csv")
    if truth_path.resolve() == path.resolve():
        raise InvalidInput(f"the truth must go to another file than the profiles ({path})")
    written = write_profiles(path, books, chosen)
    write_truth(truth_path, books)
    return HistoryExport(profiles=written, truth=truth_path, closing=closing)
