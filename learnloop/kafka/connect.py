"""Start Kafka and Redis clients with bounded time-outs and a message that says what to do.

A service that cannot reach its broker at start-up should stop at once with
:class:`~learnloop.errors.Unavailable` ("cannot reach Kafka at 127.0.0.1:9092
within 10 s: is the broker running? set LEARNLOOP_KAFKA_BOOTSTRAP"), not hang in
a retry loop or die with a library traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, UnknownError
from redis.exceptions import RedisError

from learnloop.errors import Unavailable
from learnloop.settings import Settings

KAFKA_HINT = "is the broker running? set LEARNLOOP_KAFKA_BOOTSTRAP"
REDIS_HINT = "is redis-server running? set LEARNLOOP_REDIS_URL"
IDEMPOTENCE_HINT = (
    "the broker refused to give this producer an id (InitProducerId), so it cannot run "
    "an idempotent producer; brokers such as tansu need LEARNLOOP_KAFKA_IDEMPOTENCE=false"
)

Client = TypeVar("Client")


async def _start(
    client: Client,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    what: str,
    timeout_seconds: float,
) -> Client:
    """Run ``start`` within the time-out; on failure stop the half-started client and raise."""
    try:
        await asyncio.wait_for(start(), timeout_seconds)
        return client
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stop(), timeout_seconds)
        if isinstance(exc, UnknownError) and "idempotence" in what:
            raise Unavailable(f"cannot start {what}: {IDEMPOTENCE_HINT}") from exc
        reason = f"within {timeout_seconds:g} s" if isinstance(exc, TimeoutError) else f"({exc})"
        raise Unavailable(f"cannot reach {what} {reason}: {KAFKA_HINT}") from exc


async def start_producer(
    bootstrap: str, timeout_seconds: float = 10.0, **config: Any
) -> AIOKafkaProducer:
    """A started :class:`AIOKafkaProducer`; ``config`` goes to its constructor."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **config)
    what = f"Kafka at {bootstrap}"
    if config.get("enable_idempotence"):
        what += " (idempotence on)"
    return await _start(producer, producer.start, producer.stop, what, timeout_seconds)


async def start_producer_for(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """The producer of every learnloop writer: ``acks="all"``, idempotence, linger and
    batch size from ``settings`` (``overrides`` replace them)."""
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotence,
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": settings.kafka_max_batch_bytes,
    }
    return await start_producer(
        settings.kafka_bootstrap, settings.connect_timeout_seconds, **(config | overrides)
    )


async def start_consumer(
    bootstrap: str, *topics: str, timeout_seconds: float = 10.0, **config: Any
) -> AIOKafkaConsumer:
    """A started :class:`AIOKafkaConsumer` subscribed to ``topics`` (none: assign by hand)."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, **config)
    return await _start(
        consumer, consumer.start, consumer.stop, f"Kafka at {bootstrap}", timeout_seconds
    )


async def start_admin(
    bootstrap: str, timeout_seconds: float = 10.0, **config: Any
) -> AIOKafkaAdminClient:
    """A started :class:`AIOKafkaAdminClient` (topic creation and description)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **config)
    return await _start(admin, admin.start, admin.close, f"Kafka at {bootstrap}", timeout_seconds)


def display_url(url: str) -> str:
    """``url`` without its password, for messages and logs.

    >>> display_url("redis://:secret@cache:6379/0")
    'redis://cache:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def connect_redis(
    url: str, timeout_seconds: float = 10.0, max_connections: int = 256, **options: Any
) -> aioredis.Redis:
    """A Redis client that has answered PING; ``options`` go to the connection pool.

    Only the connect is time-limited (no socket read time-out), so that a
    pub/sub subscriber can wait for messages as long as it likes. The pool blocks
    (up to ``timeout_seconds``) when all ``max_connections`` are busy instead of
    failing at once: under a burst of requests a caller waits for a free
    connection rather than getting "Too many connections".
    """
    options.setdefault("socket_connect_timeout", timeout_seconds)
    options.setdefault("health_check_interval", 30)
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_seconds, **options
        )
    except ValueError as exc:
        raise Unavailable(f"invalid Redis URL {display_url(url)!r}: {exc}") from exc
    client = aioredis.Redis.from_pool(pool)
    try:
        await asyncio.wait_for(client.ping(), timeout_seconds)
    except (TimeoutError, RedisError, OSError) as exc:
        with contextlib.suppress(Exception):
            await client.aclose()
        reason = f"within {timeout_seconds:g} s" if isinstance(exc, TimeoutError) else f"({exc})"
        where = display_url(url)
        raise Unavailable(f"cannot reach Redis at {where} {reason}: {REDIS_HINT}") from exc
    return client
