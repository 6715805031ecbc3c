"""The distributed mode: the decision service, the join and the learner as separate processes.

Composition root (with :mod:`runtime.cli` and :mod:`runtime.embedded`): the one
place that wires the service packages to Kafka and Redis.

- ``learnloop serve --backend kafka`` → :func:`serve_api`: the API over
  :class:`~learnloop.kafka.sink.KafkaEventSink` (a decision or outcome is
  acknowledged only after the broker confirmed it, acks=all) and the Redis
  decision-point and model stores. It keeps no local state, so any number of
  replicas can run behind a load balancer. Each replica swaps models on the Redis
  release notification and keeps polling the store as a fallback.
- ``learnloop learn`` → :func:`run_learner_worker` (:mod:`online_learner.kafka_runner`).
- ``learnloop join`` → :func:`run_join_worker`: the faust worker of
  :mod:`join_service.kafka_runner` over a Kafka sink, a reader and Redis checkpoints.

Every connection is made with ``settings.connect_timeout_seconds``: an unreachable
Kafka or Redis stops start-up with :class:`~learnloop.errors.Unavailable` (the CLI
prints it and exits 1) instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.main import create_app
from join_service.kafka_partitions import JoinTuning
from learnloop.audit_redis import RedisAuditLog
from learnloop.clock import Clock, SystemClock
from learnloop.decision_point_store_redis import RedisDecisionPointStore
from learnloop.decision_points import load_config_file
from learnloop.flag_store_redis import RedisFlagStore
from learnloop.kafka.connect import connect_redis, display_url, start_consumer
from learnloop.kafka.sink import KafkaEventSink
from learnloop.kafka.topics import TopicNames, ensure_kafka_topics
from learnloop.modelstore.redis import RedisModelStore
from learnloop.persona_models_redis import RedisPersonaModelStore
from learnloop.persona_online import online_prefix
from learnloop.personalizer_store_redis import RedisPersonalizerStore
from learnloop.profile_store_redis import RedisProfileStore
from learnloop.settings import Settings
from learnloop.shutdown import on_stop_signal
from learnloop.telemetry import metrics_endpoint
from runtime.http_server import serve_http
from runtime.personalizer_jobs import SubprocessJobLauncher

log = logging.getLogger("learnloop")


@dataclass
class DistributedApi:
    """One wired API replica: its app and the clients it closes on shutdown."""

    settings: Settings
    app: FastAPI
    events: KafkaEventSink
    decision_points: RedisDecisionPointStore
    models: RedisModelStore
    redis: aioredis.Redis
    jobs: SubprocessJobLauncher | None = None  # Personalizer evaluations of this replica

    async def close(self) -> None:
        try:
            if self.jobs is not None:
                await self.jobs.aclose()  # a job still running records that it was canceled
            await self.events.close()
        finally:
            await self.models.close()
            await self.decision_points.close()
            await self.redis.aclose()


async def open_api(settings: Settings, clock: Clock | None = None) -> DistributedApi:
    """Connect to Kafka and Redis (bounded), seed the decision points, build the app.

    The app's model registry refreshes a decision point as soon as the model store
    announces a release of it (Redis pub/sub), and polls every
    ``settings.model_poll_seconds`` in case a notification was missed.
    """
    await ensure_kafka_topics(settings)
    redis = await connect_redis(
        settings.redis_url, settings.connect_timeout_seconds, settings.redis_max_connections
    )
    try:
        decision_points = RedisDecisionPointStore(redis, settings.redis_prefix)
        added = await decision_points.seed(load_config_file(settings.config))
        if added:
            log.info("installed decision points %s", ", ".join(added))
        models = RedisModelStore(redis, settings.redis_prefix, keep=settings.model_keep_versions)
        events = await KafkaEventSink.connect(settings)
    except BaseException:
        await redis.aclose()
        raise
    catboost = RedisPersonaModelStore(redis, settings.redis_prefix)
    river = RedisPersonaModelStore(redis, online_prefix(settings))
    flags = RedisFlagStore(redis, settings.redis_prefix)
    personalizer = RedisPersonalizerStore(redis, settings.redis_prefix)
    jobs = SubprocessJobLauncher(settings, personalizer)
    try:
        app = create_app(
            settings,
            events=events,
            decision_points=decision_points,
            models=models,
            clock=clock,
            audit=RedisAuditLog(redis, settings.redis_prefix),
            profiles=RedisProfileStore(redis, settings.redis_prefix),
            persona_models=catboost,
            online_persona_models=river,
            flags=flags,
            personalizer=personalizer,
            personalizer_jobs=jobs,
        )
    except BaseException:
        await events.close()
        await redis.aclose()
        raise
    app.state.registry.listen(models.watch)
    app.state.persona_models.listen(catboost.watch)
    app.state.persona_models.listen(river.watch)
    app.state.flags.listen(flags.watch)
    return DistributedApi(settings, app, events, decision_points, models, redis, jobs)


async def prepare_backends(settings: Settings) -> None:
    """Before any API replica of ``learnloop serve --backend kafka`` starts: reach Kafka
    (creating missing topics) and Redis, and seed the decision points, so an unreachable
    backend stops the service once with its message instead of crash-looping workers."""
    await ensure_kafka_topics(settings)
    redis = await connect_redis(
        settings.redis_url, settings.connect_timeout_seconds, settings.redis_max_connections
    )
    try:
        added = await RedisDecisionPointStore(redis, settings.redis_prefix).seed(
            load_config_file(settings.config)
        )
        if added:
            log.info("installed decision points %s", ", ".join(added))
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def running_api(settings: Settings, clock: Clock | None = None) -> AsyncIterator[FastAPI]:
    """An opened API with its lifespan running (models loaded, watcher on); for tests,
    benchmarks and embedding in another ASGI server."""
    api = await open_api(settings, clock)
    try:
        async with api.app.router.lifespan_context(api.app):
            yield api.app
    finally:
        await api.close()


async def serve_api(settings: Settings, listener: socket.socket | None = None) -> None:
    """One stateless API replica (a worker of ``learnloop serve --backend kafka``) on the
    supervisor's ``listener`` or on ``host:port``, until SIGTERM or SIGINT (then
    in-flight requests finish and the clients close)."""
    api = await open_api(settings)
    log.info(
        "learnloop API replica ready (Kafka %s, Redis %s)",
        settings.kafka_bootstrap,
        display_url(settings.redis_url),
    )
    try:
        await serve_http(api.app, settings, listener=listener)
    finally:
        await api.close()


async def run_learner_worker(settings: Settings) -> None:
    """``learnloop learn``: one online-learner worker in the learner consumer group,
    until SIGTERM or SIGINT; then it publishes what is due, commits and leaves the group.

    The decision points of ``settings.config`` are seeded into Redis (never overwriting
    an admin's change), as the API does. Beside it, the online persona learner
    (:mod:`online_learner.persona_labels`) learns confirmed labels into river releases,
    in whichever ``learn`` worker holds its Redis lease.
    """
    from online_learner.kafka_runner import KafkaLearnerRunner
    from online_learner.metrics import LearnerMetrics
    from online_learner.persona_labels import PersonaLabelLearner, RedisLease

    redis = await connect_redis(
        settings.redis_url, settings.connect_timeout_seconds, settings.redis_max_connections
    )
    decision_points = RedisDecisionPointStore(redis, settings.redis_prefix)
    models = RedisModelStore(redis, settings.redis_prefix, keep=settings.model_keep_versions)
    try:
        added = await decision_points.seed(load_config_file(settings.config))
        if added:
            log.info("installed decision points %s", ", ".join(added))
        registry = CollectorRegistry()
        runner = KafkaLearnerRunner(
            settings, models, decision_points, metrics=LearnerMetrics(registry)
        )
        labels = PersonaLabelLearner(
            RedisProfileStore(redis, settings.redis_prefix),
            RedisPersonaModelStore(redis, online_prefix(settings)),
        )
        lease = RedisLease(redis, f"{settings.redis_prefix}persona-labels:lease")
        stop = asyncio.Event()
        with on_stop_signal(stop.set), metrics_endpoint(settings, registry):
            personas = asyncio.create_task(labels.run(lease), name="learnloop-persona-labels")
            try:
                await runner.run(until=stop)
            finally:
                personas.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await personas
    finally:
        await models.close()
        await decision_points.close()
        await redis.aclose()


async def run_join_worker(
    settings: Settings,
    tuning: JoinTuning | None = None,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """``learnloop join``: one faust join worker (:mod:`join_service.kafka_runner`) wired to
    Kafka and Redis, until ``stop`` is set or, without one, until SIGTERM or SIGINT.

    Beside it, in the same process, a member of the ``profiles`` consumer group
    (:mod:`learnloop.profile_kafka_runner`) applies the same decisions and outcomes to the
    Redis profile store: the join workers are the consumers of those topics already, so
    scaling them scales both. If either fails, the worker exits (and is restarted)."""
    from join_service.joined_output import JoinedOutput
    from join_service.kafka_checkpoint import RedisCheckpoints
    from join_service.kafka_partitions import JoinPartitions
    from join_service.kafka_runner import FaustJoinWorker
    from join_service.metrics import JoinMetrics
    from learnloop.profile_kafka_runner import KafkaProfileRunner

    tuning = tuning or JoinTuning.from_settings(settings)
    clock = clock or SystemClock()
    names = TopicNames(settings.topic_prefix)
    await ensure_kafka_topics(settings)
    registry = CollectorRegistry()
    async with contextlib.AsyncExitStack() as resources:
        resources.enter_context(metrics_endpoint(settings, registry))
        # The worker awaits each step's output before it reads on (its checkpoints must
        # never cover unacknowledged output), so a producer linger would only add delay
        # to every step: with 5 ms it capped the worker at ~300 events/s on tansu.
        sink = await KafkaEventSink.connect(settings.model_copy(update={"kafka_linger_ms": 0}))
        resources.push_async_callback(sink.close)
        redis = await connect_redis(
            settings.redis_url, settings.connect_timeout_seconds, settings.redis_max_connections
        )
        resources.push_async_callback(redis.aclose)
        reader = await start_consumer(
            settings.kafka_bootstrap,
            timeout_seconds=settings.connect_timeout_seconds,
            enable_auto_commit=False,
        )
        resources.push_async_callback(reader.stop)
        partitions = JoinPartitions(
            names,
            JoinedOutput(sink, reader, names, settings.kafka_partitions),
            RedisCheckpoints(redis, settings.redis_prefix, settings.topic_prefix),
            RedisDecisionPointStore(redis, settings.redis_prefix),
            clock,
            JoinMetrics(registry),
            tuning,
        )
        worker = FaustJoinWorker(settings, partitions, group_id=f"{settings.topic_prefix}join")
        if stop is None:
            stop = asyncio.Event()
            resources.enter_context(on_stop_signal(stop.set))
        profiles = KafkaProfileRunner(settings, RedisProfileStore(redis, settings.redis_prefix))
        updates = asyncio.create_task(profiles.run(until=stop), name="learnloop-profiles")
        join = asyncio.create_task(worker.run(stop), name="learnloop-join")
        try:
            await asyncio.wait([join, updates], return_when=asyncio.FIRST_COMPLETED)
            stop.set()  # one ended (stopped or failed): stop the other as well
            await asyncio.gather(join, updates)
        finally:
            for task in (join, updates):
                task.cancel()
            await asyncio.gather(join, updates, return_exceptions=True)
