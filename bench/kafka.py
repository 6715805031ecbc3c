"""Benchmark the distributed loop: events/s through the Kafka join and learner, and freshness.

Run ``python bench/kafka.py`` (``--help`` for options). It starts its own tansu
broker and redis-server on free loopback ports (the integration tests' helpers in
``tests/integration/servers.py``), then runs the services as they are deployed:
``learnloop join`` and ``learnloop learn`` as separate processes, and one API
replica in this process (``runtime.distributed.running_api``, the wiring of
``learnloop serve --backend kafka``) for the freshness probe.

a. **Throughput**: N decisions and N/2 outcomes appended with
   :class:`~learnloop.kafka.sink.KafkaEventSink` (acks=all, unique-key index,
   join-key lookup; ``--concurrency`` appends in flight), then one far-future *tick*
   per partition so every window closes by event time. Measured: the append rate,
   and end to end, from the first append until the model store holds a release that
   learned all N joined examples (this includes the learner's release cadence,
   ≤ 1 s). Decisions are ``--event-spacing`` apart in event time, so windows close
   progressively as the traffic's stream time passes them, as in live traffic.
b. **Freshness**: ``--rounds`` times, one decision, then a tick per partition that
   closes its window; the time from the tick's acknowledgement until the API serves
   (``GET /v1/models``: the model the next decision gets) a model that learned it,
   split at the joined record's timestamp into the join's part and the rest:
   joined topic + learner + release + Redis notification + hot swap (at most one
   swap per ``LEARNLOOP_MODEL_SWAP_MIN_SECONDS``).
c. **Learner alone**: ``--learner-examples`` joined examples written straight to a
   fresh joined topic, then one in-process learner worker: examples/s from its
   partition assignment until a release holds them all.

tansu quirks apply (docs/distributed.md): no idempotent producer, and by default
16-byte producer batches (one record per batch, correct end offsets), which caps
each producer at roughly 1.4k records/s. Numbers depend on the machine: the table
header says how many CPUs. Everything shares those CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the integration tests' server helpers

from aiokafka import TopicPartition  # noqa: E402
from kafka_traffic import (  # noqa: E402  bench/kafka_traffic.py, beside this script
    DP,
    WINDOW,
    Clockwork,
    append_all,
    decision,
    ticks,
)

from learnloop.decision_point_store_redis import RedisDecisionPointStore  # noqa: E402
from learnloop.decision_points import load_config_file  # noqa: E402
from learnloop.eventlog.base import Streams  # noqa: E402
from learnloop.kafka import codec  # noqa: E402
from learnloop.kafka.connect import start_consumer, start_producer  # noqa: E402
from learnloop.kafka.sink import KafkaEventSink  # noqa: E402
from learnloop.kafka.topics import (  # noqa: E402
    TopicNames,
    ensure_kafka_topics,
)
from learnloop.modelstore.redis import RedisModelStore  # noqa: E402
from learnloop.settings import Settings  # noqa: E402
from online_learner.kafka_runner import KafkaLearnerRunner  # noqa: E402
from runtime.distributed import running_api  # noqa: E402
from runtime.processes import LearnloopProcess, settings_env  # noqa: E402
from schemas.events import JoinedExample, OutcomeEvent  # noqa: E402
from tests.integration.servers import ServerProcess, start_redis, start_tansu  # noqa: E402


async def learned(models: RedisModelStore) -> int:
    release = await models.current(DP)
    return 0 if release is None else release.examples_learned


async def wait_learned(models: RedisModelStore, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (got := await learned(models)) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{got} of {target} joined examples learned after {timeout:g} s")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def joined_times(settings: Settings, seen: dict[str, float]) -> None:
    """Note when each joined example was produced (record timestamp), by decision id."""
    topic = TopicNames(settings.topic_prefix).topic(Streams.JOINED)
    consumer = await start_consumer(
        settings.kafka_bootstrap, timeout_seconds=5.0, enable_auto_commit=False
    )
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                for m in messages:
                    example = codec.decode_value(Streams.JOINED, m.value)
                    assert isinstance(example, JoinedExample)
                    seen[example.decision.event_id] = m.timestamp / 1000
    finally:
        await consumer.stop()


async def freshness(
    args: argparse.Namespace,
    clock: Clockwork,
    sink: KafkaEventSink,
    models: RedisModelStore,
    http: httpx.AsyncClient,
    settings: Settings,
) -> list[tuple[str, str]]:
    """Per round: a decision, a tick closing its window, then poll the API's served model.

    Only these decisions are joined meanwhile, so "one more example learned" is this
    round's. (The probe reads ``GET /v1/models``: a probe *decision* would be joined too.)
    """
    produced: dict[str, float] = {}
    watcher = asyncio.create_task(joined_times(settings, produced))
    join_s, learn_s, total_s = [], [], []
    try:
        for r in range(args.rounds):
            target = await learned(models) + 1
            event_id = f"fresh-{r}"
            await append_all(sink, [decision(event_id, event_id, clock.after(1))], 1)
            closing = ticks(
                range(args.partitions), args.partitions, clock.after(WINDOW.total_seconds() + 1)
            )
            await append_all(sink, closing, len(closing))
            closed = time.time()
            while (await http.get(f"/v1/models/{DP}")).json()["examples_learned"] < target:
                if time.time() - closed > args.timeout:
                    raise TimeoutError(f"round {r}: not served within {args.timeout} s")
                await asyncio.sleep(0.005)
            served = time.time()
            while event_id not in produced and time.time() - served < 5:
                await asyncio.sleep(0.01)
            joined_at = produced.get(event_id, float("nan"))
            join_s.append(joined_at - closed)
            learn_s.append(served - joined_at)
            total_s.append(served - closed)
            # The next swap is allowed again (at most one per model_swap_min_seconds).
            await asyncio.sleep(settings.model_swap_min_seconds + 0.1)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    def spread(values: list[float]) -> str:
        ordered = sorted(values)
        return f"p50 {statistics.median(ordered):.2f} s, max {ordered[-1]:.2f} s"

    return [
        (
            f"freshness, window close → model served by the API ({args.rounds} rounds)",
            spread(total_s),
        ),
        ("… of which window close → joined example on Kafka (join)", spread(join_s)),
        (
            "… of which joined example → served (learner, release, notification, swap)",
            spread(learn_s),
        ),
    ]


async def learner_alone(args: argparse.Namespace, base: Settings) -> tuple[str, str]:
    """The learner by itself: joined examples already on the topic, one worker started."""
    settings = base.model_copy(
        update={
            "topic_prefix": f"{base.topic_prefix}solo.",
            "redis_prefix": f"{base.redis_prefix}solo:",
        }
    )
    await ensure_kafka_topics(settings)
    count = args.learner_examples
    producer = await start_producer(
        settings.kafka_bootstrap,
        5.0,
        acks="all",
        linger_ms=5,
        max_batch_size=settings.kafka_max_batch_bytes,
    )
    try:
        names = TopicNames(settings.topic_prefix)
        deliveries = []
        for i in range(count):
            d = decision(f"solo-{i}", f"s{i % 500}", datetime(2026, 1, 1, tzinfo=UTC))
            record = codec.to_record(
                JoinedExample(
                    event_id=d.event_id,
                    timestamp=d.timestamp,
                    decision=d,
                    reward=float(i % 3 == 0),
                    close_reason="default",
                ),
                names,
            )
            deliveries.append(await producer.send(record.topic, record.value, key=record.key))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    decision_points = RedisDecisionPointStore(settings.redis_url, settings.redis_prefix)
    models = RedisModelStore(settings.redis_url, settings.redis_prefix)
    await decision_points.seed(load_config_file(None))
    runner = KafkaLearnerRunner(
        settings, models, decision_points, session_timeout_ms=1000, heartbeat_interval_ms=200
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(until=stop))
    try:
        while not runner.ledger.owned:
            await asyncio.sleep(0.005)
        started = time.monotonic()
        done = await wait_learned(models, count, args.timeout)
    finally:
        stop.set()
        await task
        await models.close()
        await decision_points.close()
    return (
        f"learner alone: {count:,} joined examples on the topic → learned and released",
        f"{count / (done - started):,.0f} examples/s",
    )


async def run(
    args: argparse.Namespace, kafka: ServerProcess, redis: ServerProcess, workdir: Path
) -> list[tuple[str, str]]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(
        backend="kafka",
        kafka_bootstrap=kafka.address,
        redis_url=f"redis://{redis.address}/0",
        topic_prefix=f"{prefix}.",
        redis_prefix=f"{prefix}:",
        kafka_partitions=args.partitions,
        kafka_idempotence=False,
        kafka_max_batch_bytes=args.batch_bytes,
        connect_timeout_seconds=5.0,
    )
    await ensure_kafka_topics(settings)
    clock = Clockwork()
    all_partitions = range(args.partitions)
    rows: list[tuple[str, str]] = []
    async with running_api(settings) as app:  # also seeds the decision points
        services = [
            LearnloopProcess(c, env=settings_env(settings), log_file=workdir / f"{c}.log").start()
            for c in ("join", "learn")
        ]
        sink = await KafkaEventSink.connect(settings)
        models = RedisModelStore(sink.redis, settings.redis_prefix)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        try:
            # Warm-up: both consumer groups joined, one example learned end to end.
            await append_all(sink, [decision("warm", "warm", clock.after(1))], 1)
            await append_all(
                sink,
                ticks(all_partitions, args.partitions, clock.after(WINDOW.total_seconds() + 1)),
                4,
            )
            await wait_learned(models, 1, timeout=90)
            baseline = await learned(models)

            # (a) throughput
            n = args.decisions
            events: list = []  # type: ignore[type-arg]
            for i in range(n):
                d = decision(f"d{i}", f"s{i % 500}", clock.after(args.event_spacing))
                events.append(d)
                if i % 2 == 0:
                    events.append(
                        OutcomeEvent(
                            outcome_id=f"o{i}",
                            event_id=d.event_id,
                            type="basket_add",
                            timestamp=clock.after(0.001),
                        )
                    )
            started = time.monotonic()
            await append_all(sink, events, args.concurrency)
            appended = time.monotonic()
            await append_all(
                sink,
                ticks(all_partitions, args.partitions, clock.after(WINDOW.total_seconds() + 1)),
                4,
            )
            done = await wait_learned(models, baseline + n, timeout=args.timeout)
            rows += [
                ("events appended (decisions + outcomes)", f"{len(events):,}"),
                (
                    "append rate, KafkaEventSink acks=all",
                    f"{len(events) / (appended - started):,.0f} events/s",
                ),
                (
                    "end to end: first append → all learned and released",
                    f"{len(events) / (done - started):,.0f} events/s "
                    f"({n / (done - started):,.0f} joined examples/s)",
                ),
                (
                    "drain after the last append (join + learn + release)",
                    f"{done - appended:.2f} s",
                ),
            ]

            # (b) freshness
            rows += await freshness(args, clock, sink, models, http, settings)
            rows.append(await learner_alone(args, settings))
        finally:
            await http.aclose()
            await sink.close()
            for service in services:
                service.stop(timeout=20)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32, help="appends in flight")
    parser.add_argument(
        "--event-spacing",
        type=float,
        default=0.25,
        help="event-time seconds between decisions: windows then close progressively "
        "as the traffic's own stream time passes them (at most window/spacing at once)",
    )
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10, help="freshness rounds")
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=16,
        help="producer batch bytes (16: one record per batch, tansu-safe)",
    )
    parser.add_argument(
        "--learner-examples",
        type=int,
        default=10_000,
        help="joined examples for the learner-alone measurement",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-") as tmp:
        workdir = Path(tmp)
        kafka = start_tansu(workdir / "tansu")
        redis = start_redis(workdir / "redis")
        try:
            rows = asyncio.run(run(args, kafka, redis, workdir))
        except BaseException:
            for name in ("join", "learn"):
                log = workdir / f"{name}.log"
                if log.exists():
                    print(f"--- {name}.log (tail)", file=sys.stderr)
                    print("\n".join(log.read_text().splitlines()[-20:]), file=sys.stderr)
            raise
        finally:
            kafka.stop()
            redis.stop()
    print(
        f"\n### Distributed loop on tansu + redis ({os.cpu_count()} CPUs, "
        f"{args.partitions} partitions, {args.batch_bytes}-byte producer batches)\n"
    )
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
