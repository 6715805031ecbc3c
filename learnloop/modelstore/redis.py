"""Model store in Redis for the distributed mode: every API replica reads the same models.

Layout, under a prefix (``Settings.redis_prefix``):

- ``{prefix}model:{decision_point}:{version}`` — the model bytes;
- ``{prefix}manifest:{decision_point}`` — the current :class:`ModelRelease` as JSON;
- ``{prefix}models:{decision_point}`` — sorted set of the stored versions (for pruning);
- ``{prefix}pinned:{decision_point}`` — set of versions never pruned (promotions, rollbacks);
- ``{prefix}history:{decision_point}`` — list of every release's JSON, newest first
  (trimmed to the newest ``history_keep``);
- channel ``{prefix}releases`` — ``{"decision_point": ..., "version": ...}`` after each swap.

The bytes, the manifest, the version index, the history entry and the notification
are written in one MULTI/EXEC transaction, so a reader never sees a manifest whose model is
missing, and a subscriber that receives the notification already reads the new
manifest. The transaction WATCHes the manifest: a release that is not newer than
the current one is refused with :class:`~learnloop.errors.Conflict` (two learners
writing one decision point, or a stale one after a rebalance).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, WatchError

from learnloop.errors import Conflict, InvalidInput, NotFound, Unavailable
from learnloop.modelstore.base import PINNED_SOURCES, with_current
from schemas.api import StoredRelease
from schemas.events import ModelRelease

logger = logging.getLogger(__name__)

LOCATION_SCHEME: Final = "redis:"


class RedisModelStore:
    """A :class:`~learnloop.modelstore.base.ModelStore` in Redis, with release notifications.

    Parameters
    ----------
    redis
        A client (bytes responses, i.e. ``decode_responses=False``) or a ``redis://`` URL;
        a client built from a URL is closed by :meth:`close`.
    prefix
        Prefix of every key and of the notification channel.
    keep
        Model versions kept per decision point (at least 2, so a reader that has just
        read the previous manifest can still load its model), besides the pinned ones.
    history_keep
        Releases remembered in the history per decision point (an online learner
        releasing every second makes 86,400 a day; each entry is about 1 kB).
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        prefix: str = "learnloop:",
        keep: int = 5,
        history_keep: int = 10_000,
    ) -> None:
        if keep < 2:
            raise InvalidInput(f"keep={keep}: keep at least 2 model versions per decision point")
        if history_keep < 1:
            raise InvalidInput(f"history_keep={history_keep}: keep at least 1 history entry")
        self.history_keep = history_keep
        self._owns_client = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.keep = keep

    # Key names -------------------------------------------------------------------------

    def model_key(self, decision_point: str, version: int) -> str:
        return f"{self.prefix}model:{decision_point}:{version}"

    def manifest_key(self, decision_point: str) -> str:
        return f"{self.prefix}manifest:{decision_point}"

    def index_key(self, decision_point: str) -> str:
        return f"{self.prefix}models:{decision_point}"

    def pinned_key(self, decision_point: str) -> str:
        return f"{self.prefix}pinned:{decision_point}"

    def history_key(self, decision_point: str) -> str:
        return f"{self.prefix}history:{decision_point}"

    @property
    def channel(self) -> str:
        """The pub/sub channel announcing new releases."""
        return f"{self.prefix}releases"

    # ModelStore ------------------------------------------------------------------------

    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        """Store the bytes and swap the manifest in one transaction, then prune old versions.

        Raises :class:`Conflict` when ``release.version`` is not newer than the current one.
        """
        dp, version = release.decision_point, release.version
        stored = release.model_copy(
            update={"model_location": LOCATION_SCHEME + self.model_key(dp, version)}
        )
        note = orjson.dumps({"decision_point": dp, "version": version})
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self.manifest_key(dp))
                        raw = await pipe.get(self.manifest_key(dp))
                        current = self._parse(dp, raw) if raw is not None else None
                        if current is not None and version <= current.version:
                            raise Conflict(
                                f"model release {dp} v{version} is not newer than the current "
                                f"v{current.version}: is another learner publishing {dp}?"
                            )
                        pipe.multi()  # type: ignore[no-untyped-call]
                        manifest = stored.model_dump_json()
                        pipe.set(self.model_key(dp, version), model)
                        pipe.set(self.manifest_key(dp), manifest)
                        pipe.zadd(self.index_key(dp), {str(version): version})
                        if release.source in PINNED_SOURCES:
                            pipe.sadd(self.pinned_key(dp), str(version))
                        pipe.lpush(self.history_key(dp), manifest)
                        pipe.ltrim(self.history_key(dp), 0, self.history_keep - 1)
                        pipe.publish(self.channel, note)
                        await pipe.execute()
                        break
                    except WatchError:
                        continue  # another writer swapped the manifest meanwhile: check again
            await self._prune(dp, version)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot publish model {dp} v{version} to Redis: {exc}") from exc
        return stored

    async def _prune(self, decision_point: str, current_version: int) -> None:
        """Delete the versions beyond the newest ``keep`` (never the current or a pinned one)."""
        index = self.index_key(decision_point)
        old = await self.redis.zrevrange(index, self.keep, -1)
        members = await self.redis.smembers(self.pinned_key(decision_point))
        pinned = {int(v) for v in members}
        stored = [int(v) for v in old]  # type: ignore[arg-type]
        versions = [v for v in stored if v != current_version and v not in pinned]
        if versions:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(self.model_key(decision_point, v) for v in versions))
                pipe.zrem(index, *(str(v) for v in versions))
                await pipe.execute()

    async def current(self, decision_point: str) -> ModelRelease | None:
        """The current release, or ``None`` before the first."""
        try:
            raw = await self.redis.get(self.manifest_key(decision_point))
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"cannot read the {decision_point} manifest from Redis: {exc}"
            ) from exc
        return self._parse(decision_point, raw) if raw is not None else None

    def _parse(self, decision_point: str, raw: bytes | str) -> ModelRelease:
        try:
            return ModelRelease.model_validate_json(raw)
        except ValidationError as exc:
            raise Unavailable(
                f"Redis key {self.manifest_key(decision_point)} is not a valid model release "
                f"({exc.error_count()} errors): delete it to start {decision_point} afresh"
            ) from exc

    async def load(self, release: ModelRelease) -> bytes:
        """The model bytes of ``release``, found by decision point and version."""
        key = self.model_key(release.decision_point, release.version)
        try:
            data = await self.redis.get(key)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot read model {key} from Redis: {exc}") from exc
        if data is None:
            raise NotFound(
                f"model {release.decision_point} v{release.version} is not in Redis "
                f"(only the newest {self.keep} are kept): read current() again and load that"
            )
        return data if isinstance(data, bytes) else data.encode()

    async def pin(self, decision_point: str, version: int) -> bool:
        """Never prune ``version``'s model; whether it is still stored."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self.pinned_key(decision_point), str(version))
                pipe.exists(self.model_key(decision_point, version))
                _, exists = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot pin {decision_point} v{version} in Redis: {exc}") from exc
        return bool(exists)

    async def history(self, decision_point: str, limit: int | None = None) -> list[StoredRelease]:
        """The releases, newest first, each saying whether its model bytes are still stored."""
        stop = -1 if limit is None else max(0, limit - 1)
        if limit == 0:
            return []
        try:
            raw = await self.redis.lrange(self.history_key(decision_point), 0, stop)
            releases = [self._parse(decision_point, item) for item in raw]
            async with self.redis.pipeline(transaction=False) as pipe:
                for r in releases:
                    pipe.exists(self.model_key(decision_point, r.version))
                kept = await pipe.execute() if releases else []
            current = await self.current(decision_point)
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"cannot read the {decision_point} release history from Redis: {exc}"
            ) from exc
        history = [
            StoredRelease(release=r, model_kept=bool(k))
            for r, k in zip(releases, kept, strict=True)
        ]
        merged = with_current(history, current)
        return merged[:limit] if limit is not None else merged

    async def watch(self) -> AsyncIterator[tuple[str, int]]:
        """Yield ``(decision_point, version)`` for every release published from now on.

        API replicas hot-swap on these notifications and keep polling :meth:`current`
        as a fallback: pub/sub delivers at most once, and nothing while disconnected.
        Raises :class:`Unavailable` when the subscription's connection is lost.
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    note = orjson.loads(message["data"])
                    yield str(note["decision_point"]), int(note["version"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    logger.warning("ignored a malformed release notification: %r", message)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"lost the release subscription on {self.channel}: {exc}") from exc
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
