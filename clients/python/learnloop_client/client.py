"""Typed clients for learnloop's HTTP API: decisions, outcomes, rewards and feature flags.

:class:`LearnloopClient` (sync) and :class:`AsyncLearnloopClient` (asyncio) send the
same :class:`~learnloop_client.calls.Call`s, each over its httpx client. Answers come
back as the frozen dataclasses of :mod:`learnloop_client.models`; failures as
:class:`~learnloop_client.errors.LearnloopError` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Self, TypeVar

import httpx

from learnloop_client.calls import (
    Call,
    activate_call,
    answer,
    decide_call,
    evaluate_flag_call,
    evaluate_flags_call,
    headers,
    outcomes_call,
    reward_call,
)
from learnloop_client.errors import transport_error
from learnloop_client.models import (
    ContextLike,
    Decision,
    FlagEvaluation,
    Outcome,
    OutcomesAccepted,
    RewardAccepted,
)

T = TypeVar("T")
DEFAULT_TIMEOUT = 5.0


class LearnloopClient:
    """Sync client of one learnloop service.

    Parameters
    ----------
    base_url:
        Where learnloop serves, e.g. ``http://localhost:8000``.
    api_key:
        A client key (sent as ``X-API-Key``); ``None`` when the service runs without keys.
    timeout:
        Seconds per request; a request that gets no answer raises ``Unavailable``.
    transport:
        An httpx transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers(api_key, extra_headers),
            timeout=timeout,
            transport=transport,
        )

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, json=call.body)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.base_url) from exc
        return answer(call, response)

    def decide(
        self,
        decision_point: str,
        context: ContextLike = None,
        actions: Sequence[str | Mapping[str, Any]] | None = None,
        *,
        excluded_actions: Sequence[str] | None = None,
        event_id: str | None = None,
        persona: str | None = None,
        defer_activation: bool = False,
        timestamp: datetime | None = None,
    ) -> Decision:
        """Ask for a decision; ``actions`` are ids or ``{"id", "features"}`` (default: the
        decision point's configured actions)."""
        return self._send(
            decide_call(
                decision_point,
                context,
                actions,
                excluded_actions,
                event_id,
                persona,
                defer_activation,
                timestamp,
            )
        )

    def outcome(
        self,
        type: str,
        *,
        event_id: str | None = None,
        session_id: str | None = None,
        value: float | None = None,
        outcome_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> OutcomesAccepted:
        """Report one outcome, attributed to a decision or to a session's decisions."""
        outcome = Outcome(type, event_id, session_id, value, outcome_id, timestamp)
        return self.outcomes([outcome])

    def outcomes(self, outcomes: Iterable[Outcome]) -> OutcomesAccepted:
        """Report up to 1000 outcomes at once, all or nothing."""
        return self._send(outcomes_call(outcomes))

    def reward(
        self,
        event_id: str,
        value: float,
        *,
        reward_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> RewardAccepted:
        """Post a reward value for a decision; it overrides the outcomes of its window."""
        return self._send(reward_call(event_id, value, reward_id, timestamp))

    def activate(self, event_id: str) -> None:
        """Mark a decision made with ``defer_activation=True`` as shown."""
        self._send(activate_call(event_id))

    def evaluate_flag(
        self,
        key: str,
        context: ContextLike = None,
        persona: str | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> FlagEvaluation:
        """A flag's value for a context; an unknown key raises ``FlagNotFound``."""
        return self._send(evaluate_flag_call(key, context, persona, event_id, timestamp))

    def evaluate_flags(
        self,
        context: ContextLike = None,
        keys: Sequence[str] | None = None,
        persona: str | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> dict[str, FlagEvaluation]:
        """Every flag (or ``keys``) for one context in one call: what a page asks once.
        Unknown ``keys`` come back as entries with reason ERROR, ``FLAG_NOT_FOUND``."""
        return self._send(evaluate_flags_call(context, keys, persona, timestamp))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLearnloopClient:
    """The asyncio twin of :class:`LearnloopClient`: the same calls, awaited."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers(api_key, extra_headers),
            timeout=timeout,
            transport=transport,
        )

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, json=call.body)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.base_url) from exc
        return answer(call, response)

    async def decide(
        self,
        decision_point: str,
        context: ContextLike = None,
        actions: Sequence[str | Mapping[str, Any]] | None = None,
        *,
        excluded_actions: Sequence[str] | None = None,
        event_id: str | None = None,
        persona: str | None = None,
        defer_activation: bool = False,
        timestamp: datetime | None = None,
    ) -> Decision:
        """See :meth:`LearnloopClient.decide`."""
        return await self._send(
            decide_call(
                decision_point,
                context,
                actions,
                excluded_actions,
                event_id,
                persona,
                defer_activation,
                timestamp,
            )
        )

    async def outcome(
        self,
        type: str,
        *,
        event_id: str | None = None,
        session_id: str | None = None,
        value: float | None = None,
        outcome_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> OutcomesAccepted:
        """See :meth:`LearnloopClient.outcome`."""
        outcome = Outcome(type, event_id, session_id, value, outcome_id, timestamp)
        return await self.outcomes([outcome])

    async def outcomes(self, outcomes: Iterable[Outcome]) -> OutcomesAccepted:
        """See :meth:`LearnloopClient.outcomes`."""
        return await self._send(outcomes_call(outcomes))

    async def reward(
        self,
        event_id: str,
        value: float,
        *,
        reward_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> RewardAccepted:
        """See :meth:`LearnloopClient.reward`."""
        return await self._send(reward_call(event_id, value, reward_id, timestamp))

    async def activate(self, event_id: str) -> None:
        """See :meth:`LearnloopClient.activate`."""
        await self._send(activate_call(event_id))

    async def evaluate_flag(
        self,
        key: str,
        context: ContextLike = None,
        persona: str | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> FlagEvaluation:
        """See :meth:`LearnloopClient.evaluate_flag`."""
        return await self._send(evaluate_flag_call(key, context, persona, event_id, timestamp))

    async def evaluate_flags(
        self,
        context: ContextLike = None,
        keys: Sequence[str] | None = None,
        persona: str | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> dict[str, FlagEvaluation]:
        """See :meth:`LearnloopClient.evaluate_flags`."""
        return await self._send(evaluate_flags_call(context, keys, persona, timestamp))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
