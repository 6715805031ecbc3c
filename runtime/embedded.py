"""The embedded mode: API, join and online learner in one process over local files.

Composition root: the one place (with :mod:`runtime.cli` and
:mod:`runtime.distributed`) that imports the service packages and wires them.
Everything lives under ``settings.data_dir``::

    data/log/events.sqlite          decisions, outcomes, rewards, activations, joined
                                    examples, dropped events, join checkpoint
    data/decision_points.sqlite     decision-point configuration (seeded from --config)
    data/models/<point>/            model releases and the current manifest
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from app.main import create_app
from join_service.embedded_runner import EmbeddedJoinRunner
from join_service.metrics import JoinMetrics
from learnloop.clock import Clock, SystemClock
from learnloop.decision_point_store import FILE_NAME as DECISION_POINTS_FILE
from learnloop.decision_point_store import SqliteDecisionPointStore
from learnloop.decision_points import load_config_file
from learnloop.eventlog.base import Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.modelstore.local import LocalModelStore
from learnloop.settings import Settings
from online_learner.embedded_runner import EmbeddedLearnerRunner
from online_learner.metrics import LearnerMetrics
from runtime.http_server import serve_http
from schemas.dsjson import to_dsjson
from schemas.events import JoinedExample

log = logging.getLogger("learnloop")


@dataclass
class EmbeddedRuntime:
    """The wired embedded service: stores, app and the two background runners."""

    settings: Settings
    events: SqliteEventLog
    decision_points: SqliteDecisionPointStore
    models: LocalModelStore
    app: FastAPI
    join: EmbeddedJoinRunner
    learner: EmbeddedLearnerRunner

    async def close(self) -> None:
        await self.decision_points.close()
        await self.models.close()
        await self.events.close()


async def open_runtime(settings: Settings, clock: Clock | None = None) -> EmbeddedRuntime:
    """Open the stores under ``settings.data_dir`` and wire app, join and learner."""
    clock = clock or SystemClock()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    events = SqliteEventLog(data_dir / "log", batch_max=settings.log_batch_max)
    decision_points = SqliteDecisionPointStore(data_dir / DECISION_POINTS_FILE)
    added = await decision_points.seed(load_config_file(settings.config))
    if added:
        log.info("installed decision points %s", ", ".join(added))
    models = LocalModelStore(data_dir / "models")
    app = create_app(
        settings, events=events, decision_points=decision_points, models=models, clock=clock
    )
    registry = app.state.metrics_registry
    join = EmbeddedJoinRunner(
        events,
        decision_points,
        clock=clock,
        metrics=JoinMetrics(registry),
        checkpoint_seconds=settings.join_checkpoint_seconds,
    )
    learner = EmbeddedLearnerRunner(
        events,
        models,
        decision_points,
        clock=clock,
        metrics=LearnerMetrics(registry),
        release_every_examples=settings.release_every_examples,
        release_every_seconds=settings.release_every_seconds,
    )
    return EmbeddedRuntime(settings, events, decision_points, models, app, join, learner)


@contextlib.asynccontextmanager
async def running(runtime: EmbeddedRuntime) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the join and the learner as tasks; cancel them (join checkpoints) on exit."""
    tasks = [
        asyncio.create_task(runtime.join.run(), name="learnloop-join"),
        asyncio.create_task(runtime.learner.run(), name="learnloop-learner"),
    ]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def serve_embedded(settings: Settings) -> None:
    """``learnloop serve``: the API on ``host:port`` with join and learner alongside, until
    SIGTERM or SIGINT; then the runners stop and the log and join state are closed."""
    # VW learns in a worker thread holding the GIL; a shorter switch interval keeps
    # request latency low while it does.
    sys.setswitchinterval(0.001)
    runtime = await open_runtime(settings)
    log.info(
        "learnloop serving on http://%s:%d (data in %s)",
        settings.host,
        settings.port,
        settings.data_dir.resolve(),
    )
    try:
        async with running(runtime) as tasks:
            await serve_http(runtime.app, settings, tasks)
    finally:
        await runtime.close()


async def export_joined(settings: Settings, output: Path, decision_point: str | None) -> int:
    """Write the joined examples of the embedded log as VW DSJson lines."""
    events = SqliteEventLog(settings.data_dir / "log")
    count = 0
    offset = -1
    try:
        with output.open("w") as out:
            while records := await events.read([Streams.JOINED], offset, 5000):
                for record in records:
                    example = JoinedExample.model_validate_json(record.value)
                    if decision_point is None or example.decision.decision_point == decision_point:
                        out.write(to_dsjson(example) + "\n")
                        count += 1
                offset = records[-1].offset
    finally:
        await events.close()
    return count
