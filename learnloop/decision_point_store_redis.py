"""Decision-point store in Redis for the distributed mode: every replica sees the same configs.

One hash, ``{prefix}decision_points``, maps each name to its config as JSON; a
sorted set ``{prefix}decision_points:order`` remembers creation order so that
:meth:`RedisDecisionPointStore.all` lists them like the other stores do. A Lua
script writes both at once (Redis runs it atomically).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Final, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from learnloop.errors import ConfigurationError, Unavailable
from schemas.config import DecisionPointConfig

T = TypeVar("T")

# KEYS: hash, order zset, sequence counter. ARGV: name, json, only_if_new ("1"/"0").
# Returns 1 when written, 0 when only_if_new and the name already existed.
_WRITE: Final = """
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
    return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
end
return 1
"""


class RedisDecisionPointStore:
    """A :class:`~learnloop.decision_points.DecisionPointStore` in a Redis hash.

    Parameters
    ----------
    redis
        A client (bytes responses) or a ``redis://`` URL; a client built from a URL
        is closed by :meth:`close`.
    prefix
        Prefix of the keys (``Settings.redis_prefix``).
    """

    def __init__(self, redis: aioredis.Redis | str, prefix: str = "learnloop:") -> None:
        self._owns_client = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self._write = self.redis.register_script(_WRITE)

    @property
    def hash_key(self) -> str:
        return f"{self.prefix}decision_points"

    def _keys(self) -> list[str]:
        return [self.hash_key, f"{self.hash_key}:order", f"{self.hash_key}:seq"]

    async def get(self, name: str, *, fresh: bool = False) -> DecisionPointConfig | None:
        """Read from Redis each time: every read is fresh."""
        raw = await self._call("read", self.redis.hget(self.hash_key, name))
        return self._decode(name, raw) if raw is not None else None

    async def put(self, config: DecisionPointConfig) -> None:
        """Create or replace a decision point."""
        args = [config.name, config.model_dump_json(), "0"]
        await self._call("write", self._write(keys=self._keys(), args=args))

    async def all(self) -> list[DecisionPointConfig]:
        """Every decision point, in the order they were first created."""
        order, configs = await self._call("read", self._read_all())
        names = [n.decode() for n in order]
        by_name = {k.decode(): v for k, v in configs.items()}
        names += sorted(set(by_name) - set(names))  # written by hand without the script
        return [self._decode(n, by_name[n]) for n in names if n in by_name]

    async def _read_all(self) -> tuple[list[bytes], dict[bytes, bytes]]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self._keys()[1], 0, -1)
            pipe.hgetall(self.hash_key)
            order, configs = await pipe.execute()
        return order, configs

    async def seed(self, configs: Iterable[DecisionPointConfig]) -> list[str]:
        """Insert the decision points that do not exist yet (HSETNX semantics, never
        overwriting what an admin changed); return the names inserted."""
        inserted: list[str] = []
        for config in configs:
            written = await self._call(
                "write",
                self._write(keys=self._keys(), args=[config.name, config.model_dump_json(), "1"]),
            )
            if written:
                inserted.append(config.name)
        return inserted

    def _decode(self, name: str, raw: bytes | str) -> DecisionPointConfig:
        try:
            return DecisionPointConfig.model_validate_json(raw)
        except ValidationError as exc:
            raise ConfigurationError(
                f"decision point {name!r} in Redis hash {self.hash_key} is invalid "
                f"({exc.error_count()} errors): fix it with PUT /v1/decision-points/{name}"
            ) from exc

    async def _call(self, what: str, command: Awaitable[T]) -> T:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot {what} decision points in Redis: {exc}") from exc

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
