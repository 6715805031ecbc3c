"""``model``, ``model/properties``, ``logs`` and ``logs/properties`` (admin key).

The model is the loop's current release in learnloop's model store: ``GET model``
exports its VW bytes, ``PUT model`` (preview) imports VW bytes as the next release
(``source="import"``) and ``DELETE model`` publishes a fresh untrained one
(``source="reset"``). The online learner adopts any release it did not make, so it
continues from an imported or reset model. Both are written to the audit log.

The logs are learnloop's event log, append-only and shared by every loop, so
``DELETE logs`` is a *logical* clear: the loop's log span starts again, and
evaluations only read decisions after the clear (the ``state``/``logs`` document).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import zipfile
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request, Response

from app.personalizer.deps import AdminKey, Loop, LoopName, Store
from app.personalizer.errors import PersonalizerError
from app.personalizer.log_span import log_span
from learnloop.audit import AuditLog
from learnloop.clock import Clock
from learnloop.errors import NotFound
from learnloop.modelstore.base import ModelStore
from learnloop.personalizer_store import PersonalizerStore
from learnloop.policy import VWPolicy
from learnloop.rollback import new_audit_id, publish_next
from schemas.api import StoredRelease
from schemas.audit import ModelAuditRecord
from schemas.config import DecisionPointConfig
from schemas.events import ModelRelease
from schemas.features import Action, Context
from schemas.personalizer_admin import DateRange, LogsProperties, ModelProperties

router = APIRouter(dependencies=[AdminKey], tags=["Personalizer model and logs"])
preview_router = APIRouter(dependencies=[AdminKey], tags=["Personalizer model and logs"])

OCTET: Final = "application/octet-stream"
ZIP_MODEL: Final = "model.vw"
ZIP_MANIFEST: Final = "manifest.json"
AUDIT_BY: Final = "personalizer-api"
LINEAGE_STARTS: Final = frozenset({"import", "reset"})
MAX_MODEL_BYTES: Final = 256 * 1024 * 1024


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def _models(request: Request) -> ModelStore:
    models: ModelStore = request.app.state.models
    return models


# -- export ------------------------------------------------------------------------------


async def _fresh_model(vw_args: str) -> bytes:
    def build() -> bytes:
        policy = VWPolicy(vw_args)
        try:
            return policy.to_bytes()
        finally:
            policy.close()

    return await asyncio.to_thread(build)


async def served_model(
    models: ModelStore, config: DecisionPointConfig
) -> tuple[bytes, ModelRelease | None]:
    """The model this loop serves: the current release if it was made with the loop's
    ``vw_args`` (as the decision service decides), else a fresh untrained model."""
    release = await models.current(config.name)
    if release is not None and release.vw_args == config.vw_args:
        try:
            return await models.load(release), release
        except NotFound:
            pass  # pruned between the two reads: the service serves a fresh one too
    return await _fresh_model(config.vw_args), None


def signed_zip(model: bytes, config: DecisionPointConfig, release: ModelRelease | None) -> bytes:
    """``signed=true``: the model and a manifest with its SHA-256 in a zip archive.

    Not a cryptographic signature (there is no Personalizer key to sign with); the
    checksum lets ``PUT model`` refuse an archive whose model was altered or truncated.
    """
    manifest = {
        "loop": config.name,
        "version": 0 if release is None else release.version,
        "vw_args": config.vw_args,
        "sha256": hashlib.sha256(model).hexdigest(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ZIP_MODEL, model)
        archive.writestr(ZIP_MANIFEST, json.dumps(manifest, indent=2))
    return buffer.getvalue()


@router.get("/model", summary="Export the model", response_class=Response)
async def get_model(
    request: Request, config: Loop, signed: Annotated[bool, Query()] = False
) -> Response:
    """The VW model file the loop serves; ``signed=true`` wraps it in a zip with a
    manifest (``model.vw``, ``manifest.json``) that ``PUT model`` also takes."""
    model, release = await served_model(_models(request), config)
    body = signed_zip(model, config, release) if signed else model
    return Response(content=body, media_type=OCTET)


# -- import and reset --------------------------------------------------------------------


def unpack(body: bytes) -> bytes:
    """The VW model bytes of an import body: raw bytes, or a zip as ``GET model?signed=true``
    answers (its checksum is verified)."""
    if not body:
        raise PersonalizerError(400, "InvalidModelImportFormat", "the model file is empty")
    if not zipfile.is_zipfile(io.BytesIO(body)):
        return body
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            inner = ZIP_MODEL if ZIP_MODEL in names else None
            if inner is None:
                others = [n for n in names if n != ZIP_MANIFEST and not n.endswith(".json")]
                if len(others) != 1:
                    raise PersonalizerError(
                        400,
                        "InvalidModelImportFormat",
                        f"the zip archive must hold {ZIP_MODEL} (or exactly one model file); "
                        f"it holds {', '.join(names) or 'nothing'}",
                    )
                inner = others[0]
            model = archive.read(inner)
            manifest = json.loads(archive.read(ZIP_MANIFEST)) if ZIP_MANIFEST in names else {}
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise PersonalizerError(
            400, "InvalidModelImportFormat", f"the zip archive cannot be read: {exc}"
        ) from exc
    expected = manifest.get("sha256") if isinstance(manifest, dict) else None
    if expected is not None and hashlib.sha256(model).hexdigest() != expected:
        raise PersonalizerError(
            400,
            "InvalidModelImportSignature",
            f"{inner} does not match the SHA-256 of the archive's {ZIP_MANIFEST}: "
            "the archive was altered or truncated",
        )
    return model


def _check_model(model: bytes, vw_args: str) -> None:
    """Load the bytes as VW does and rank two actions with them (runs in a thread)."""
    policy = VWPolicy(vw_args, model)
    try:
        arguments = policy._ws.get_arguments()
        if "--cb_explore_adf" not in arguments:
            raise ValueError(
                "it is not a --cb_explore_adf model (its arguments: "
                f"{' '.join(a for a in arguments if a.startswith('--'))})"
            )
        pmf = policy.predict(Context(), "visitor", [Action(id="a"), Action(id="b")])
        if len(pmf) != 2 or not all(math.isfinite(p) for p in pmf):
            raise ValueError("it does not rank actions")
    finally:
        policy.close()


async def validate_model(model: bytes, vw_args: str) -> None:
    try:
        await asyncio.to_thread(_check_model, model, vw_args)
    except Exception as exc:  # VW raises RuntimeError for anything it cannot read
        raise PersonalizerError(
            400,
            "InvalidModelImportFormat",
            f"the body is not a Vowpal Wabbit contextual-bandit model this loop can serve: {exc}",
        ) from exc


async def publish_model(
    request: Request, config: DecisionPointConfig, model: bytes, action: str
) -> ModelRelease:
    """Publish ``model`` as the loop's next release made by ``action`` (import/reset),
    audit it, serve it from this worker at once."""
    assert action in LINEAGE_STARTS
    now = _clock(request).now()
    audit_id = new_audit_id(config.name, action)
    stored, previous = await publish_next(
        _models(request),
        config.name,
        model,
        now,
        vw_args=config.vw_args,
        examples_learned=0,
        source="import" if action == "import" else "reset",
        audit_id=audit_id,
    )
    audit: AuditLog | None = getattr(request.app.state, "audit", None)
    if audit is not None:
        await audit.append(
            ModelAuditRecord(
                audit_id=audit_id,
                timestamp=now,
                action="import" if action == "import" else "reset",
                by=AUDIT_BY,
                decision_point=config.name,
                version=stored.version,
                previous_version=None if previous is None else previous.version,
                vw_args_before=None if previous is None else previous.vw_args,
                vw_args_after=config.vw_args,
            )
        )
    registry = getattr(request.app.state, "registry", None)
    if registry is not None:
        await registry.refresh(config.name)
    return stored


@preview_router.put("/model", status_code=204, summary="Import a model")
async def put_model(request: Request, config: Loop) -> Response:
    """VW model bytes (or a ``signed=true`` export) as the loop's next release: 400
    ``InvalidModelImportFormat`` and nothing published if VW cannot serve them."""
    body = await request.body()
    if len(body) > MAX_MODEL_BYTES:
        raise PersonalizerError(413, "PayloadSizeExceeded", "the model file is over 256 MiB")
    model = unpack(body)
    await validate_model(model, config.vw_args)
    await publish_model(request, config, model, "import")
    return Response(status_code=204)


@router.delete("/model", status_code=204, summary="Reset the model")
async def delete_model(request: Request, config: Loop) -> Response:
    """Publish a fresh untrained model with the loop's ``vw_args``: learning starts over."""
    await publish_model(request, config, await _fresh_model(config.vw_args), "reset")
    return Response(status_code=204)


# -- properties --------------------------------------------------------------------------


def lineage(history: list[StoredRelease]) -> tuple[datetime, datetime] | None:
    """(creation, last modification) of the current model: when the chain of releases
    that continued one another began (an import, a reset, new ``vw_args`` or the first
    release), and the current release's time. ``history`` is newest first."""
    if not history:
        return None
    newest = history[0].release
    created = newest.timestamp
    for entry, older in zip(history, [*history[1:], None], strict=True):
        created = entry.release.timestamp
        if entry.release.source in LINEAGE_STARTS or older is None:
            break
        if older.release.vw_args != entry.release.vw_args:
            break
    return created, newest.timestamp


async def _unreleased_since(store: PersonalizerStore, loop: str, now: datetime) -> datetime:
    """When this loop was first asked about a model it has not released yet (kept, so
    the answer does not move)."""
    await store.put_if_absent(loop, "state", "model", {"created": now.isoformat()})
    found = await store.get(loop, "state", "model") or {}
    return datetime.fromisoformat(found.get("created", now.isoformat()))


@router.get("/model/properties", summary="The model's creation and modification times")
async def get_model_properties(
    request: Request, config: Loop, name: LoopName, store: Store
) -> dict[str, Any]:
    models = _models(request)
    current = await models.current(name)
    span = None
    if current is not None and current.vw_args == config.vw_args:
        span = lineage(await models.history(name))
    if span is None:  # no release, or new vw_args not released yet: an untrained model
        since = await _unreleased_since(store, name, _clock(request).now())
        span = (since, since)
    answer = ModelProperties(creation_time=span[0], last_modified_time=span[1])
    return answer.model_dump(mode="json", by_alias=True)


@router.get("/logs/properties", summary="The time range of the loop's logs")
async def get_logs_properties(request: Request, name: LoopName, store: Store) -> dict[str, Any]:
    """The first and last decision logged since the last clear; both ``null`` before any."""
    span = await log_span(request).span(name)
    found = DateRange() if span is None else DateRange(from_=span[0], to=span[1])
    answer = LogsProperties(date_range=found).model_dump(mode="json", by_alias=True)
    return answer


@router.delete("/logs", status_code=204, summary="Clear the loop's logs")
async def delete_logs(request: Request, name: LoopName, store: Store) -> Response:
    """A logical clear: learnloop's event log is append-only and shared, so the loop's
    log span restarts now and evaluations read only later decisions."""
    await log_span(request).clear(name, _clock(request).now())
    return Response(status_code=204)
