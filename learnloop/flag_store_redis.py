"""Flag store in Redis for the distributed mode: every API replica sees the same flags.

Keys (``prefix`` is ``Settings.redis_prefix``):

- ``{prefix}flags``: hash, key → the flag as JSON;
- ``{prefix}flags:order`` / ``:seq``: creation order, so ``all()`` lists like the other stores;
- ``{prefix}flags:versions``: hash, key → its newest version (kept after a delete);
- ``{prefix}flags:history:{key}``: list of :class:`~schemas.flags.FlagChange` JSON, newest first;
- ``{prefix}flags:changes``: the change counter; each change is also published on the
  channel of the same name, so replicas reload at once (polling stays as the fallback:
  pub/sub delivers at most once).

A change is planned in Python (:mod:`learnloop.flag_store`) from what was read, then
written by one Lua script that first checks no one changed those keys since (the
versions it planned from) and applies flags, history, counter and notification
atomically; a conflicting writer makes it plan again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Final, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from learnloop.clock import Clock, SystemClock
from learnloop.errors import ConfigurationError, Conflict, Unavailable
from learnloop.flag_store import (
    DEFAULT_HISTORY_LIMIT,
    Planned,
    check_import,
    check_limit,
    plan_delete,
    plan_put,
    plan_toggle,
)
from schemas.flags import Flag, FlagChange, FlagDefinition

log = logging.getLogger(__name__)
T = TypeVar("T")

HISTORY_KEPT: Final = 10_000  # changes kept per key
_ATTEMPTS: Final = 20

# KEYS: flags, order, seq, versions, changes, then one history list per entry.
# ARGV: channel, history_kept, n, then per entry: key, expected version, new version,
# flag JSON ('' deletes), change JSON. Returns the new counter, or -1 when a key's version
# is not the one planned from (someone else changed it first: plan again).
_APPLY: Final = """
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
    local base = 4 + i * 5
    local current = redis.call('HGET', KEYS[4], ARGV[base]) or '0'
    if current ~= ARGV[base + 1] then return -1 end
end
for i = 0, n - 1 do
    local base = 4 + i * 5
    local key = ARGV[base]
    if ARGV[base + 3] == '' then
        redis.call('HDEL', KEYS[1], key)
        redis.call('ZREM', KEYS[2], key)
    else
        redis.call('HSET', KEYS[1], key, ARGV[base + 3])
        if not redis.call('ZSCORE', KEYS[2], key) then
            redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), key)
        end
    end
    redis.call('HSET', KEYS[4], key, ARGV[base + 2])
    redis.call('LPUSH', KEYS[6 + i], ARGV[base + 4])
    redis.call('LTRIM', KEYS[6 + i], 0, tonumber(ARGV[2]) - 1)
end
local changes = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[1], changes)
return changes
"""

Planner = Callable[[Mapping[str, Flag | None], Mapping[str, int]], list[Planned]]


class RedisFlagStore:
    """A :class:`~learnloop.flag_store.FlagStore` in Redis (see the module docstring).

    Parameters
    ----------
    redis
        A client (bytes responses) or a ``redis://`` URL; a client built from a URL is
        closed by :meth:`close`.
    prefix
        Prefix of the keys and the channel.
    clock
        Stamps the changes.
    """

    def __init__(
        self, redis: aioredis.Redis | str, prefix: str = "learnloop:", *, clock: Clock | None = None
    ) -> None:
        self._owns_client = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.clock = clock or SystemClock()
        self._apply = self.redis.register_script(_APPLY)
        self._jitter = random.Random()

    @property
    def hash_key(self) -> str:
        return f"{self.prefix}flags"

    @property
    def channel(self) -> str:
        return f"{self.hash_key}:changes"

    def _history_key(self, key: str) -> str:
        return f"{self.hash_key}:history:{key}"

    # Reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> Flag | None:
        raw = await self._call("read", self.redis.hget(self.hash_key, key))
        return self._flag(key, raw) if raw is not None else None

    async def all(self) -> list[Flag]:
        order, flags = await self._call("read", self._read_all())
        by_key = {k.decode(): v for k, v in flags.items()}
        keys = [k.decode() for k in order]
        keys += sorted(set(by_key) - set(keys))
        return [self._flag(k, by_key[k]) for k in keys if k in by_key]

    async def _read_all(self) -> tuple[list[bytes], dict[bytes, bytes]]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(f"{self.hash_key}:order", 0, -1)
            pipe.hgetall(self.hash_key)
            order, flags = await pipe.execute()
        return order, flags

    async def history(self, key: str, limit: int = DEFAULT_HISTORY_LIMIT) -> list[FlagChange]:
        check_limit(limit)
        raws = await self._call("read", self.redis.lrange(self._history_key(key), 0, limit - 1))
        return [FlagChange.model_validate_json(raw) for raw in raws]

    async def version(self) -> int:
        raw = await self._call("read", self.redis.get(f"{self.hash_key}:changes"))
        return int(raw or 0)

    async def watch(self) -> AsyncIterator[int]:
        """Yield the change counter of every change published from now on.

        Raises :class:`~learnloop.errors.Unavailable` when the subscription is lost.
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    yield int(message["data"])
                except (KeyError, TypeError, ValueError):
                    log.warning("ignored a malformed flag notification: %r", message)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"lost the flag subscription on {self.channel}: {exc}") from exc
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    # Changes -----------------------------------------------------------------------------

    async def put(self, key: str, definition: FlagDefinition, by: str) -> Flag:
        now = self.clock.now()

        def plan(current: Mapping[str, Flag | None], last: Mapping[str, int]) -> list[Planned]:
            return [plan_put(key, definition, by, now, current[key], last[key])]

        (done,) = await self._change([key], plan)
        assert done.flag is not None
        return done.flag

    async def delete(self, key: str, by: str) -> None:
        now = self.clock.now()
        await self._change(
            [key], lambda current, last: [plan_delete(key, by, now, current[key], last[key])]
        )

    async def set_enabled(self, key: str, enabled: bool, by: str) -> Flag:
        now = self.clock.now()
        unchanged: list[Flag] = []

        def plan(current: Mapping[str, Flag | None], last: Mapping[str, int]) -> list[Planned]:
            planned = plan_toggle(key, enabled, by, now, current[key], last[key])
            if planned is None:
                flag = current[key]
                assert flag is not None
                unchanged.append(flag)
                return []
            return [planned]

        done = await self._change([key], plan)
        if unchanged:
            return unchanged[-1]
        assert done[0].flag is not None
        return done[0].flag

    async def put_many(self, definitions: Mapping[str, FlagDefinition], by: str) -> list[Flag]:
        keys = list(check_import(definitions))
        now = self.clock.now()

        def plan(current: Mapping[str, Flag | None], last: Mapping[str, int]) -> list[Planned]:
            return [
                plan_put(k, definitions[k], by, now, current[k], last[k], "import") for k in keys
            ]

        return [p.flag for p in await self._change(keys, plan) if p.flag is not None]

    async def _change(self, keys: Sequence[str], plan: Planner) -> list[Planned]:
        for attempt in range(_ATTEMPTS):
            if attempt:  # another writer won: back off a random while, so all get through
                await asyncio.sleep(self._jitter.uniform(0, 0.005 * attempt))
            current, last = await self._call("read", self._read_keys(keys))
            planned = plan(current, last)  # InvalidInput / NotFound: nothing written
            if not planned:
                return []
            written = await self._call("write", self._write(planned, last))
            if written != -1:
                return planned
        raise Conflict(
            f"flags {', '.join(keys)} kept changing under this write: send the change again"
        )

    async def _read_keys(
        self, keys: Sequence[str]
    ) -> tuple[dict[str, Flag | None], dict[str, int]]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.hash_key, list(keys))
            pipe.hmget(f"{self.hash_key}:versions", list(keys))
            raws, versions = await pipe.execute()
        current = {
            k: self._flag(k, r) if r is not None else None for k, r in zip(keys, raws, strict=True)
        }
        last = {k: int(v or 0) for k, v in zip(keys, versions, strict=True)}
        return current, last

    def _write(self, planned: Sequence[Planned], last: Mapping[str, int]) -> Awaitable[int]:
        h = self.hash_key
        keys = [h, f"{h}:order", f"{h}:seq", f"{h}:versions", f"{h}:changes"]
        keys += [self._history_key(p.key) for p in planned]
        args: list[str | int] = [self.channel, HISTORY_KEPT, len(planned)]
        for p in planned:
            flag_json = p.flag.model_dump_json() if p.flag is not None else ""
            args += [p.key, str(last[p.key]), p.change.version, flag_json]
            args.append(p.change.model_dump_json())
        result: Awaitable[int] = self._apply(keys=keys, args=args)
        return result

    # Plumbing ----------------------------------------------------------------------------

    def _flag(self, key: str, raw: bytes | str) -> Flag:
        try:
            return Flag.model_validate_json(raw)
        except ValidationError as exc:
            raise ConfigurationError(
                f"flag {key!r} in Redis hash {self.hash_key} is invalid "
                f"({exc.error_count()} errors): fix it with PUT /v1/flags/{key}"
            ) from exc

    async def _call(self, what: str, command: Awaitable[T]) -> T:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot {what} flags in Redis: {exc}") from exc

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
