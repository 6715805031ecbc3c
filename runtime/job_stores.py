"""The stores a Personalizer job process opens for its run, on the configured backend.

A job process (``runtime/personalizer_jobs.py``) reads and writes its job document in
the Personalizer store, and an ``Auto`` evaluation may change the loop's decision point
(``runtime/personalizer_auto_apply.py``). Either store is the SQLite file under the data
directory (embedded) or the Redis one under ``redis_prefix`` (kafka backend), opened for
the run and closed after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

from learnloop.personalizer_store import PersonalizerStore
from learnloop.settings import Settings

if TYPE_CHECKING:  # each backend's modules (and redis) load only when it is used
    from redis import asyncio as aioredis

    from learnloop.decision_point_store import SqliteDecisionPointStore
    from learnloop.decision_point_store_redis import RedisDecisionPointStore


class _Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


@asynccontextmanager
async def _backend_store(
    settings: Settings,
    embedded: Callable[[], S],
    on_redis: Callable[[aioredis.Redis], S],
) -> AsyncIterator[S]:
    if settings.backend == "embedded":
        store = embedded()
        try:
            yield store
        finally:
            await store.close()
        return
    from learnloop.kafka.connect import connect_redis

    redis = await connect_redis(settings.redis_url, settings.connect_timeout_seconds, 4)
    try:
        store = on_redis(redis)
        try:
            yield store
        finally:
            await store.close()
    finally:
        await redis.aclose()


def open_personalizer_store(settings: Settings) -> AbstractAsyncContextManager[PersonalizerStore]:
    """The Personalizer store of these settings, closed on exit."""

    def embedded() -> PersonalizerStore:
        from learnloop.personalizer_store_sqlite import SqlitePersonalizerStore

        return SqlitePersonalizerStore.open(settings.data_dir)

    def on_redis(redis: aioredis.Redis) -> PersonalizerStore:
        from learnloop.personalizer_store_redis import RedisPersonalizerStore

        return RedisPersonalizerStore(redis, settings.redis_prefix)

    return _backend_store(settings, embedded, on_redis)


def open_decision_points(
    settings: Settings,
) -> AbstractAsyncContextManager[SqliteDecisionPointStore | RedisDecisionPointStore]:
    """The decision-point store of these settings, closed on exit."""

    def embedded() -> SqliteDecisionPointStore | RedisDecisionPointStore:
        from learnloop.decision_point_store import FILE_NAME, SqliteDecisionPointStore

        return SqliteDecisionPointStore(settings.data_dir / FILE_NAME)

    def on_redis(redis: aioredis.Redis) -> SqliteDecisionPointStore | RedisDecisionPointStore:
        from learnloop.decision_point_store_redis import RedisDecisionPointStore

        return RedisDecisionPointStore(redis, settings.redis_prefix)

    return _backend_store(settings, embedded, on_redis)
