"""The audit trail in Redis for the distributed mode: one list per decision point,
``{prefix}audit:{decision_point}``, newest record first (see :mod:`learnloop.audit`)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from learnloop.audit import parse_record
from learnloop.errors import Unavailable
from schemas.audit import ModelAuditRecord


class RedisAuditLog:
    """An :class:`~learnloop.audit.AuditLog` in Redis lists (Redis persistence applies)."""

    def __init__(self, redis: aioredis.Redis | str, prefix: str = "learnloop:") -> None:
        self._owns_client = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix

    def key(self, decision_point: str) -> str:
        return f"{self.prefix}audit:{decision_point}"

    async def append(self, record: ModelAuditRecord) -> None:
        try:
            await self.redis.lpush(self.key(record.decision_point), record.model_dump_json())
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot write the audit record to Redis: {exc}") from exc

    async def records(
        self, decision_point: str, limit: int | None = None
    ) -> list[ModelAuditRecord]:
        if limit == 0:
            return []
        stop = -1 if limit is None else limit - 1
        try:
            raw = await self.redis.lrange(self.key(decision_point), 0, stop)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot read the audit records from Redis: {exc}") from exc
        return [parse_record(item, self.key(decision_point)) for item in raw]

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
