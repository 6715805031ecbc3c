"""Request dependencies as ``Annotated`` aliases, all read from ``request.app.state``.

:func:`app.main.create_app` puts the services on ``app.state``; handlers declare
what they need with these aliases and never reach for globals. The providers are
``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a worker
thread, a thread hop per dependency per request (measured: ~1 ms per decision).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.context import Context as TraceContext

from app.api.auth import require_admin_key, require_client_key
from app.decide import Decider
from app.feedback import FeedbackRecorder
from app.metrics import ServiceMetrics
from app.serving import ModelRegistry
from learnloop.clock import Clock
from learnloop.decision_points import DecisionPointStore
from learnloop.telemetry import extract_parent


async def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def _decider(request: Request) -> Decider:
    decider: Decider = request.app.state.decider
    return decider


async def _feedback(request: Request) -> FeedbackRecorder:
    feedback: FeedbackRecorder = request.app.state.feedback
    return feedback


async def _decision_points(request: Request) -> DecisionPointStore:
    store: DecisionPointStore = request.app.state.decision_points
    return store


async def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def _metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def _trace_parent(request: Request) -> TraceContext:
    """The caller's trace (W3C ``traceparent`` header), parent of this request's spans."""
    return extract_parent(request.headers)


ClockDep = Annotated[Clock, Depends(_clock)]
DeciderDep = Annotated[Decider, Depends(_decider)]
FeedbackDep = Annotated[FeedbackRecorder, Depends(_feedback)]
DecisionPointsDep = Annotated[DecisionPointStore, Depends(_decision_points)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
TraceParentDep = Annotated[TraceContext, Depends(_trace_parent)]

# Route-level guards: ``APIRouter(dependencies=[ClientKey])``.
ClientKey = Depends(require_client_key)
AdminKey = Depends(require_admin_key)
