"""Personalizer documents in Redis for the distributed mode: every API replica sees them.

Per loop and kind (``prefix`` is ``Settings.redis_prefix``):

- ``{prefix}personalizer:{loop}:{kind}``: hash, key → the document as JSON;
- ``...:order``: sorted set of the keys scored by ``...:seq``, so ``list`` answers in
  the order the keys were first put, like the other backends.

Loop names are decision-point names (letters, digits, ``_.-``), so they cannot run
into the ``:`` separators. Each write is one Lua script (Redis runs it atomically):
the hash and the order change together, and ``put_if_absent`` decides between two
replicas creating the same evaluation at once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Final, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from learnloop.errors import ConfigurationError, Unavailable
from learnloop.personalizer_store import Document, Kind

T = TypeVar("T")

# KEYS: hash, order zset, sequence counter. ARGV: key, json, only_if_new ("1"/"0").
# Returns 1 when written, 0 when only_if_new and the key already existed.
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

# KEYS: hash, order zset. ARGV: key. Returns 1 when the key existed.
_DELETE: Final = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


class RedisPersonalizerStore:
    """A :class:`~learnloop.personalizer_store.PersonalizerStore` in Redis hashes.

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
        self._delete = self.redis.register_script(_DELETE)

    def hash_key(self, loop: str, kind: Kind) -> str:
        return f"{self.prefix}personalizer:{loop}:{kind}"

    def _keys(self, loop: str, kind: Kind) -> list[str]:
        h = self.hash_key(loop, kind)
        return [h, f"{h}:order", f"{h}:seq"]

    async def get(self, loop: str, kind: Kind, key: str) -> Document | None:
        raw = await self._call("read", self.redis.hget(self.hash_key(loop, kind), key))
        return None if raw is None else self._decode(loop, kind, key, raw)

    async def put(self, loop: str, kind: Kind, key: str, document: Document) -> None:
        args = [key, _encode(document), "0"]
        await self._call("write", self._write(keys=self._keys(loop, kind), args=args))

    async def put_if_absent(self, loop: str, kind: Kind, key: str, document: Document) -> bool:
        args = [key, _encode(document), "1"]
        written = await self._call("write", self._write(keys=self._keys(loop, kind), args=args))
        return bool(written)

    async def delete(self, loop: str, kind: Kind, key: str) -> bool:
        existed = await self._call(
            "delete", self._delete(keys=self._keys(loop, kind)[:2], args=[key])
        )
        return bool(existed)

    async def _read_all(self, loop: str, kind: Kind) -> tuple[list[bytes], dict[bytes, bytes]]:
        hash_key, order_key, _ = self._keys(loop, kind)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(order_key, 0, -1)
            pipe.hgetall(hash_key)
            order, documents = await pipe.execute()
        return order, documents

    async def list(self, loop: str, kind: Kind) -> list[Document]:
        order, documents = await self._call("read", self._read_all(loop, kind))
        by_key = {k.decode(): v for k, v in documents.items()}
        keys = [k.decode() for k in order]
        keys += sorted(set(by_key) - set(keys))  # written by hand without the script
        return [self._decode(loop, kind, k, by_key[k]) for k in keys if k in by_key]

    def _decode(self, loop: str, kind: Kind, key: str, raw: bytes | str) -> Document:
        try:
            found = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(
                f"Personalizer document {key!r} in Redis hash {self.hash_key(loop, kind)} "
                f"is not JSON: {exc}"
            ) from exc
        if not isinstance(found, dict):
            raise ConfigurationError(
                f"Personalizer document {key!r} in Redis hash {self.hash_key(loop, kind)} "
                "is not a JSON object"
            )
        return found

    async def _call(self, what: str, command: Awaitable[T]) -> T:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot {what} Personalizer documents in Redis: {exc}") from exc

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()


def _encode(document: Document) -> str:
    """JSON text of a document; refuses what JSON cannot hold before anything is written."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
