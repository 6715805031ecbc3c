"""Drive a learning loop with the synthetic shop and report how well it learned.

:func:`run_simulation` sends the shop's traffic to a *running* learnloop service over
HTTP, entirely in event time (every decision and outcome carries its simulated
``timestamp``), so 20,000 decisions take seconds, not hours.
:mod:`devtools.simulator.in_process` feeds the same traffic to an in-process VW policy
instead; :mod:`devtools.simulator.ledger` keeps the books. Both score the policy with
the shop's exact expectations: the mean over the last quarter of E[reward | visit,
chosen action], against uniform random and the oracle, and the persona the service
answered each logged-in shopper with against the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from devtools.simulator.front_end import CONTEXTS, front_end_features
from devtools.simulator.http_client import (
    AiohttpSender,
    HttpxTransportSender,
    Sender,
    SendFailed,
)
from devtools.simulator.ledger import Ledger, SimulationReport
from devtools.simulator.shop import (
    ACTIONS,
    MEAN_GAP,
    Shop,
    Visit,
    closing_tick_delay,
    plan_event_time,
)
from learnloop.errors import ConfigurationError, Unavailable

OUTCOME_BATCH = 500  # outcomes per POST, well under the API's body limit


@dataclass
class _Service:
    """The service as the simulator uses it: decisions, outcome batches, read-outs."""

    sender: Sender
    decision_point: str
    context: str = "full"
    errors: int = 0
    sent: int = 0
    first_error: str | None = None

    async def _send(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        return await self.sender.send(method, path, None if body is None else orjson.dumps(body))

    async def _call(self, method: str, path: str, body: Any = None, optional: bool = False) -> Any:
        """JSON of a successful call, or None after counting the error (the run goes on).

        ``optional`` read-outs (the model's counters) fail silently: not every
        deployment exposes them, and the report stands on the simulator's own books.
        """
        try:
            status, content = await self._send(method, path, body)
            if status < 400:
                return orjson.loads(content) if content else {}
            detail = f"{status} {content[:300].decode(errors='replace')}"
        except (SendFailed, orjson.JSONDecodeError) as exc:
            detail = repr(exc)
        if optional:
            return None
        self.errors += 1
        self.first_error = self.first_error or f"{method} {path}: {detail}"
        return None

    async def shop_for(
        self,
        seed: int,
        decisions: int,
        start: datetime | None,
        rule: str = "mlm",
        purchases: bool = True,
    ) -> tuple[Shop, datetime]:
        """The shop scored with the decision point's window and reward map (if readable),
        and the run's start in event time (see :func:`plan_event_time`).

        Refuses decision points whose actions or aggregation the shop cannot score,
        and a reward map that pays for purchases while the shop sends them (its
        expectations know only detail views and basket adds).
        """
        spec = await self._call("GET", f"/v1/decision-points/{self.decision_point}", optional=True)
        spec = spec if isinstance(spec, dict) else {}
        actions = {str(a.get("id")) for a in spec.get("actions") or [] if isinstance(a, dict)}
        if actions and actions != set(ACTIONS):
            raise ConfigurationError(
                f"decision point {self.decision_point!r} serves {sorted(actions)}; the simulated "
                f"shop scores exactly {list(ACTIONS)} (the shipped home_products actions)"
            )
        if spec.get("aggregation", "max") != "max":
            raise ConfigurationError("the simulated shop scores rewards aggregated with max")
        window = float(spec.get("window_seconds") or 20.0)
        gap = MEAN_GAP
        if start is None:
            now = datetime.now(UTC)
            start, gap = plan_event_time(decisions, gap, window, now, await self.stream_time(now))
        reward_map = spec.get("reward_map") or None
        if purchases and isinstance(reward_map, dict) and reward_map.get("purchase"):
            raise ConfigurationError(
                f"decision point {self.decision_point!r} rewards purchases, which the simulated "
                "shop does not score: run it without purchases (--no-purchases)"
            )
        shop = Shop(seed, window, reward_map=reward_map, mean_gap_seconds=gap, rule=rule)
        return shop, start

    async def decide(self, visit: Visit) -> tuple[str, str, str | None] | None:
        """POST one decision; its ``(event_id, action_id, persona)`` or None."""
        features = front_end_features(visit, self.context)
        context: dict[str, Any] = {"session_id": visit.session_id, "features": features}
        if visit.shopper.user_id is not None:
            context["user_id"] = visit.shopper.user_id
        body = {"decision_point": self.decision_point, "context": context}
        body["timestamp"] = visit.timestamp.isoformat()
        data = await self._call("POST", "/v1/decisions", body)
        if not isinstance(data, dict) or "event_id" not in data or "action_id" not in data:
            return None
        persona = data.get("persona")
        return (
            str(data["event_id"]),
            str(data["action_id"]),
            None if persona is None else str(persona),
        )

    async def send_outcomes(self, outcomes: list[dict[str, Any]], count: bool = True) -> None:
        """POST outcomes as JSON-list batches, keeping their event-time order."""
        for i in range(0, len(outcomes), OUTCOME_BATCH):
            batch = outcomes[i : i + OUTCOME_BATCH]
            if await self._call("POST", "/v1/outcomes", batch) is not None and count:
                self.sent += len(batch)

    async def examples_learned(self) -> int | None:
        """The current model's ``examples_learned``, at the top or under ``metrics``."""
        data = await self._call("GET", f"/v1/models/{self.decision_point}", optional=True)
        for holder in (data, (data or {}).get("metrics") if isinstance(data, dict) else None):
            if isinstance(holder, dict) and isinstance(holder.get("examples_learned"), int | float):
                return int(holder["examples_learned"])
        return None

    async def wait_for_learner(self, target: int, max_seconds: float = 10.0) -> int | None:
        """Poll the model until it has learned ``target`` examples, or stops growing for
        3 s, or ``max_seconds`` pass (the report does not depend on it)."""
        began = still_since = time.monotonic()
        last = None
        while (current := await self.examples_learned()) is not None:
            now = time.monotonic()
            if current != last:
                last, still_since = current, now
            if current >= target or now - still_since >= 3.0 or now - began >= max_seconds:
                break
            await asyncio.sleep(0.5)
        return current if current is not None else last

    async def _metrics(self) -> list[tuple[str, str, float]]:
        """``/metrics`` samples as (name, labels, value); empty if unavailable."""
        try:
            status, content = await self._send("GET", "/metrics")
        except SendFailed:
            return []
        samples = []
        for line in content.decode(errors="replace").splitlines() if status < 400 else []:
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            if line and not line.startswith("#"):
                with contextlib.suppress(ValueError):
                    samples.append((name.strip(), labels, float(value)))
        return samples

    async def dropped_outcomes(self) -> tuple[float, float] | None:
        """The service's (late, orphaned) outcome counters, if it exports them:
        ``reason="late"``/``"orphaned"`` labels or ``*late_outcomes*_total`` names."""
        late = orphaned = 0.0
        found = False
        for name, labels, value in await self._metrics():
            if not name.endswith("_total"):
                continue
            if "late_outcomes" in name or 'reason="late"' in labels:
                late, found = late + value, True
            elif 'reason="orphaned"' in labels:
                orphaned += value
        return (late, orphaned) if found else None

    async def stream_time(self, now: datetime) -> datetime | None:
        """The join's stream time if it has seen events: now minus its lag gauge."""
        seen, lag = 0.0, None
        for name, _, value in await self._metrics():
            seen += value if name == "learnloop_join_input_events_total" else 0.0
            lag = value if name == "learnloop_join_lag_seconds" else lag
        return None if lag is None or seen <= 0 else now - timedelta(seconds=lag)


async def run_simulation(
    base_url: str,
    decisions: int = 20000,
    seed: int = 7,
    concurrency: int = 64,
    decision_point: str = "home_products",
    start: datetime | None = None,
    progress: bool = True,
    client_key: str | None = None,
    *,
    shop: str = "mlm",
    context: str = "full",
    purchases: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SimulationReport:
    """Drive a running service with ``decisions`` shop visits in event time.

    The decision point's window and reward map are read from the service (the
    shop's expectations must use the same). Visits go out in chunks of
    ``concurrency`` concurrent decisions with increasing timestamps. Before each
    chunk, every outcome whose event time is at or before the chunk's last
    timestamp is sent (batched, in time order): an outcome reaches the service
    before stream time passes its own time or, for the previous chunk's
    decisions, while its window has most of its time left — so in-window
    outcomes are never counted late. At the end the remaining outcomes and one
    ``clock_tick`` (a type no reward map uses, 60 s past the last window and after
    every outcome: :func:`~devtools.simulator.shop.closing_tick_delay`) close
    every window; then the learner gets up to 10 s to settle.
    ``shop`` names the hidden reward rule (:mod:`devtools.simulator.rules`);
    ``context`` what the front end sends: ``full`` (every feature of the visit) or
    ``minimal`` (the page view's only; the shopper's history then has to come from
    the service's profile store); ``purchases`` adds basket values and the
    purchases that follow some basket adds; ``transport`` lets tests plug in a fake
    service.
    """
    if decisions < 1 or concurrency < 1:
        raise ConfigurationError("decisions and concurrency must be at least 1")
    if context not in CONTEXTS:
        raise ConfigurationError(
            f"unknown context {context!r}: choose one of {', '.join(CONTEXTS)}"
        )
    if start is not None and start.tzinfo is None:
        raise ConfigurationError("start must be timezone-aware (UTC)")
    headers = {"content-type": "application/json"}
    if client_key:
        headers["x-api-key"] = client_key
    began = time.monotonic()
    sender: Sender = (
        HttpxTransportSender(transport, base_url, headers)
        if transport is not None
        else AiohttpSender(base_url, headers, connections=concurrency)
    )
    try:
        service = _Service(sender, decision_point, context)
        model, start = await service.shop_for(seed, decisions, start, shop, purchases)
        dropped_before = await service.dropped_outcomes() or (0.0, 0.0)
        learned_before = await service.examples_learned() or 0
        ledger, last_time = Ledger(model, decisions, seed, purchases), start
        visits = model.visits(start, decisions)
        columns = (TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TextColumn("{task.fields[status]}"), disable=not progress) as bar:
            task = bar.add_task("decisions", total=decisions, status="")
            while chunk := [v for _, v in zip(range(concurrency), visits, strict=False)]:
                last_time = chunk[-1].timestamp
                await service.send_outcomes(ledger.due(last_time))
                answers = await asyncio.gather(*(service.decide(v) for v in chunk))
                if not any(answers):
                    if ledger.decisions == 0:
                        raise Unavailable(
                            f"no decision succeeded at {base_url}: {service.first_error}. "
                            "Is `learnloop serve` running, and is the client key right?"
                        )
                    break  # the service went away: report what was run
                for visit, answer in zip(chunk, answers, strict=True):
                    if answer is not None:
                        ledger.record(visit, answer[1], answer[0], answer[2])
                bar.update(task, advance=len(chunk), status=f"errors {service.errors}")
        await service.send_outcomes(ledger.due())
        tick = last_time + timedelta(seconds=closing_tick_delay(model.window_seconds))
        clock = {"session_id": "sim-clock", "type": "clock_tick", "timestamp": tick.isoformat()}
        await service.send_outcomes([clock], count=False)
        learned = await service.wait_for_learner(learned_before + ledger.decisions)
        dropped = await service.dropped_outcomes()
        late = [a - b for a, b in zip(dropped, dropped_before, strict=True)] if dropped else None
    finally:
        await sender.close()
    return ledger.report(
        http_errors=service.errors,
        outcomes_sent=service.sent,
        wall_seconds=time.monotonic() - began,
        simulated_seconds=(last_time - start).total_seconds(),
        service_late_outcomes=late[0] if late else None,
        service_orphaned_outcomes=late[1] if late else None,
        service_examples_learned=learned,
        first_error=service.first_error,
    )
