"""Seeded synthetic profiles with planted personas: for tests, benchmarks and a first look
at the pipeline before a shop has history.

The five planted groups follow the shop's personas (visitors browse and never order,
builders recruit, consultants order for others, shop owners buy big baskets, direct
customers buy a little for themselves); each group's features overlap the others' a
little, so a classifier has something to learn and cannot score perfectly by one rule.

>>> from datetime import UTC, datetime
>>> profiles, truth = planted_profiles(50, seed=1, now=datetime(2026, 1, 1, tzinfo=UTC))
>>> len(profiles), sorted(set(truth)) == sorted(PERSONAS)
(50, True)
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Final

from schemas.profiles import UserProfile

PERSONAS: Final = ("visitor", "builder", "consultant", "shop_owner", "direct_customer")
CATEGORIES: Final = ("skin", "hair", "home", "wellness", "starter_kits")
_FAVOURITE: Final = {
    "visitor": "skin",
    "builder": "starter_kits",
    "consultant": "wellness",
    "shop_owner": "home",
    "direct_customer": "hair",
}


def _profile(rng: random.Random, persona: str, user_id: str, now: datetime) -> UserProfile:
    if persona == "visitor":
        sessions, orders, basket, recruits, share = rng.randint(1, 4), 0, 0.0, 0, 0.0
        items_per = 0.0
    elif persona == "builder":
        sessions, orders = rng.randint(8, 30), rng.randint(2, 8)
        basket, recruits, share = rng.uniform(80, 220), rng.randint(3, 25), rng.uniform(0.05, 0.4)
        items_per = rng.uniform(2, 5)
    elif persona == "consultant":
        sessions, orders = rng.randint(6, 25), rng.randint(4, 15)
        basket, recruits, share = rng.uniform(60, 200), rng.randint(0, 2), rng.uniform(0.5, 0.95)
        items_per = rng.uniform(2, 6)
    elif persona == "shop_owner":
        sessions, orders = rng.randint(3, 15), rng.randint(3, 10)
        basket, recruits, share = rng.uniform(300, 900), rng.randint(0, 1), rng.uniform(0, 0.2)
        items_per = rng.uniform(10, 40)
    else:
        sessions, orders = rng.randint(1, 8), rng.randint(1, 3)
        basket, recruits, share = rng.uniform(20, 100), 0, rng.uniform(0, 0.05)
        items_per = rng.uniform(1, 3)
    items = round(items_per * orders)
    categories: dict[str, int] = {}
    for _ in range(items):
        name = _FAVOURITE[persona] if rng.random() < 0.6 else rng.choice(CATEGORIES)
        categories[name] = categories.get(name, 0) + 1
    last_order = now - timedelta(days=rng.uniform(1, 120)) if orders else None
    return UserProfile(
        user_id=user_id,
        first_seen=now - timedelta(days=rng.uniform(120, 700)),
        last_seen=now - timedelta(days=rng.uniform(0, 30)),
        last_order_at=last_order,
        sessions=sessions,
        detail_views=sessions * rng.randint(1, 6),
        basket_adds=orders + rng.randint(0, max(1, sessions // 2)),
        basket_value=round(basket * (orders + 1), 2),
        orders=orders,
        monetary=round(basket * orders, 2),
        items=items,
        categories=categories,
        orders_for_others=round(share * orders),
        recruits=recruits,
    )


def planted_profiles(
    n: int,
    seed: int,
    now: datetime,
    personas: tuple[str, ...] = PERSONAS,
) -> tuple[list[UserProfile], list[str]]:
    """``n`` profiles (pseudonymous ids ``u00000`` …) and each one's planted persona,
    the personas in equal shares, shuffled."""
    rng = random.Random(seed)
    truth = [personas[i % len(personas)] for i in range(n)]
    rng.shuffle(truth)
    profiles = [_profile(rng, p, f"u{i:05d}", now) for i, p in enumerate(truth)]
    return profiles, truth
