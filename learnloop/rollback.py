"""Publishing a chosen model as a decision point's next release, and rollback.

What a person does to what a decision point serves, in the kernel so that every
front end can do it: ``learnloop models rollback`` and ``learnloop offline
promote`` (through :mod:`offline_learner.promotion`) in both modes, and
``POST /v1/models/{decision_point}/rollback``. Only the stores passed in are
touched (model store, decision points, audit log).

The order of one promotion or rollback, and why:

1. **publish** the release (version = the current one + 1, ``last_offset`` =
   the current release's, so the online learner, restarted or not, reads on
   from where it is), after pinning the current release's model so it stays
   restorable however many online releases follow. A ``Conflict`` means the
   online learner published meanwhile: read the current release again and retry.
2. **configure**: the decision point's ``vw_args`` become the release's. Until
   then the decision service keeps serving the old model (it serves a release
   only if its arguments match the configuration), and the online learner,
   which adopts the new release before it publishes again, does not start a
   fresh model when it sees the change (the adopted model already has them).
3. **audit**: the record, last, so one exists only for a release that was made.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from learnloop.audit import AuditLog
from learnloop.decision_points import DecisionPointStore
from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.modelstore.base import ModelStore
from schemas.audit import ModelAuditRecord
from schemas.config import DecisionPointConfig
from schemas.events import ModelRelease, ReleaseSource

PUBLISH_ATTEMPTS: Final = 5
"""Tries to publish while the online learner keeps taking the next version number."""

_MODEL_METRICS: Final = frozenset({"ips_reward", "ips_samples", "learn_per_second"})
"""Metrics of the model that made a release (not of the stream): not carried over."""


async def rollback(
    store: ModelStore,
    decision_points: DecisionPointStore,
    audit: AuditLog,
    *,
    decision_point: str,
    to_version: int | None = None,
    by: str,
    now: datetime,
) -> tuple[ModelRelease, ModelAuditRecord]:
    """Republish an earlier release's model bytes as the next release (``source="rollback"``)
    and restore its ``vw_args`` on the decision point; audit it.

    ``to_version`` defaults to the release before the current one. Refused:
    a version not in the history (:class:`NotFound`), the current version, and a
    version whose model bytes were pruned (:class:`InvalidInput`).
    """
    config = await decision_point_config(decision_points, decision_point)
    history = await store.history(decision_point)
    if not history:
        raise NotFound(f"decision point {decision_point!r} has no model releases to roll back")
    current = history[0].release
    if to_version is None:
        if len(history) < 2:
            raise InvalidInput(
                f"{decision_point} has only one release (v{current.version}): nothing earlier "
                "to roll back to"
            )
        to_version = history[1].release.version
    entry = next((h for h in history if h.release.version == to_version), None)
    kept = [h.release.version for h in history if h.model_kept]
    if entry is None:
        raise NotFound(
            f"{decision_point} has no release v{to_version} in its history "
            f"(v{history[-1].release.version}..v{current.version}): "
            "`learnloop models list` shows them"
        )
    if to_version == current.version:
        raise InvalidInput(f"v{to_version} is the current release of {decision_point} already")
    if not entry.model_kept:
        raise InvalidInput(
            f"the model of {decision_point} v{to_version} is no longer stored (only the newest "
            f"releases and every promotion and rollback keep their bytes): choose one of "
            f"{', '.join(f'v{v}' for v in kept)}"
        )
    target = entry.release
    model = await store.load(target)
    updated = with_vw_args(config, target.vw_args)
    audit_id = new_audit_id(decision_point, "rollback")
    stored, previous = await publish_next(
        store,
        decision_point,
        model,
        now,
        vw_args=updated.vw_args,
        examples_learned=target.examples_learned,
        source="rollback",
        audit_id=audit_id,
        restores_version=target.version,
    )
    await decision_points.put(updated)
    record = ModelAuditRecord(
        audit_id=audit_id,
        timestamp=now,
        action="rollback",
        by=by,
        decision_point=decision_point,
        version=stored.version,
        previous_version=None if previous is None else previous.version,
        restores_version=target.version,
        vw_args_before=config.vw_args,
        vw_args_after=updated.vw_args,
    )
    await audit.append(record)
    return stored, record


async def publish_next(
    store: ModelStore,
    decision_point: str,
    model: bytes,
    now: datetime,
    *,
    vw_args: str,
    examples_learned: int,
    source: ReleaseSource,
    audit_id: str,
    restores_version: int | None = None,
) -> tuple[ModelRelease, ModelRelease | None]:
    """Publish ``model`` as the version after the current one, retrying on ``Conflict``;
    the stored release and the one it replaced."""
    for _ in range(PUBLISH_ATTEMPTS):
        previous = await store.current(decision_point)
        if previous is not None:
            await store.pin(decision_point, previous.version)  # the one to come back to
        version = 1 if previous is None else previous.version + 1
        release = ModelRelease(
            event_id=f"{decision_point}-v{version}",
            timestamp=now,
            decision_point=decision_point,
            version=version,
            vw_args=vw_args,
            model_location="",
            examples_learned=examples_learned,
            last_offset=-1 if previous is None else previous.last_offset,
            metrics=_stream_metrics(previous),
            source=source,
            restores_version=restores_version,
            audit_id=audit_id,
        )
        try:
            return await store.publish(release, model), previous
        except Conflict:
            continue  # the online learner took that version: read the current one again
    raise Conflict(
        f"could not publish {decision_point}: the current version kept changing over "
        f"{PUBLISH_ATTEMPTS} attempts; try again"
    )


def _stream_metrics(previous: ModelRelease | None) -> dict[str, float]:
    """The stream's counters of the replaced release (rewards, close reasons), which the
    online learner carries on with; not its model's (off-policy reward, throughput)."""
    if previous is None:
        return {}
    return {k: v for k, v in previous.metrics.items() if k not in _MODEL_METRICS}


async def decision_point_config(
    decision_points: DecisionPointStore, name: str
) -> DecisionPointConfig:
    """The decision point's configuration, or :class:`NotFound` naming how to create it."""
    config = await decision_points.get(name)
    if config is None:
        raise NotFound(
            f"decision point {name!r} does not exist: create it first "
            "(PUT /v1/decision-points/{name} or the --config file)"
        )
    return config


def with_vw_args(config: DecisionPointConfig, vw_args: str) -> DecisionPointConfig:
    """``config`` with ``vw_args``, validated as any configuration is."""
    data: dict[str, Any] = config.model_dump()
    data["vw_args"] = vw_args
    try:
        return DecisionPointConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"vw_args {vw_args!r} refused: {_first_error(exc)}") from exc


def check_vw_args(vw_args: str) -> None:
    """Refuse (:class:`InvalidInput`) VW arguments no decision point may have."""
    try:
        DecisionPointConfig(name="check", vw_args=vw_args)
    except ValidationError as exc:
        raise InvalidInput(f"vw_args {vw_args!r} refused: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    return str(exc.errors()[0].get("msg", exc))


def new_audit_id(decision_point: str, action: str) -> str:
    """A fresh audit record id, e.g. ``home-promote-1f2e3d4c5b6a``."""
    return f"{decision_point}-{action}-{uuid.uuid4().hex[:12]}"
