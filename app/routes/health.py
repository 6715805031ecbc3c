"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (models loaded), ``/metrics``."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from app.api.deps import ClockDep, MetricsDep, RegistryDep
from app.api.errors import error_response
from app.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str | int]:
    """``pid`` names the API worker that answered (``learnloop serve`` runs several)."""
    return {"status": "ok", "pid": os.getpid()}


@router.get("/readyz", summary="Every decision point has its model", response_model=None)
async def readyz(registry: RegistryDep) -> JSONResponse | dict[str, str]:
    if not registry.ready:
        return error_response(
            503,
            "unavailable",
            "models are still loading: retry shortly",
            headers={"Retry-After": "1"},
        )
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: RegistryDep, service_metrics: MetricsDep, clock: ClockDep) -> Response:
    service_metrics.observe_models(registry.snapshot(), clock.now())
    return Response(content=service_metrics.exposition(), media_type=CONTENT_TYPE)
