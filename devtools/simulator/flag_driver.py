"""Drive a running service's personalized flag with the shop's visits and score it.

:func:`run_flag_simulation` evaluates one flag for each visit over HTTP
(``POST /v1/flags/{key}/evaluate`` with the visit's context, user id and event time),
sends the outcomes the shop draws for the variant served against the exposure's
``event_id`` (or the session, for an evaluation that logged none), and reports per true
persona, over the last quarter, the exact expected reward of what the learned arm
served against the fixed default and the oracle on the same visits
(:mod:`devtools.simulator.flag_ledger`). Timing is the decision driver's
(:mod:`devtools.simulator.driver`): event time throughout, outcomes sent before stream
time passes them, one closing clock tick.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from devtools.simulator.driver import _Service
from devtools.simulator.flag_ledger import FlagLedger, FlagSimulationReport
from devtools.simulator.flags import FlagModel, preference_named
from devtools.simulator.front_end import CONTEXTS, front_end_features
from devtools.simulator.http_client import AiohttpSender, HttpxTransportSender, Sender
from devtools.simulator.in_process import true_persona
from devtools.simulator.shop import MEAN_GAP, Visit, closing_tick_delay, plan_event_time
from learnloop.errors import ConfigurationError, Unavailable

PERSONA_MODES: tuple[str, ...] = ("explicit", "service")


@dataclass
class _FlagService(_Service):
    """The service as a flag run uses it: the flag's definition, evaluations, outcomes."""

    flag_key: str = ""

    async def flag(self) -> dict[str, Any]:
        """The stored flag (``GET /v1/flags/{key}``, an admin route)."""
        data = await self._call("GET", f"/v1/flags/{self.flag_key}")
        if not isinstance(data, dict):
            raise Unavailable(
                f"cannot read flag {self.flag_key!r}: {self.first_error}. Create it first "
                "(--create), and pass the admin key if the service has one"
            )
        return data

    async def put_flag(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Create or replace the flag (``PUT /v1/flags/{key}``, an admin route)."""
        data = await self._call("PUT", f"/v1/flags/{self.flag_key}", definition)
        if not isinstance(data, dict):
            raise Unavailable(f"cannot create flag {self.flag_key!r}: {self.first_error}")
        return data

    async def evaluate(
        self, visit: Visit, persona: str | None
    ) -> tuple[str, str, str | None, str | None] | None:
        """POST one evaluation; its ``(variant, reason, event_id, persona)`` or None."""
        features = front_end_features(visit, self.context)
        context: dict[str, Any] = {"session_id": visit.session_id, "features": features}
        if visit.shopper.user_id is not None:
            context["user_id"] = visit.shopper.user_id
        body: dict[str, Any] = {"context": context, "timestamp": visit.timestamp.isoformat()}
        if persona is not None:
            body["persona"] = persona
        data = await self._call("POST", f"/v1/flags/{self.flag_key}/evaluate", body)
        if not isinstance(data, dict) or not data.get("variant") or "reason" not in data:
            return None
        event_id, served = data.get("event_id"), data.get("persona")
        return (
            str(data["variant"]),
            str(data["reason"]),
            None if event_id is None else str(event_id),
            None if served is None else str(served),
        )


def _check_flag(model: FlagModel, flag: dict[str, Any]) -> None:
    """Refuse a stored flag the shop cannot score (other variants, aggregation)."""
    variants = set(flag.get("variants") or {})
    if variants != set(model.variants):
        raise ConfigurationError(
            f"flag {model.preference.key!r} has variants {sorted(variants)}; the simulated "
            f"shop scores exactly {list(model.variants)}: recreate it with --create"
        )
    if flag.get("default_variant") != model.default_variant:
        raise ConfigurationError(
            f"flag {model.preference.key!r} defaults to {flag.get('default_variant')!r}; the "
            f"simulated shop scores the default {model.default_variant!r}"
        )
    if (flag.get("aggregation") or "max") != "max":
        raise ConfigurationError("the simulated shop scores rewards aggregated with max")


async def run_flag_simulation(
    base_url: str,
    flag_key: str,
    decisions: int = 4000,
    seed: int = 7,
    context: str = "minimal",
    *,
    persona: str = "service",
    create: bool = False,
    holdout_share: float = 0.1,
    concurrency: int = 64,
    start: datetime | None = None,
    progress: bool = True,
    client_key: str | None = None,
    admin_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FlagSimulationReport:
    """Drive flag ``flag_key`` of a running service with ``decisions`` shop visits.

    Parameters
    ----------
    flag_key:
        A flag the shop has preferences for (:data:`~devtools.simulator.flags.FLAG_PREFERENCES`).
        Its window, reward map and holdout share are read from the service
        (``GET /v1/flags/{key}``, with ``admin_key``), so the shop scores what it learns.
    context:
        What the front end sends: ``minimal`` (the page view) or ``full``.
    persona:
        ``explicit``: each evaluation names the shopper's persona (the truth for logged-in
        shoppers, ``visitor`` for anonymous ones: a shop that knows its customers' roles);
        ``service``: none is sent and the service resolves it (profiles, persona model).
    create:
        First ``PUT`` the flag: personalized over all its variants for everyone, with
        ``holdout_share`` of evaluations on the default variant.
    """
    if decisions < 1 or concurrency < 1:
        raise ConfigurationError("decisions and concurrency must be at least 1")
    if context not in CONTEXTS:
        raise ConfigurationError(
            f"unknown context {context!r}: choose one of {', '.join(CONTEXTS)}"
        )
    if persona not in PERSONA_MODES:
        raise ConfigurationError(
            f"unknown persona mode {persona!r}: choose one of {', '.join(PERSONA_MODES)}"
        )
    if start is not None and start.tzinfo is None:
        raise ConfigurationError("start must be timezone-aware (UTC)")
    preference = preference_named(flag_key)
    headers = {"content-type": "application/json"}
    key = admin_key or client_key
    if key:
        headers["x-api-key"] = key  # the admin key also opens the client routes
    began = time.monotonic()
    sender: Sender = (
        HttpxTransportSender(transport, base_url, headers)
        if transport is not None
        else AiohttpSender(base_url, headers, connections=concurrency)
    )
    try:
        service = _FlagService(sender, f"flag.{flag_key}", context, flag_key=flag_key)
        if create:
            await service.put_flag(preference.definition(holdout_share))
        flag = await service.flag()
        window = float(flag.get("window_seconds") or 20.0)
        gap = MEAN_GAP
        if start is None:
            now = datetime.now(UTC)
            stream = await service.stream_time(now)
            start, gap = plan_event_time(decisions, gap, window, now, stream)
        model = FlagModel(preference, seed, window, flag.get("reward_map"), mean_gap_seconds=gap)
        _check_flag(model, flag)
        holdout = float(flag.get("holdout_share") or 0.0)
        learned_before = await service.examples_learned() or 0
        ledger, last_time = FlagLedger(model, decisions, holdout), start
        visits = model.visits(start, decisions)
        columns = (TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TextColumn("{task.fields[status]}"), disable=not progress) as bar:
            task = bar.add_task("evaluations", total=decisions, status="")
            while chunk := [v for _, v in zip(range(concurrency), visits, strict=False)]:
                last_time = chunk[-1].timestamp
                await service.send_outcomes(ledger.due(last_time))
                named = [true_persona(v) if persona == "explicit" else None for v in chunk]
                answers = await asyncio.gather(
                    *(service.evaluate(v, p) for v, p in zip(chunk, named, strict=True))
                )
                if not any(answers):
                    if ledger.decisions == 0:
                        raise Unavailable(
                            f"no evaluation of {flag_key!r} succeeded at {base_url}: "
                            f"{service.first_error}. Is `learnloop serve` running, and is "
                            "the client key right?"
                        )
                    break  # the service went away: report what was run
                for visit, answer in zip(chunk, answers, strict=True):
                    if answer is not None:
                        ledger.record(visit, answer[0], answer[1], answer[2], answer[3])
                bar.update(task, advance=len(chunk), status=f"errors {service.errors}")
        await service.send_outcomes(ledger.due())
        tick = last_time + timedelta(seconds=closing_tick_delay(model.window_seconds))
        clock = {"session_id": "sim-clock", "type": "clock_tick", "timestamp": tick.isoformat()}
        await service.send_outcomes([clock], count=False)
        exposures = ledger.arms.get("learned", 0) + ledger.arms.get("holdout", 0)
        learned = await service.wait_for_learner(learned_before + exposures)
    finally:
        await sender.close()
    return ledger.report(
        http_errors=service.errors,
        outcomes_sent=service.sent,
        wall_seconds=time.monotonic() - began,
        simulated_seconds=(last_time - start).total_seconds(),
        service_examples_learned=learned,
        first_error=service.first_error,
    )
