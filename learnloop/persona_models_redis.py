"""The persona-model store in Redis (distributed mode): every API replica serves the same
persona model and hears about a new one at once.

Keys, under a prefix (``Settings.redis_prefix``):

- ``{prefix}persona:model:{version}`` — the model bytes;
- ``{prefix}persona:manifest`` — the current :class:`PersonaModelRelease` as JSON;
- ``{prefix}persona:history`` — every release's JSON, newest first;
- channel ``{prefix}persona-models`` — ``{"version": ...}`` after each swap.

The bytes, the manifest, the history entry and the notification go in one MULTI/EXEC
that WATCHes the manifest (as :mod:`learnloop.modelstore.redis` does), so a subscriber
that hears of a version already reads it, and two publishers cannot both take one version.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, WatchError

from learnloop.errors import NotFound, Unavailable
from learnloop.persona_models import _check_newer
from schemas.personas import PersonaModelRelease, StoredPersonaRelease

logger = logging.getLogger(__name__)


class RedisPersonaModelStore:
    """A :class:`~learnloop.persona_models.PersonaModelStore` in Redis.

    ``redis`` is a client (bytes responses) or a ``redis://`` URL; a client built from a
    URL is closed by :meth:`close`.
    """

    def __init__(self, redis: aioredis.Redis | str, prefix: str = "learnloop:") -> None:
        self._owns_client = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix

    def model_key(self, version: int) -> str:
        return f"{self.prefix}persona:model:{version}"

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}persona:manifest"

    @property
    def history_key(self) -> str:
        return f"{self.prefix}persona:history"

    @property
    def channel(self) -> str:
        """The pub/sub channel announcing new persona models."""
        return f"{self.prefix}persona-models"

    def _parse(self, raw: bytes | str) -> PersonaModelRelease:
        try:
            return PersonaModelRelease.model_validate_json(raw)
        except ValidationError as exc:
            raise Unavailable(
                f"Redis key {self.manifest_key} is not a valid persona-model release "
                f"({exc.error_count()} errors): delete it to start afresh"
            ) from exc

    async def publish(self, release: PersonaModelRelease, model: bytes) -> PersonaModelRelease:
        """Store the bytes, swap the manifest, record and announce it, in one transaction."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self.manifest_key)
                        raw = await pipe.get(self.manifest_key)
                        version = _check_newer(release, self._parse(raw) if raw else None)
                        stored = release.model_copy(
                            update={
                                "version": version,
                                "model_location": "redis:" + self.model_key(version),
                            }
                        )
                        manifest = stored.model_dump_json()
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(self.model_key(version), model)
                        pipe.set(self.manifest_key, manifest)
                        pipe.lpush(self.history_key, manifest)
                        pipe.publish(self.channel, orjson.dumps({"version": version}))
                        await pipe.execute()
                        return stored
                    except WatchError:
                        continue  # another publisher swapped it meanwhile: take the next one
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot publish the persona model to Redis: {exc}") from exc

    async def current(self) -> PersonaModelRelease | None:
        try:
            raw = await self.redis.get(self.manifest_key)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot read {self.manifest_key} from Redis: {exc}") from exc
        return self._parse(raw) if raw is not None else None

    async def load(self, release: PersonaModelRelease) -> bytes:
        try:
            data = await self.redis.get(self.model_key(release.version))
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot read persona model v{release.version}: {exc}") from exc
        if data is None:
            raise NotFound(f"persona model v{release.version} is not in Redis")
        return data if isinstance(data, bytes) else data.encode()

    async def history(self, limit: int | None = None) -> list[StoredPersonaRelease]:
        if limit == 0:
            return []
        stop = -1 if limit is None else limit - 1
        try:
            raw = await self.redis.lrange(self.history_key, 0, stop)
            releases = [self._parse(item) for item in raw]
            async with self.redis.pipeline(transaction=False) as pipe:
                for r in releases:
                    pipe.exists(self.model_key(r.version))
                kept = await pipe.execute() if releases else []
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot read the persona-model history from Redis: {exc}") from exc
        return [
            StoredPersonaRelease(release=r, model_kept=bool(k))
            for r, k in zip(releases, kept, strict=True)
        ]

    async def watch(self) -> AsyncIterator[int]:
        """Yield the version of every persona model published from now on (at most once
        each; keep polling :meth:`current` as a fallback). Raises :class:`Unavailable`
        when the subscription's connection is lost."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    yield int(orjson.loads(message["data"])["version"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    logger.warning("ignored a malformed persona-model notification: %r", message)
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"lost the persona-model subscription on {self.channel}: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
