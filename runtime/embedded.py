"""The embedded mode: API worker processes and one loop process over local files.

Composition root (with :mod:`runtime.cli` and :mod:`runtime.distributed`): the one
place that wires the service packages to the local stores. ``learnloop serve``
(:mod:`runtime.supervisor`) runs N :func:`serve_api_worker` processes and one
:func:`run_loop` process (the join and the online learner); none of them shares a
GIL with another. Everything lives under ``settings.data_dir`` and is shared by
all of them::

    data/log/events.sqlite          decisions, outcomes, rewards, activations, joined
                                    examples, dropped events, join checkpoint
                                    (SQLite WAL: every process appends, one at a time)
    data/decision_points.sqlite     decision-point configuration (seeded from --config)
    data/flags.sqlite               feature flags and their audit history
    data/profiles.sqlite            user profiles (bulk imports, real-time updates of the
                                    loop process and their checkpoint)
    data/audit.sqlite               who promoted or rolled back which model, and why
    data/personalizer.sqlite        the Personalizer-compatible API's settings, evaluations
                                    and feature-importance jobs (every API worker reads it)
    data/models/<point>/            model releases and the current manifest
    data/personas/                  persona models (CatBoost; the API workers swap them in)
    data/personas/online/           river persona models the loop process learns from labels
    data/run/                       pids of the running processes, Prometheus files
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from app.main import create_app
from join_service.embedded_runner import EmbeddedJoinRunner
from join_service.metrics import JoinMetrics
from learnloop.audit import FILE_NAME as AUDIT_FILE
from learnloop.audit import SqliteAuditLog
from learnloop.clock import Clock, SystemClock
from learnloop.decision_point_store import FILE_NAME as DECISION_POINTS_FILE
from learnloop.decision_point_store import SqliteDecisionPointStore
from learnloop.decision_points import load_config_file
from learnloop.eventlog.base import Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.flag_store_sqlite import FILE_NAME as FLAGS_FILE
from learnloop.flag_store_sqlite import SqliteFlagStore
from learnloop.modelstore.local import LocalModelStore
from learnloop.persona_models import open_persona_model_store
from learnloop.persona_online import open_online_persona_model_store
from learnloop.personalizer_store_sqlite import SqlitePersonalizerStore
from learnloop.profile_runner import EmbeddedProfileRunner
from learnloop.profile_store_sqlite import FILE_NAME as PROFILES_FILE
from learnloop.profile_store_sqlite import SqliteProfileStore
from learnloop.settings import Settings
from learnloop.shutdown import on_stop_signal
from online_learner.embedded_runner import EmbeddedLearnerRunner
from online_learner.metrics import LearnerMetrics
from online_learner.persona_labels import PersonaLabelLearner
from runtime.http_server import serve_http
from runtime.personalizer_jobs import SubprocessJobLauncher
from schemas.dsjson import to_dsjson
from schemas.events import JoinedExample

log = logging.getLogger("learnloop")


@dataclass
class EmbeddedStores:
    """The stores under ``settings.data_dir``, opened by one process."""

    events: SqliteEventLog
    decision_points: SqliteDecisionPointStore
    models: LocalModelStore
    profiles: SqliteProfileStore

    async def close(self) -> None:
        try:
            await self.decision_points.close()
            await self.models.close()
            await self.profiles.close()
        finally:
            await self.events.close()


def open_stores(settings: Settings, *, checkpoints: bool = True) -> EmbeddedStores:
    """Open (creating if missing) the event log, decision points and model store.
    ``checkpoints=False``: this process leaves WAL checkpoints to the loop process."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedStores(
        SqliteEventLog(data_dir / "log", batch_max=settings.log_batch_max, checkpoints=checkpoints),
        SqliteDecisionPointStore(data_dir / DECISION_POINTS_FILE),
        LocalModelStore(data_dir / "models"),
        SqliteProfileStore(data_dir / PROFILES_FILE),
    )


async def prepare_data_dir(settings: Settings) -> None:
    """Before any worker starts: create the stores and install the configured decision
    points that do not exist yet (never overwriting an admin's change)."""
    stores = open_stores(settings)
    try:
        added = await stores.decision_points.seed(load_config_file(settings.config))
        if added:
            log.info("installed decision points %s", ", ".join(added))
    finally:
        await stores.close()


async def serve_api_worker(settings: Settings, listener: socket.socket | None = None) -> None:
    """One API worker: the decision service on the supervisor's ``listener`` (or, without
    one, on ``host:port``) until SIGTERM or SIGINT; then its stores close. Its commits
    never checkpoint the WAL: the loop process's do, off the request path."""
    stores = open_stores(settings, checkpoints=False)
    audit = SqliteAuditLog(settings.data_dir / AUDIT_FILE)  # for POST /v1/models/…/rollback
    flags = SqliteFlagStore(settings.data_dir / FLAGS_FILE)
    personalizer = SqlitePersonalizerStore.open(settings.data_dir)
    # Evaluations and feature importances run in their own processes over the same files.
    jobs = SubprocessJobLauncher(settings, personalizer)
    try:
        app = create_app(
            settings,
            events=stores.events,
            decision_points=stores.decision_points,
            models=stores.models,
            audit=audit,
            profiles=stores.profiles,
            persona_models=open_persona_model_store(settings),
            online_persona_models=open_online_persona_model_store(settings),
            flags=flags,
            personalizer=personalizer,
            personalizer_jobs=jobs,
        )
        await serve_http(app, settings, listener=listener)
    finally:
        await jobs.aclose()  # a job still running records that it was canceled
        await personalizer.close()
        await flags.close()
        await audit.close()
        await stores.close()


@dataclass
class Loop:
    """The loop process's runners over one process's stores."""

    stores: EmbeddedStores
    join: EmbeddedJoinRunner
    learner: EmbeddedLearnerRunner
    profiles: EmbeddedProfileRunner
    personas: PersonaLabelLearner


def open_loop(
    settings: Settings, clock: Clock | None = None, registry: CollectorRegistry | None = None
) -> Loop:
    """Wire the join, the online learner and the real-time profile updates to the stores
    under ``settings.data_dir``."""
    clock = clock or SystemClock()
    registry = registry or CollectorRegistry()
    stores = open_stores(settings)
    join = EmbeddedJoinRunner(
        stores.events,
        stores.decision_points,
        clock=clock,
        metrics=JoinMetrics(registry),
        checkpoint_seconds=settings.join_checkpoint_seconds,
    )
    learner = EmbeddedLearnerRunner(
        stores.events,
        stores.models,
        stores.decision_points,
        clock=clock,
        metrics=LearnerMetrics(registry),
        release_every_examples=settings.release_every_examples,
        release_every_seconds=settings.release_every_seconds,
    )
    profiles = EmbeddedProfileRunner(stores.events, stores.profiles)
    personas = PersonaLabelLearner(
        stores.profiles, open_online_persona_model_store(settings), clock=clock
    )
    return Loop(stores, join, learner, profiles, personas)


async def run_loop(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The loop process: join, online learner and profile updates until ``stop`` is set
    or, without one, until SIGTERM or SIGINT. A runner that fails stops the process (the
    supervisor restarts it; the join and the profile updates resume from their
    checkpoints, the learner from its release)."""
    loop = open_loop(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if stop is None:
                stop = asyncio.Event()
                stack.enter_context(on_stop_signal(stop.set))
            tasks = [
                asyncio.create_task(loop.join.run(), name="learnloop-join"),
                asyncio.create_task(loop.learner.run(), name="learnloop-learner"),
                asyncio.create_task(loop.profiles.run(), name="learnloop-profiles"),
                asyncio.create_task(loop.personas.run(), name="learnloop-persona-labels"),
            ]
            stopping = asyncio.create_task(stop.wait())
            try:
                done, _ = await asyncio.wait(
                    [stopping, *tasks], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopping.cancel()
                for task in tasks:
                    task.cancel()  # the join and the profile runner checkpoint on their way out
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for runner in tasks:
                if runner in done and not runner.cancelled():
                    failure = runner.exception()
                    if failure is not None:
                        raise failure
    finally:
        await loop.stores.close()


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
