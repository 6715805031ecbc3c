"""Deterministic logged-in traffic for the profile tests: decisions of a few users and their
outcomes over HTTP, with the profile totals the acknowledged requests imply."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

USERS = 7


@dataclass
class ProfileTraffic:
    """Decision n belongs to ``user{n % USERS}`` in session ``s{n % 20}``; every decision
    gets a detail view, every second a basket add of value 2, every fifth a purchase of 10."""

    base_url: str
    start: datetime
    headers: dict[str, str] = field(default_factory=dict)
    views: Counter[str] = field(default_factory=Counter)
    baskets: Counter[str] = field(default_factory=Counter)
    purchases: Counter[str] = field(default_factory=Counter)
    sessions: set[tuple[str, str]] = field(default_factory=set)

    def user(self, n: int) -> str:
        return f"user{n % USERS}"

    def time(self, n: int) -> datetime:
        return self.start + timedelta(seconds=0.25 * n)

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
        for attempt in range(20):  # a killed process's request is resent with the same id
            try:
                response = await client.post(path, json=body, headers=self.headers)
                if response.status_code < 500:
                    response.raise_for_status()
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError(f"{path} kept failing")

    async def one(self, client: httpx.AsyncClient, n: int) -> None:
        user, session = self.user(n), f"s{n % 20}"
        decision = {
            "decision_point": "home_products",
            "event_id": f"d{n}",
            "timestamp": self.time(n).isoformat(),
            "context": {"user_id": user, "session_id": session},
        }
        await self._post(client, "/v1/decisions", decision)
        self.sessions.add((user, session))
        kinds: list[tuple[str, float | None]] = [("detail_view", None)]
        if n % 2 == 0:
            kinds.append(("basket_add", 2.0))
        if n % 5 == 0:
            kinds.append(("purchase", 10.0))
        for kind, value in kinds:
            body: dict[str, Any] = {
                "outcome_id": f"o{n}-{kind}",
                "event_id": f"d{n}",
                "type": kind,
                "timestamp": (self.time(n) + timedelta(seconds=1)).isoformat(),
            }
            if value is not None:
                body["value"] = value
            await self._post(client, "/v1/outcomes", body)
            {"detail_view": self.views, "basket_add": self.baskets, "purchase": self.purchases}[
                kind
            ][user] += 1

    async def run(self, first: int, last: int, concurrency: int = 8) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
            for chunk in range(first, last, concurrency):
                await asyncio.gather(
                    *(self.one(client, n) for n in range(chunk, min(chunk + concurrency, last)))
                )

    def expected(self, user: str) -> dict[str, float]:
        """The profile fields the acknowledged traffic implies for ``user``."""
        return {
            "sessions": sum(1 for u, _ in self.sessions if u == user),
            "detail_views": self.views[user],
            "basket_adds": self.baskets[user],
            "basket_value": 2.0 * self.baskets[user],
            "orders": self.purchases[user],
            "monetary": 10.0 * self.purchases[user],
        }


def observed(profile: dict[str, Any] | None) -> dict[str, float] | None:
    if profile is None:
        return None
    keys = ("sessions", "detail_views", "basket_adds", "basket_value", "orders", "monetary")
    return {k: profile[k] for k in keys}
