"""What one Personalizer evaluation or feature-importance job does, in its own process.

:func:`run_job` reads the job document the API stored (``schemas.personalizer_evaluations
.JobDocument``), records its pid, host and a heartbeat, reads the loop's joined examples
of the job's time range (the embedded event log, or the Kafka ``joined`` topic; not
before the logs were last deleted), computes (:mod:`runtime.personalizer_job_compute`)
and writes ``succeeded`` with the result, or ``failed`` with why. Any exception ends as
``failed``; a cancellation (SIGTERM) as ``canceled``; a job is never left ``running`` by
its own process. A job deleted while it runs stops at its next heartbeat and is not
written back. A succeeded ``Auto`` evaluation then applies the optimized settings or
keeps the online ones (:mod:`runtime.personalizer_auto_apply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from app.personalizer.jobs import JobKind
from learnloop.errors import InvalidInput
from learnloop.personalizer_store import PersonalizerStore
from learnloop.settings import Settings
from runtime.personalizer_auto_apply import Settle, settle_with
from schemas.personalizer_evaluations import JobDocument, JobStatus

if TYPE_CHECKING:  # the offline learner (and scipy) load in the job process only: every
    # API worker imports this module for mark_failed, and must start in a second
    from offline_learner.dataset import Dataset

log = logging.getLogger("learnloop.personalizer.jobs")

KINDS: Final = ("evaluation", "feature_importance")
HEARTBEAT_SECONDS: Final = 5.0
"""How often a running job rewrites its heartbeat (the routes call a job whose heartbeat
is much older than this dead)."""

DatasetSource = Callable[[Settings, str, datetime, datetime], "Dataset"]


class NoLogs(Exception):
    """Nothing was logged for the loop in the job's time range."""


def _now() -> datetime:
    return datetime.now(UTC)


async def mark_failed(
    store: PersonalizerStore,
    kind: JobKind,
    loop: str,
    job_id: str,
    message: str,
    *,
    status: JobStatus = "failed",
    code: str | None = None,
) -> bool:
    """End a job that is still ``running`` (the process that ran it is gone); whether it
    was. A job that already finished, or was deleted, is left alone."""
    found = await store.get(loop, kind, job_id)
    if found is None or found.get("status") != "running":
        return False
    job = JobDocument.model_validate(found)
    job.status, job.message, job.error_code, job.finished = status, message, code, _now()
    await store.put(loop, kind, job_id, job.model_dump(mode="json"))
    return True


def default_dataset(settings: Settings, loop: str, start: datetime, end: datetime) -> Dataset:
    """The loop's joined examples with a decision time in ``[start, end)``."""
    from offline_learner.dataset import Dataset

    if settings.backend == "kafka":
        from learnloop.kafka.topics import TopicNames

        return Dataset.from_kafka(
            settings.kafka_bootstrap,
            TopicNames(settings.topic_prefix).topic("joined"),
            decision_point=loop,
            start=start,
            end=end,
            timeout_seconds=settings.connect_timeout_seconds,
        )
    return Dataset.from_event_log(settings.data_dir, decision_point=loop, start=start, end=end)


async def _logs_begin(store: PersonalizerStore, loop: str) -> datetime | None:
    """When the loop's logs were last deleted (``DELETE logs``): nothing before counts."""
    span = await store.get(loop, "state", "logs") or {}
    cleared = span.get("cleared")
    return datetime.fromisoformat(cleared) if isinstance(cleared, str) else None


async def _heartbeat(
    store: PersonalizerStore, kind: JobKind, loop: str, job_id: str, stop: Callable[[], object]
) -> None:
    """Beat every :data:`HEARTBEAT_SECONDS`; ``stop`` the job once its document is gone
    (deleted) or no longer ``running`` (the API ended it): nobody wants its answer."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        found = await store.get(loop, kind, job_id)
        if found is None or found.get("status") != "running":
            log.info("Personalizer %s job %s was deleted or ended: stopping", kind, job_id)
            stop()
            return
        found["heartbeat"] = _now().isoformat()
        await store.put(loop, kind, job_id, found)


async def run_job(
    kind: JobKind,
    loop: str,
    job_id: str,
    settings: Settings,
    store: PersonalizerStore,
    *,
    dataset: DatasetSource = default_dataset,
    auto: Settle | None = None,
) -> JobDocument | None:
    """Run the job stored under ``(loop, kind, job_id)`` to its end; its final document
    (``None`` when there is no such job, or it was deleted or ended by the API while it
    ran). ``dataset`` makes the rows and ``auto`` ends an ``Auto`` evaluation (by default
    over the decision-point store of ``settings``; tests pass their own)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    found = await store.get(loop, kind, job_id)
    if found is None:
        log.warning("Personalizer %s job %s of loop %s: no such job", kind, job_id, loop)
        return None
    job = JobDocument.model_validate(found)
    if job.status != "running":
        return job
    job.pid, job.host = os.getpid(), socket.gethostname()
    job.started = job.heartbeat = _now()
    await store.put(loop, kind, job_id, job.model_dump(mode="json"))
    job_task = asyncio.current_task()
    stop = job_task.cancel if job_task is not None else (lambda: None)
    beating = asyncio.create_task(_heartbeat(store, kind, loop, job_id, stop))
    try:
        begin = await _logs_begin(store, loop)
        start = max(job.start_time, begin) if begin is not None else job.start_time
        rows = dataset(settings, loop, start, job.end_time)
        if start >= job.end_time or await asyncio.to_thread(_fewer_than_two, rows):
            raise NoLogs(
                f"loop {loop!r} logged fewer than 2 activated decisions with a reward between "
                f"{job.start_time.isoformat()} and {job.end_time.isoformat()}"
                + (f" (its logs were deleted at {begin.isoformat()})" if begin else "")
            )
        from runtime.personalizer_job_compute import compute_evaluation, compute_importance

        work = compute_evaluation if kind == "evaluation" else compute_importance
        job = await asyncio.wait_for(
            asyncio.to_thread(work, job, rows), settings.personalizer_job_timeout_seconds
        )
        job.status, job.error_code = "succeeded", None
        if kind == "evaluation" and job.evaluation_type == "Auto":
            job = await (auto or settle_with(settings))(job, loop)
    except asyncio.CancelledError:
        job.status, job.message = "canceled", "the job was stopped before it finished"
        raise
    except TimeoutError:
        job.status, job.error_code = "timeout", "RequestTimeout"
        job.message = (
            f"the job ran longer than {settings.personalizer_job_timeout_seconds:g} s "
            "(LEARNLOOP_PERSONALIZER_JOB_TIMEOUT_SECONDS)"
        )
    except NoLogs as exc:
        job.status, job.error_code, job.message = "failed", "NoLogsExistInDateRange", str(exc)
    except InvalidInput as exc:
        job.status, job.error_code, job.message = "failed", "InvalidEvaluationContract", str(exc)
    except Exception as exc:  # any failure is the job's answer, never a job left running
        log.exception("Personalizer %s job %s failed", kind, job_id)
        job.status, job.error_code = "failed", "InternalServerError"
        job.message = f"the job failed: {type(exc).__name__}: {exc}"
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beating
        job.finished = job.heartbeat = _now()
        saved = await _save_unless_deleted(store, kind, loop, job)
    log.info("Personalizer %s job %s of loop %s: %s", kind, job_id, loop, job.status)
    return job if saved else None


def _fewer_than_two(rows: Dataset) -> bool:
    try:
        return rows.take(2).count() < 2
    except InvalidInput as exc:
        if "no embedded event log" in str(exc):  # nothing was ever logged here
            return True
        raise


async def _save_unless_deleted(
    store: PersonalizerStore, kind: JobKind, loop: str, job: JobDocument
) -> bool:
    """Write the final document, unless the job was deleted meanwhile or the API already
    ended it (it timed out, or its heartbeat was missed): the answer clients saw stays."""
    found = await store.get(loop, kind, job.id)
    if found is None or found.get("status") != "running":
        return False
    await store.put(loop, kind, job.id, job.model_dump(mode="json"))
    return True
