"""Feature flags in the decision service: the in-process cache, evaluations, exposures.

:class:`FlagService` keeps every flag in memory and never reads the store to evaluate:
a background task polls the store's change counter every ``Settings.flag_refresh_seconds``
(a one-row read in SQLite, a ``GET`` in Redis) and reloads all flags when it moved; in
the distributed mode the Redis notification of a change (:meth:`FlagService.listen`)
reloads at once, polling staying as the fallback. A change made through this process
is in its cache before the call returns.

An evaluation resolves the persona exactly as a decision does (an explicit persona wins;
:mod:`app.personas`), runs the pure engine (:mod:`learnloop.flag_engine`) and, when a
rule personalizes, asks the :class:`~app.decide.Decider` to choose among the allowed
variants at the flag's decision point ``flag.<key>``: that decision, logged before the
answer, is the *exposure*; its ``event_id`` comes back, outcomes posted against it are
joined and learned like any decision's, and a repeated ``event_id`` answers what was
logged.

The holdout: the flag's decision point has ``baseline_share`` = ``holdout_share`` and
``baseline = "first"``, and the candidates put the default variant first (when the
segment may get it): the decision service's baseline arm then serves the default to
``holdout_share`` of the exposures, drawn from the exposure's ``event_id``, and logs the
probabilities the draw really had (``share`` on the default plus ``1 - share`` times
the model's), so off-policy estimates of the flag's exposures stay unbiased.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime

from app.decide import Decider
from app.event_ids import new_event_id
from app.event_time import event_time
from app.metrics import ServiceMetrics
from app.personas import PersonaResolver
from app.pseudonyms import Pseudonyms
from app.serving import ModelRegistry
from learnloop.clock import Clock
from learnloop.decision_points import DecisionPointStore
from learnloop.errors import Conflict, InvalidInput, LearnloopError, NotFound
from learnloop.flag_engine import Resolution, attributes_of, bucketing_key_of, evaluate
from learnloop.flag_store import FlagStore, check_key, flag_not_found
from learnloop.shutdown import cancel_requested, stop_task
from schemas.api import DecisionRequest
from schemas.features import Action, Context
from schemas.flags import (
    ErrorCode,
    Flag,
    FlagChange,
    FlagDefinition,
    FlagEvaluation,
    FlagEvaluationRequest,
    FlagsEvaluation,
    decision_point_name,
)

log = logging.getLogger(__name__)

_MAX_EVENT_ID = 128
_NO_FEATURES = Context()
# The metrics label of keys that name no flag: any caller can send any key, and one
# label set per key sent would grow the metrics without bound.
UNKNOWN_FLAG = "(unknown)"


def exposure_id(event_id: str, key: str) -> str:
    """The exposure id of one flag of a bulk evaluation sent with ``event_id``: distinct
    per flag, the same on every retry.

    >>> exposure_id("e1", "checkout_layout")
    'e1:checkout_layout'
    >>> len(exposure_id("e" * 128, "checkout_layout"))
    128
    """
    combined = f"{event_id}:{key}"
    if len(combined) <= _MAX_EVENT_ID:
        return combined
    digest = hashlib.blake2b(combined.encode(), digest_size=16).hexdigest()
    return f"{event_id[: _MAX_EVENT_ID - 33]}:{digest}"


_ACTIONS: dict[str, Action] = {}


def _action(variant: str) -> Action:
    """The featureless action of a variant, built once (actions are frozen)."""
    action = _ACTIONS.get(variant)
    if action is None:
        if len(_ACTIONS) > 100_000:  # bounded: variant names come from admins, but still
            _ACTIONS.clear()
        action = _ACTIONS[variant] = Action.model_construct(id=variant, features={})
    return action


class FlagService:
    """The flags of one API process (see the module docstring).

    ``store`` holds the flags; ``decider``, ``decision_points`` and ``registry`` are the
    app's own, so exposures are decisions like any other.
    """

    def __init__(
        self,
        *,
        store: FlagStore,
        decider: Decider,
        decision_points: DecisionPointStore,
        registry: ModelRegistry,
        personas: PersonaResolver,
        clock: Clock,
        metrics: ServiceMetrics,
        pseudonym_key: bytes,
        refresh_seconds: float = 0.2,
        max_future_seconds: float = 300.0,
    ) -> None:
        self.store = store
        self.decider = decider
        self.decision_points = decision_points
        self.registry = registry
        self.personas = personas
        self.clock = clock
        self.metrics = metrics
        self.refresh_seconds = refresh_seconds
        self.max_future_seconds = max_future_seconds
        self._pseudonyms = Pseudonyms(pseudonym_key)
        self._flags: dict[str, Flag] = {}
        self._by_features: frozenset[str] = frozenset()  # keys of flags with conditions
        self._seen: int | None = None
        self._reload_lock = asyncio.Lock()
        self._notifications: Callable[[], AsyncIterator[int]] | None = None

    # The cache ---------------------------------------------------------------------------

    def cached(self) -> Mapping[str, Flag]:
        """The flags this process evaluates now."""
        return self._flags

    async def refresh(self, force: bool = False) -> bool:
        """Reload every flag if the store's change counter moved (or ``force``);
        returns whether it reloaded. The counter is read before the flags, so a change
        landing in between is reloaded again next time rather than missed."""
        async with self._reload_lock:
            version = await self.store.version()
            if not force and version == self._seen:
                return False
            flags = await self.store.all()
            self._flags = {flag.key: flag for flag in flags}
            self._by_features = frozenset(
                f.key for f in flags if any(rule.conditions for rule in f.rules)
            )
            self._seen = version
            return True

    def listen(self, notifications: Callable[[], AsyncIterator[int]]) -> None:
        """Also reload as soon as a change is announced (e.g.
        :meth:`~learnloop.flag_store_redis.RedisFlagStore.watch`); call before :meth:`watch`."""
        self._notifications = notifications

    async def watch(self) -> None:
        """Poll (and listen) until cancelled: the lifespan's task."""
        listener = None
        if self._notifications is not None:
            listener = asyncio.create_task(self._listen(self._notifications))
        try:
            # cancel_requested: the Redis pub/sub client can swallow a cancellation.
            while not cancel_requested():
                await asyncio.sleep(self.refresh_seconds)
                try:
                    await self.refresh()
                except Exception:  # keep watching: the store may come back
                    log.warning("cannot refresh the flags; serving the cached ones", exc_info=True)
            raise asyncio.CancelledError
        finally:
            if listener is not None:
                await stop_task(listener)

    async def _listen(self, notifications: Callable[[], AsyncIterator[int]]) -> None:
        while not cancel_requested():
            try:
                async for _counter in notifications():
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("flag notifications lost; polling, resubscribing", exc_info=True)
            await asyncio.sleep(self.refresh_seconds)
        raise asyncio.CancelledError

    # Evaluation --------------------------------------------------------------------------

    async def evaluate(self, key: str, request: FlagEvaluationRequest) -> FlagEvaluation:
        """One flag for one context; :class:`FlagNotFound` if the key is unknown.

        A bad timestamp or an ``event_id`` already used elsewhere is refused
        (:class:`InvalidInput`, :class:`Conflict`); a failing exposure (the event log
        unreachable) answers the fallback variant with reason ``ERROR``.
        """
        flag = self._flags.get(key)
        if flag is None:
            self.metrics.flag_error(UNKNOWN_FLAG, "FLAG_NOT_FOUND")
            raise flag_not_found(key)
        now, pseudonym, persona = self._who(request)
        return await self._evaluate(flag, request, request.event_id, now, pseudonym, persona)

    async def evaluate_all(self, request: FlagEvaluationRequest) -> FlagsEvaluation:
        """Every flag (or ``request.keys``) for one context: the persona is resolved
        once; an unknown key answers reason ``ERROR`` with ``FLAG_NOT_FOUND``; with an
        ``event_id``, each personalized flag's exposure id is :func:`exposure_id`."""
        now, pseudonym, persona = self._who(request)
        keys: Iterable[str] = request.keys if request.keys is not None else list(self._flags)
        answers: dict[str, FlagEvaluation] = {}
        for key in keys:
            flag = self._flags.get(key)
            if flag is None:
                self.metrics.flag_error(UNKNOWN_FLAG, "FLAG_NOT_FOUND")
                answers[key] = FlagEvaluation(
                    key=key,
                    value=None,
                    variant=None,
                    reason="ERROR",
                    persona=persona,
                    error_code="FLAG_NOT_FOUND",
                    error_message=f"flag {key!r} does not exist",
                )
                continue
            event_id = None if request.event_id is None else exposure_id(request.event_id, key)
            try:
                answers[key] = await self._evaluate(
                    flag, request, event_id, now, pseudonym, persona
                )
            except LearnloopError as exc:  # one flag's refusal must not fail the page's others
                answers[key] = self._error(flag, persona, "GENERAL", str(exc))
        return FlagsEvaluation(flags=answers)

    def _who(self, request: FlagEvaluationRequest) -> tuple[datetime, str | None, str]:
        """Event time, the user's pseudonym and the persona, as a decision resolves them."""
        now = event_time(request.timestamp, self.clock.now(), self.max_future_seconds)
        context = request.context
        pseudonym = None if context.user_id is None else self._pseudonyms.of(context.user_id)
        persona = self.personas.resolve(context, pseudonym, request.persona, now).persona
        return now, pseudonym, persona

    async def _evaluate(
        self,
        flag: Flag,
        request: FlagEvaluationRequest,
        event_id: str | None,
        now: datetime,
        pseudonym: str | None,
        persona: str,
    ) -> FlagEvaluation:
        context = request.context
        if flag.key in self._by_features:
            attributes = attributes_of(context, persona)
        else:  # no condition reads a feature: skip flattening them
            attributes = attributes_of(_NO_FEATURES, persona, context.user_id, context.session_id)
        resolution = evaluate(flag, attributes, bucketing_key_of(pseudonym, context.session_id))
        if resolution.reason == "PERSONALIZED":
            return await self._expose(flag, resolution, context, event_id, now, persona)
        variant = resolution.variant
        assert variant is not None
        self.metrics.flag_evaluated(flag.key, variant, resolution.reason)
        return FlagEvaluation(
            key=flag.key,
            value=flag.variants[variant],
            variant=variant,
            reason=resolution.reason,
            persona=persona,
            flag_version=flag.version,
        )

    async def _expose(
        self,
        flag: Flag,
        resolution: Resolution,
        context: Context,
        event_id: str | None,
        now: datetime,
        persona: str,
    ) -> FlagEvaluation:
        """The personalized path: a logged decision among the candidates (see the module
        docstring for the holdout)."""
        candidates = resolution.candidates or []
        # A fresh id needs no replay check; the client's may be a retry.
        fresh = None if event_id is not None else new_event_id()
        decision = DecisionRequest.model_construct(
            decision_point=decision_point_name(flag.key),
            context=context,
            actions=[_action(v) for v in candidates],
            excluded_actions=[],
            event_id=event_id,
            timestamp=now,
            defer_activation=False,
            persona=persona,
        )
        try:
            try:
                record = await self.decider.decide(decision, fresh_event_id=fresh)
            except NotFound:
                # The decision point is written before the flag, so only one removed by
                # hand is missing: put it back and decide again.
                await self.sync_decision_point(flag.key, flag)
                record = await self.decider.decide(decision, fresh_event_id=fresh)
        except (InvalidInput, Conflict):
            raise
        except LearnloopError as exc:
            log.warning("exposure of flag %r failed: %s", flag.key, exc)
            return self._error(flag, persona, "GENERAL", f"the exposure was not logged: {exc}")
        variant = record.chosen_action
        if variant not in flag.variants:  # a replayed exposure of a variant since removed
            return self._error(
                flag,
                persona,
                "GENERAL",
                f"exposure {record.event_id!r} served {variant!r}, now removed",
            )
        self.metrics.flag_evaluated(flag.key, variant, "PERSONALIZED")
        self.metrics.flag_exposed(flag.key, variant, record.persona)
        return FlagEvaluation(
            key=flag.key,
            value=flag.variants[variant],
            variant=variant,
            reason="PERSONALIZED",
            event_id=record.event_id,
            persona=record.persona,
            flag_version=flag.version,
        )

    def _error(self, flag: Flag, persona: str, code: ErrorCode, message: str) -> FlagEvaluation:
        """An evaluation that failed: the default variant's value, reason ``ERROR``."""
        self.metrics.flag_error(flag.key, code)
        return FlagEvaluation(
            key=flag.key,
            value=flag.variants[flag.default_variant],
            variant=flag.default_variant,
            reason="ERROR",
            persona=persona,
            flag_version=flag.version,
            error_code=code,
            error_message=message,
        )

    # Changes -----------------------------------------------------------------------------

    async def sync_decision_point(self, key: str, definition: FlagDefinition) -> None:
        """Create or update the automatic decision point ``flag.<key>`` of a personalized
        flag (also of a flag that was personalized once: its point stays in step); a
        flag that never personalized gets none."""
        name = decision_point_name(key)
        current = await self.decision_points.get(name)
        if current is None and not definition.is_personalized():
            return
        config = definition.decision_point_update().named(name)
        if current == config:
            return
        await self.decision_points.put(config)
        await self.registry.refresh(name)

    async def put(self, key: str, definition: FlagDefinition, by: str) -> Flag:
        """Create or replace a flag: its decision point first (so no exposure finds it
        missing), then the flag with its audit record; the cache reloads."""
        check_key(key)
        await self.sync_decision_point(key, definition)
        flag = await self.store.put(key, definition, by)
        await self.refresh()
        return flag

    async def put_many(self, definitions: Mapping[str, FlagDefinition], by: str) -> list[Flag]:
        """Import: the decision points, then every flag at once (all or nothing)."""
        for key in definitions:
            check_key(key)
        for key, definition in definitions.items():
            await self.sync_decision_point(key, definition)
        flags = await self.store.put_many(definitions, by)
        await self.refresh()
        return flags

    async def set_enabled(self, key: str, enabled: bool, by: str) -> Flag:
        flag = await self.store.set_enabled(key, enabled, by)
        await self.refresh()
        return flag

    async def delete(self, key: str, by: str) -> None:
        """Remove the flag; its decision point and the exposures logged stay."""
        await self.store.delete(key, by)
        await self.refresh()

    async def get(self, key: str) -> Flag:
        flag = await self.store.get(key)
        if flag is None:
            raise flag_not_found(key)
        return flag

    async def all(self) -> list[Flag]:
        return await self.store.all()

    async def history(self, key: str, limit: int) -> list[FlagChange]:
        changes = await self.store.history(key, limit)
        if not changes:
            raise flag_not_found(key)
        return changes
