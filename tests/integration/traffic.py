"""A small deterministic traffic generator for crash tests: decisions and outcomes in
event time, sent over HTTP, recording what the service acknowledged."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx


@dataclass
class Traffic:
    base_url: str
    start: datetime
    seed: int = 3
    acked_decisions: dict[str, str] = field(default_factory=dict)  # event id -> action
    acked_outcomes: dict[str, str] = field(default_factory=dict)  # outcome id -> event id
    sent: int = 0
    # Resend a request that failed on its way (a killed worker's connection), as a
    # client with an idempotency key would: the same event_id / outcome_id again.
    retries: int = 0
    resent: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def time(self, n: int) -> datetime:
        return self.start + timedelta(seconds=0.25 * n)

    async def decide(self, client: httpx.AsyncClient, n: int) -> None:
        event_id = f"d{n}"
        body = {
            "decision_point": "home_products",
            "event_id": event_id,
            "timestamp": self.time(n).isoformat(),
            "context": {"session_id": f"s{n % 50}", "features": {"page": f"p{n % 3}"}},
        }
        response = await self._post(client, "/v1/decisions", body)
        self.acked_decisions[event_id] = response.json()["action_id"]

    async def outcome(self, client: httpx.AsyncClient, n: int) -> None:
        """A basket_add for decision n, 2 s of event time after it, with a stable id."""
        outcome_id = f"o{n}"
        body = {
            "outcome_id": outcome_id,
            "event_id": f"d{n}",
            "type": "basket_add",
            "timestamp": (self.time(n) + timedelta(seconds=2)).isoformat(),
        }
        await self._post(client, "/v1/outcomes", body)
        self.acked_outcomes[outcome_id] = f"d{n}"

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                response = await client.post(path, json=body)
                if response.status_code < 500 or attempt == self.retries:
                    response.raise_for_status()
                    return response
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            self.resent += 1
            await asyncio.sleep(0.05)
        raise AssertionError("unreachable")

    async def run(self, first: int, last: int, concurrency: int = 8) -> None:
        """Decisions first..last-1 in chunks; outcomes for every third decision of the
        previous chunk (so each outcome's decision was acknowledged first)."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
            for chunk in range(first, last, concurrency):
                numbers = range(chunk, min(chunk + concurrency, last))
                await asyncio.gather(*(self.decide(client, n) for n in numbers))
                await asyncio.gather(*(self.outcome(client, n) for n in numbers if n % 3 == 0))
                self.sent = numbers[-1] + 1

    async def tick(self, n: int) -> None:
        """An unmapped outcome far in event time: pushes stream time past all windows."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
            body = {
                "session_id": "clock",
                "type": "clock_tick",
                "timestamp": (self.time(n) + timedelta(seconds=60)).isoformat(),
            }
            (await client.post("/v1/outcomes", json=body)).raise_for_status()
