"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (models loaded), ``/metrics``."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from app.api.deps import ClockDep, MetricsDep, RegistryDep
from app.api.errors import error_response
from app.metrics import CONTENT_TYPE
from schemas.api import HealthStatus

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthStatus, summary="The process is alive")
async def healthz() -> HealthStatus:
    """``pid`` names the API worker that answered (``learnloop serve`` runs several)."""
    return HealthStatus(status="ok", pid=os.getpid())


@router.get(
    "/readyz",
    summary="Every decision point has its model",
    response_model=None,
    responses={200: {"model": HealthStatus}},
)
async def readyz(registry: RegistryDep) -> JSONResponse | HealthStatus:
    if not registry.ready:
        return error_response(
            503,
            "unavailable",
            "models are still loading: retry shortly",
            headers={"Retry-After": "1"},
        )
    return HealthStatus(status="ready", pid=os.getpid())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: RegistryDep, service_metrics: MetricsDep, clock: ClockDep) -> Response:
    service_metrics.observe_models(registry.snapshot(), clock.now())
    return Response(content=service_metrics.exposition(), media_type=CONTENT_TYPE)
