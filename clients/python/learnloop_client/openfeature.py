"""An OpenFeature provider that evaluates flags with learnloop.

``api.set_provider(LearnloopProvider("http://learnloop:8000"))`` and every
OpenFeature client of the process resolves flags through learnloop's
``/v1/flags`` routes: persona targeting, sticky rollouts and bandit-chosen
(PERSONALIZED) variants, with the reason and variant copied into OpenFeature's
details and the exposure's ``event_id`` in the flag metadata.

How a context maps onto learnloop's: :mod:`learnloop_client.openfeature_mapping`.

Errors never raise out of a resolver: an unknown flag is FLAG_NOT_FOUND, a value of
another type than asked TYPE_MISMATCH, an answer that cannot be read PARSE_ERROR,
anything else (the server unreachable, a refused key) GENERAL; each returns the
caller's default value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from learnloop_client.client import AsyncLearnloopClient, LearnloopClient
from learnloop_client.errors import FlagNotFound, LearnloopError, ProtocolError
from learnloop_client.models import FlagEvaluation, JsonValue, Outcome
from learnloop_client.openfeature_mapping import (
    FlagRequest,
    Mismatch,
    ObjectValue,
    as_bool,
    as_float,
    as_int,
    as_object,
    as_str,
    flag_request,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
_OPENFEATURE_REASONS = {r.value: r for r in Reason}
_ERROR_CODES = {
    "FLAG_NOT_FOUND": ErrorCode.FLAG_NOT_FOUND,
    "TYPE_MISMATCH": ErrorCode.TYPE_MISMATCH,
    "PARSE_ERROR": ErrorCode.PARSE_ERROR,
    "TARGETING_KEY_MISSING": ErrorCode.TARGETING_KEY_MISSING,
    "INVALID_CONTEXT": ErrorCode.INVALID_CONTEXT,
}


def _failed(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


def _error_details(default: T, exc: LearnloopError) -> FlagResolutionDetails[T]:
    if isinstance(exc, FlagNotFound):
        return _failed(default, ErrorCode.FLAG_NOT_FOUND, exc.message)
    if isinstance(exc, ProtocolError):
        return _failed(default, ErrorCode.PARSE_ERROR, exc.message)
    return _failed(default, ErrorCode.GENERAL, str(exc))


def _event_time(value: object) -> datetime | None:
    """A tracking event's time: an aware datetime or its ISO 8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


class LearnloopProvider(AbstractProvider):
    """OpenFeature provider backed by learnloop's flag API.

    Parameters
    ----------
    base_url:
        Where learnloop serves; the provider builds its own sync and async clients
        (or pass ``client`` / ``async_client``).
    api_key:
        A learnloop client key.
    prefetch:
        When true, the first resolve for an evaluation context asks for every flag at
        once (``POST /v1/flags/evaluate``) and later resolves for an equal context are
        served from that answer for ``cache_ttl`` seconds. PERSONALIZED flags are cached
        too: their exposure was logged when the page was fetched, and the cached answer
        keeps its ``event_id``, so outcomes still reach the right decision.
    cache_ttl:
        Seconds a prefetched page is served.
    max_contexts:
        How many evaluation contexts the cache and the exposure memory keep (oldest out).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 2.0,
        prefetch: bool = False,
        cache_ttl: float = 30.0,
        max_contexts: int = 10_000,
        client: LearnloopClient | None = None,
        async_client: AsyncLearnloopClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if base_url is None and client is None and async_client is None:
            raise ValueError("LearnloopProvider needs a base_url (or a client)")
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.prefetch = prefetch
        self.cache_ttl = cache_ttl
        self.max_contexts = max_contexts
        self._client = client
        self._async_client = async_client
        self._owned: list[LearnloopClient | AsyncLearnloopClient] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._pages: OrderedDict[str, tuple[float, dict[str, FlagEvaluation]]] = OrderedDict()
        self._exposures: OrderedDict[tuple[str | None, str | None], dict[str, str]] = OrderedDict()

    def get_metadata(self) -> Metadata:
        return Metadata(name="learnloop")

    # -- clients ----------------------------------------------------------------

    def _sync(self) -> LearnloopClient:
        if self._client is None:
            if self.base_url is None:
                raise LearnloopError("no sync client: pass base_url or client", code="config")
            self._client = LearnloopClient(
                self.base_url, api_key=self.api_key, timeout=self.timeout
            )
            self._owned.append(self._client)
        return self._client

    def _async(self) -> AsyncLearnloopClient:
        if self._async_client is None:
            if self.base_url is None:
                raise LearnloopError(
                    "no async client: pass base_url or async_client", code="config"
                )
            self._async_client = AsyncLearnloopClient(
                self.base_url, api_key=self.api_key, timeout=self.timeout
            )
            self._owned.append(self._async_client)
        return self._async_client

    def shutdown(self) -> None:
        """Close the sync client the provider built (await :meth:`aclose` for the async one)."""
        if self._client is not None and self._client in self._owned:
            self._owned.remove(self._client)
            self._client.close()
            self._client = None  # built again if the provider is used after all

    async def aclose(self) -> None:
        """Close every client the provider built."""
        if self._async_client is not None and self._async_client in self._owned:
            self._owned.remove(self._async_client)
            await self._async_client.aclose()
            self._async_client = None
        self.shutdown()

    # -- the prefetched pages and the exposures ---------------------------------

    def _cached(self, request: FlagRequest, key: str) -> FlagEvaluation | None:
        with self._lock:
            page = self._pages.get(request.cache_key)
            if page is None or page[0] <= self._clock():
                return None
            found = page[1].get(key)
        if found is None or found.error_code == "FLAG_NOT_FOUND":
            return None  # a flag created since the page was fetched: ask for it alone
        return found

    def _has_page(self, request: FlagRequest) -> bool:
        with self._lock:
            page = self._pages.get(request.cache_key)
            return page is not None and page[0] > self._clock()

    def _store_page(self, request: FlagRequest, flags: dict[str, FlagEvaluation]) -> None:
        with self._lock:
            self._pages[request.cache_key] = (self._clock() + self.cache_ttl, dict(flags))
            self._pages.move_to_end(request.cache_key)
            while len(self._pages) > self.max_contexts:
                self._pages.popitem(last=False)

    def _remember(self, request: FlagRequest, evaluation: FlagEvaluation) -> None:
        if evaluation.event_id is None:
            return
        with self._lock:
            exposures = self._exposures.setdefault(request.identity, {})
            exposures[evaluation.key] = evaluation.event_id
            self._exposures.move_to_end(request.identity)
            while len(self._exposures) > self.max_contexts:
                self._exposures.popitem(last=False)

    def exposures(self, evaluation_context: EvaluationContext | None) -> dict[str, str]:
        """Flag key -> the ``event_id`` of the last PERSONALIZED exposure resolved for this
        context's user and session (what :meth:`track` attributes outcomes to)."""
        with self._lock:
            return dict(self._exposures.get(flag_request(evaluation_context).identity, {}))

    # -- resolving --------------------------------------------------------------

    def _details(
        self,
        request: FlagRequest,
        evaluation: FlagEvaluation,
        default: T,
        coerce: Callable[[JsonValue], T],
        cached: bool,
    ) -> FlagResolutionDetails[T]:
        if evaluation.reason == "ERROR" or evaluation.error_code is not None:
            code = _ERROR_CODES.get(evaluation.error_code or "", ErrorCode.GENERAL)
            return _failed(default, code, evaluation.error_message or "the flag failed")
        try:
            value = coerce(evaluation.value)
        except Mismatch:
            return _failed(
                default,
                ErrorCode.TYPE_MISMATCH,
                f"flag {evaluation.key!r} is {type(evaluation.value).__name__} "
                f"{evaluation.value!r}, not the type asked for: use the resolver of its type",
            )
        self._remember(request, evaluation)
        metadata: dict[str, bool | int | float | str] = {"persona": evaluation.persona}
        if evaluation.event_id is not None:
            metadata["event_id"] = evaluation.event_id
        if evaluation.flag_version is not None:
            metadata["flag_version"] = evaluation.flag_version
        if cached:
            metadata["cached"] = True
        return FlagResolutionDetails(
            value=value,
            reason=_OPENFEATURE_REASONS.get(evaluation.reason, evaluation.reason),
            variant=evaluation.variant,
            flag_metadata=metadata,
        )

    def _resolve(
        self,
        key: str,
        default: T,
        evaluation_context: EvaluationContext | None,
        coerce: Callable[[JsonValue], T],
    ) -> FlagResolutionDetails[T]:
        request = flag_request(evaluation_context)
        try:
            if self.prefetch:
                found = self._cached(request, key)
                if found is not None:
                    return self._details(request, found, default, coerce, cached=True)
                if not self._has_page(request):
                    flags = self._sync().evaluate_flags(
                        request.context, persona=request.persona, timestamp=request.timestamp
                    )
                    self._store_page(request, flags)
                    found = self._cached(request, key)
                    if found is not None:
                        return self._details(request, found, default, coerce, cached=False)
            evaluation = self._sync().evaluate_flag(
                key, request.context, request.persona, timestamp=request.timestamp
            )
        except LearnloopError as exc:
            return _error_details(default, exc)
        return self._details(request, evaluation, default, coerce, cached=False)

    async def _resolve_async(
        self,
        key: str,
        default: T,
        evaluation_context: EvaluationContext | None,
        coerce: Callable[[JsonValue], T],
    ) -> FlagResolutionDetails[T]:
        request = flag_request(evaluation_context)
        try:
            if self.prefetch:
                found = self._cached(request, key)
                if found is not None:
                    return self._details(request, found, default, coerce, cached=True)
                if not self._has_page(request):
                    flags = await self._async().evaluate_flags(
                        request.context, persona=request.persona, timestamp=request.timestamp
                    )
                    self._store_page(request, flags)
                    found = self._cached(request, key)
                    if found is not None:
                        return self._details(request, found, default, coerce, cached=False)
            evaluation = await self._async().evaluate_flag(
                key, request.context, request.persona, timestamp=request.timestamp
            )
        except LearnloopError as exc:
            return _error_details(default, exc)
        return self._details(request, evaluation, default, coerce, cached=False)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, as_bool)

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, as_bool)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, as_str)

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, as_str)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, as_int)

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, as_int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, as_float)

    async def resolve_float_details_async(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, as_float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        return self._resolve(flag_key, default_value, evaluation_context, as_object)

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, as_object)

    # -- tracking ---------------------------------------------------------------

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """Post an outcome (``type`` = the event name, ``value`` = the details' value) for
        each PERSONALIZED exposure resolved for this context's user and session, or, when
        there is none, for the context's ``session_id``. A ``flag_key`` attribute in the
        details limits it to that flag's exposure; a ``timestamp`` attribute (an aware
        datetime or ISO 8601 string) sets the event time. Failures are logged, never
        raised (OpenFeature's ``track`` does not fail the caller)."""
        request = flag_request(evaluation_context)
        details = tracking_event_details or TrackingEventDetails()
        only = details.attributes.get("flag_key")
        timestamp = _event_time(details.attributes.get("timestamp"))
        with self._lock:
            exposures = dict(self._exposures.get(request.identity, {}))
        outcomes = [
            Outcome(
                tracking_event_name, event_id=event_id, value=details.value, timestamp=timestamp
            )
            for key, event_id in exposures.items()
            if only is None or key == only
        ]
        session_id = request.context.get("session_id")
        if not outcomes and session_id is not None:
            outcomes = [
                Outcome(
                    tracking_event_name,
                    session_id=session_id,
                    value=details.value,
                    timestamp=timestamp,
                )
            ]
        if not outcomes:
            logger.warning(
                "track(%r): no personalized exposure and no session_id for this context, "
                "nothing to attribute the outcome to",
                tracking_event_name,
            )
            return
        try:
            self._sync().outcomes(outcomes)
        except LearnloopError as exc:
            logger.warning("track(%r) was not recorded: %s", tracking_event_name, exc)
