"""Promotion, release history and rollback wired to either mode's stores.

Composition root for ``learnloop offline promote`` and ``learnloop models
list|audit|rollback``. The service may be running: its learner and API workers
are other processes, so everything goes through the stores, never through
in-process state.

- **embedded**: the data directory's stores -- ``models/`` (history and pinned
  models), ``decision_points.sqlite``, ``audit.sqlite``. The API workers notice
  the new manifest on their next poll; the loop process's learner adopts it.
- **kafka**: the Redis model store (its pub/sub notification swaps the API
  replicas), the Redis decision points and audit list, and the release
  announced on the releases topic like the Kafka learner's releases.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from learnloop.audit import FILE_NAME as AUDIT_FILE
from learnloop.audit import AuditLog, SqliteAuditLog
from learnloop.clock import Clock, SystemClock
from learnloop.decision_point_store import FILE_NAME as DECISION_POINTS_FILE
from learnloop.decision_point_store import SqliteDecisionPointStore
from learnloop.decision_points import DecisionPointStore, load_config_file
from learnloop.errors import InvalidInput, Unavailable
from learnloop.modelstore.base import ModelStore
from learnloop.modelstore.local import LocalModelStore
from learnloop.settings import Settings
from schemas.api import StoredRelease
from schemas.audit import ModelAuditRecord
from schemas.events import ModelRelease

log = logging.getLogger("learnloop")


@dataclass
class ReleaseStores:
    """The stores a promotion or rollback writes, and how a new release is announced."""

    models: ModelStore
    decision_points: DecisionPointStore
    audit: AuditLog
    announcer: Callable[[ModelRelease], Any] | None = None

    async def announce(self, release: ModelRelease) -> None:
        """Tell the rest of the deployment (distributed: the releases topic)."""
        if self.announcer is not None:
            await self.announcer(release)


@contextlib.asynccontextmanager
async def open_release_stores(settings: Settings) -> AsyncIterator[ReleaseStores]:
    """The model store, decision points and audit log of ``settings.backend``."""
    if settings.backend == "kafka":
        async with _distributed(settings) as stores:
            yield stores
        return
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise InvalidInput(
            f"no data directory at {data_dir}: pass the --data-dir of `learnloop serve`"
        )
    points = SqliteDecisionPointStore(data_dir / DECISION_POINTS_FILE)
    audit = SqliteAuditLog(data_dir / AUDIT_FILE)
    models = LocalModelStore(data_dir / "models")  # as the embedded services open it
    try:
        await points.seed(load_config_file(settings.config))  # as `serve` would, never overwriting
        yield ReleaseStores(models, points, audit)
    finally:
        await audit.close()
        await points.close()
        await models.close()


@contextlib.asynccontextmanager
async def _distributed(settings: Settings) -> AsyncIterator[ReleaseStores]:
    from learnloop.audit_redis import RedisAuditLog
    from learnloop.decision_point_store_redis import RedisDecisionPointStore
    from learnloop.kafka import codec
    from learnloop.kafka.connect import connect_redis, start_producer_for
    from learnloop.kafka.topics import TopicNames
    from learnloop.modelstore.redis import RedisModelStore

    redis = await connect_redis(settings.redis_url, settings.connect_timeout_seconds)
    names = TopicNames(settings.topic_prefix)
    producers: list[Any] = []

    async def announce(release: ModelRelease) -> None:
        from aiokafka.errors import KafkaError

        try:
            if not producers:
                producers.append(await start_producer_for(settings, linger_ms=0))
            record = codec.to_record(release, names)
            await producers[0].send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        except KafkaError as exc:
            # The model store already serves it; the topic is the audit trail of releases.
            raise Unavailable(
                f"{release.decision_point} v{release.version} is published, but the releases "
                f"topic did not acknowledge its announcement: {exc!r}"
            ) from exc

    try:
        points = RedisDecisionPointStore(redis, settings.redis_prefix)
        await points.seed(load_config_file(settings.config))
        yield ReleaseStores(
            RedisModelStore(redis, settings.redis_prefix, keep=settings.model_keep_versions),
            points,
            RedisAuditLog(redis, settings.redis_prefix),
            announcer=announce,
        )
    finally:
        for producer in producers:
            with contextlib.suppress(Exception):
                await producer.stop()
        await redis.aclose()


def default_user() -> str:
    """Who runs the command, for the audit record when ``--by`` is not given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def estimate_from_file(path: Path, vw_args: str) -> dict[str, JsonValue]:
    """The estimate to record from ``--estimate-json``: the output of ``learnloop offline
    optimize --json`` or ``evaluate --json`` (the entry for ``vw_args``), or one estimate."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the estimate JSON {path}: {exc}") from exc
    return estimate_from_payload(payload, vw_args, str(path))


def estimate_from_payload(
    payload: Any, vw_args: str, where: str = "the estimate"
) -> dict[str, JsonValue]:
    """See :func:`estimate_from_file`; refuses a payload that does not describe ``vw_args``."""
    from online_learner.learner import same_vw_args

    if not isinstance(payload, Mapping):
        raise InvalidInput(f"{where} is not a JSON object")
    kind = payload.get("kind")
    if kind == "optimization":
        trials = [payload.get("best"), *(payload.get("trials") or [])]
        for trial in trials:
            if isinstance(trial, Mapping) and same_vw_args(str(trial.get("vw_args", "")), vw_args):
                return {
                    "kind": "optimization",
                    "primary": payload.get("primary"),
                    "vw_args": trial.get("vw_args"),
                    "estimate": trial.get("estimate"),
                    "difference": trial.get("difference"),
                    "significantly_better": payload.get("significantly_better"),
                    "current": payload.get("current"),
                    "split": payload.get("split"),
                }
        raise InvalidInput(f"{where}: no trial of that optimization used --vw-args {vw_args!r}")
    if kind == "evaluation":
        primary = str(payload.get("primary", "SNIPS"))
        for candidate in payload.get("candidates") or []:
            if isinstance(candidate, Mapping) and same_vw_args(
                str(candidate.get("vw_args") or ""), vw_args
            ):
                return {
                    "kind": "evaluation",
                    "primary": primary,
                    "vw_args": candidate.get("vw_args"),
                    "estimate": (candidate.get("estimates") or {}).get(primary),
                    "difference": candidate.get("difference"),
                    "reference": payload.get("reference"),
                }
        raise InvalidInput(f"{where}: no candidate of that evaluation used --vw-args {vw_args!r}")
    if "estimator" in payload and "value" in payload:
        return {"kind": "estimate", "estimate": dict(payload)}
    raise InvalidInput(
        f"{where} is neither `learnloop offline optimize --json` nor `evaluate --json` output "
        "nor one estimate ({estimator, value, lower, upper, ...})"
    )


async def promote_dataset(
    settings: Settings,
    dataset_path: Path,
    *,
    decision_point: str,
    vw_args: str,
    estimate: Mapping[str, JsonValue] | None = None,
    by: str | None = None,
    progress: Callable[[int], None] | None = None,
    clock: Clock | None = None,
) -> tuple[ModelRelease, ModelAuditRecord]:
    """Warm-start a model on the dataset and promote it (see :mod:`offline_learner.promotion`)."""
    import asyncio

    from offline_learner.dataset import Dataset
    from offline_learner.promotion import promote, warm_start

    clock = clock or SystemClock()
    dataset = Dataset.open(dataset_path, decision_point)
    async with open_release_stores(settings) as stores:
        if await stores.decision_points.get(decision_point) is None:
            raise InvalidInput(
                f"decision point {decision_point!r} does not exist in the "
                f"{settings.backend} stores: create it first"
            )
        warm = await asyncio.to_thread(
            warm_start,
            dataset,
            vw_args,
            decision_point=decision_point,
            source=str(dataset_path.resolve()),
            progress=progress,
        )
        release, record = await promote(
            stores.models,
            stores.decision_points,
            stores.audit,
            decision_point=decision_point,
            warm=warm,
            estimate=estimate,
            by=by or default_user(),
            now=clock.now(),
        )
        await stores.announce(release)
    return release, record


async def rollback_release(
    settings: Settings,
    decision_point: str,
    *,
    to_version: int | None = None,
    by: str | None = None,
    clock: Clock | None = None,
) -> tuple[ModelRelease, ModelAuditRecord]:
    """Roll ``decision_point`` back (see :func:`offline_learner.promotion.rollback`)."""
    from offline_learner.promotion import rollback

    clock = clock or SystemClock()
    async with open_release_stores(settings) as stores:
        release, record = await rollback(
            stores.models,
            stores.decision_points,
            stores.audit,
            decision_point=decision_point,
            to_version=to_version,
            by=by or default_user(),
            now=clock.now(),
        )
        await stores.announce(release)
    return release, record


async def release_history(
    settings: Settings, decision_point: str, limit: int | None = None
) -> tuple[list[StoredRelease], list[ModelAuditRecord]]:
    """The decision point's releases and audit records, newest first."""
    async with open_release_stores(settings) as stores:
        return (
            await stores.models.history(decision_point, limit),
            await stores.audit.records(decision_point, limit),
        )
