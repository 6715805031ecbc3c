"""Build the decision service: ``create_app(settings, events=..., ...)``.

Nothing is built at import time. The composition root (``runtime.embedded``,
or a Kafka runner) opens the event sink, the decision-point store and the model
store, passes them in, and closes them after the app stops: the app does not
own them. The app owns its model registry and watcher task, its metrics
registry and its tracer provider.

``app.state`` holds: ``settings``, ``clock``, ``events``, ``decision_points``,
``models``, ``audit``, ``profiles``, ``pseudonyms``, ``personas``, ``profile_cache``
(:class:`~app.persona_cache.ProfileCache`, ``None`` without profiles), ``persona_models``
(:class:`~app.persona_serving.PersonaModels`, ``None`` likewise), ``registry``
(:class:`~app.serving.ModelRegistry`), ``metrics`` (:class:`~app.metrics.ServiceMetrics`),
``metrics_registry`` (its Prometheus ``CollectorRegistry``), ``tracer_provider`` (``None``
when tracing is off), ``spans`` (:class:`~learnloop.telemetry.Spans`), ``writer``,
``decider``, ``feedback``, ``flags`` (:class:`~app.flags.FlagService`, over an
in-memory flag store when none is given), ``personalizer`` (the
:class:`~learnloop.personalizer_store.PersonalizerStore` of the Personalizer-compatible
API, in memory when none is given) and ``personalizer_jobs`` (the
:class:`~app.personalizer.jobs.JobLauncher` that runs its evaluations; ``None``: they
answer 503). The Personalizer API is mounted at ``/personalizer`` and
``/loops/{loop}/personalizer`` (:mod:`app.personalizer.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware import Middleware

from app.api.body_limit import BodyLimitMiddleware
from app.api.error_metrics import ErrorMetricsMiddleware
from app.api.errors import install_error_handlers
from app.decide import Decider
from app.event_writer import EventWriter
from app.feedback import FeedbackRecorder
from app.flags import FlagService
from app.metrics import ServiceMetrics
from app.persona_serving import persona_serving, start_persona_tasks
from app.personalizer import app as personalizer_app
from app.personalizer.auto_optimize import AutoOptimizer
from app.personalizer.jobs import JobLauncher
from app.personas import PersonaResolver
from app.pseudonyms import Pseudonyms
from app.routes import decision_points as decision_point_routes
from app.routes import decisions as decision_routes
from app.routes import flags as flag_routes
from app.routes import health as health_routes
from app.routes import models as model_routes
from app.routes import outcomes as outcome_routes
from app.routes import users as user_routes
from app.serving import ModelRegistry
from learnloop import __version__
from learnloop.audit import AuditLog
from learnloop.clock import Clock, SystemClock
from learnloop.decision_points import DecisionPointStore
from learnloop.eventlog.base import EventSink
from learnloop.flag_store import FlagNotFound, FlagStore, MemoryFlagStore
from learnloop.modelstore.base import ModelStore
from learnloop.persona_models import PersonaModelStore
from learnloop.personalizer_store import MemoryPersonalizerStore, PersonalizerStore
from learnloop.profiles import ProfileStore
from learnloop.settings import Settings
from learnloop.shutdown import stop_task
from learnloop.telemetry import Spans, setup_tracing

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models, then watch for new releases until shutdown.

    The first load is awaited so the server accepts requests with its models in
    place; if the model store is unreachable, the app starts anyway, ``/readyz``
    answers 503 and the watcher keeps trying.
    """
    registry: ModelRegistry = app.state.registry
    try:
        await registry.load_all()
    except Exception:
        log.exception("initial model load failed; serving starts not ready")
    watchers = [asyncio.create_task(registry.watch(), name="learnloop-model-watcher")]
    watchers += await start_persona_tasks(app.state.profile_cache, app.state.persona_models)
    flags: FlagService = app.state.flags
    try:
        await flags.refresh(force=True)
    except Exception:
        log.exception("initial flag load failed; the flag watcher keeps trying")
    watchers.append(asyncio.create_task(flags.watch(), name="learnloop-flag-watcher"))
    if app.state.personalizer_jobs is not None:  # nothing could run an Auto evaluation
        auto = AutoOptimizer.of_app(app.state)
        watchers.append(asyncio.create_task(auto.watch(), name="learnloop-personalizer-auto"))
    try:
        yield
    finally:
        for watcher in watchers:
            await stop_task(watcher)
        if app.state.tracer_provider is not None:
            app.state.tracer_provider.shutdown()


def create_app(
    settings: Settings,
    *,
    events: EventSink,
    decision_points: DecisionPointStore,
    models: ModelStore,
    clock: Clock | None = None,
    personas: PersonaResolver | None = None,
    audit: AuditLog | None = None,
    profiles: ProfileStore | None = None,
    persona_models: PersonaModelStore | None = None,
    online_persona_models: PersonaModelStore | None = None,
    flags: FlagStore | None = None,
    personalizer: PersonalizerStore | None = None,
    personalizer_jobs: JobLauncher | None = None,
) -> FastAPI:
    """The decision service over the given stores (see the module docstring for ``app.state``).

    ``clock`` defaults to the system clock and ``personas`` to
    :class:`~app.personas.DefaultPersonaResolver`; without ``audit`` (the audit log of
    promotions and rollbacks) ``POST /v1/models/{name}/rollback`` answers 503, and
    without ``profiles`` (the user-profile store) ``/v1/users`` does. With ``profiles``,
    personas are resolved by :class:`~app.personas.ModelPersonaResolver` over a profile
    cache and the models of ``persona_models`` (CatBoost) and ``online_persona_models``
    (river), as ``settings.persona_mode`` says (:func:`app.persona_serving.persona_serving`).
    ``flags`` is the feature-flag store (default: an empty in-memory one); the app
    evaluates from a cache of it refreshed every ``settings.flag_refresh_seconds``.
    """
    clock = clock or SystemClock()
    metrics = ServiceMetrics()
    profile_cache, served_personas, resolver = persona_serving(
        settings, metrics, profiles, persona_models, online_persona_models
    )
    personas = personas or resolver
    tracer_provider = setup_tracing(settings, service_name="learnloop-app")
    spans = Spans(tracer_provider)
    registry = ModelRegistry(
        models,
        decision_points,
        poll_seconds=settings.model_poll_seconds,
        min_swap_seconds=settings.model_swap_min_seconds,
        clock=clock,
        metrics=metrics,
    )
    writer = EventWriter(events, spans, metrics)

    app = FastAPI(
        title="learnloop decision service",
        version=__version__,
        summary="Contextual-bandit decisions, outcomes and rewards for a learning loop.",
        lifespan=_lifespan,
        middleware=[
            Middleware(ErrorMetricsMiddleware, counter=metrics.http_errors),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
    )
    state = app.state
    state.settings = settings
    state.personalizer = personalizer if personalizer is not None else MemoryPersonalizerStore()
    state.personalizer_jobs = personalizer_jobs
    state.clock = clock
    state.events = events
    state.decision_points = decision_points
    state.models = models
    state.audit = audit
    state.profiles = profiles
    state.pseudonyms = Pseudonyms(settings.pseudonym_key.get_secret_value().encode())
    state.personas = personas
    state.profile_cache = profile_cache
    state.persona_models = served_personas
    state.registry = registry
    state.metrics = metrics
    state.metrics_registry = metrics.registry
    state.tracer_provider = tracer_provider
    state.spans = spans
    state.writer = writer
    state.decider = Decider(
        writer=writer,
        decision_points=decision_points,
        registry=registry,
        personas=personas,
        clock=clock,
        spans=spans,
        metrics=metrics,
        pseudonym_key=settings.pseudonym_key.get_secret_value().encode(),
        max_future_seconds=settings.max_future_seconds,
    )
    state.flags = FlagService(
        store=flags if flags is not None else MemoryFlagStore(clock),
        decider=state.decider,
        decision_points=decision_points,
        registry=registry,
        personas=personas,
        clock=clock,
        metrics=metrics,
        pseudonym_key=settings.pseudonym_key.get_secret_value().encode(),
        refresh_seconds=settings.flag_refresh_seconds,
        max_future_seconds=settings.max_future_seconds,
    )
    state.feedback = FeedbackRecorder(
        writer=writer,
        clock=clock,
        spans=spans,
        metrics=metrics,
        max_future_seconds=settings.max_future_seconds,
    )
    install_error_handlers(app)
    app.add_exception_handler(FlagNotFound, flag_routes.flag_not_found_handler)
    for routes in (
        decision_routes,
        outcome_routes,
        decision_point_routes,
        model_routes,
        health_routes,
        user_routes,
        flag_routes,
    ):
        app.include_router(routes.router)
    personalizer_api = personalizer_app.build(app.state)
    app.mount("/personalizer", personalizer_api)
    app.mount("/loops/{loop}/personalizer", personalizer_api)
    return app
