"""Join checkpoints of the Kafka runner in Redis: one hash per partition number.

``{redis_prefix}join:{topic_prefix}{partition}`` holds three fields, ``offsets``
(JSON: next offset per input stream), ``snapshot`` (the join state) and ``output``
(JSON: the joined topic's end offsets at that moment), written by one Lua script
so that a reader never sees the state of one moment with the offsets of another.

The script also *fences* stale writers: it refuses a checkpoint whose offsets are
behind the stored ones in any stream. A worker that lost its partitions without
noticing (paused longer than the session time-out) can therefore not overwrite
the newer state of the partitions' new owner; it is told so and reloads.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from join_service.partition_join import PartitionCheckpoint
from learnloop.errors import InvalidInput, Unavailable

# KEYS: the partition's hash. ARGV: offsets JSON, snapshot, output JSON.
# Returns 1 when written, 0 when the stored checkpoint is further along.
_SAVE: Final = """
local stored = redis.call('HGET', KEYS[1], 'offsets')
if stored then
    local old = cjson.decode(stored)
    local new = cjson.decode(ARGV[1])
    for stream, offset in pairs(old) do
        if (new[stream] or 0) < offset then
            return 0
        end
    end
end
redis.call('HSET', KEYS[1], 'offsets', ARGV[1], 'snapshot', ARGV[2], 'output', ARGV[3])
return 1
"""


class RedisCheckpoints:
    """Load and save :class:`PartitionCheckpoint` s of one deployment's join.

    Parameters
    ----------
    redis
        A client with bytes responses.
    redis_prefix
        Prefix of every key (``Settings.redis_prefix``).
    topic_prefix
        The topics' prefix (``Settings.topic_prefix``): checkpoints belong to topics.
    """

    def __init__(self, redis: aioredis.Redis, redis_prefix: str, topic_prefix: str) -> None:
        self.redis = redis
        self.redis_prefix = redis_prefix
        self.topic_prefix = topic_prefix
        self._save = redis.register_script(_SAVE)

    def key(self, partition: int) -> str:
        """The Redis key of a partition's checkpoint."""
        return f"{self.redis_prefix}join:{self.topic_prefix}{partition}"

    async def load(self, partition: int) -> PartitionCheckpoint | None:
        """The partition's last checkpoint, or ``None`` if it never had one."""
        fields = ["offsets", "snapshot", "output"]
        offsets, snapshot, output = await self._call(self.redis.hmget(self.key(partition), fields))
        if offsets is None or snapshot is None:
            return None
        try:
            inputs = orjson.loads(offsets)
            written = orjson.loads(output) if output is not None else {}
            return PartitionCheckpoint(
                {str(k): int(v) for k, v in inputs.items()},
                snapshot,
                {int(k): int(v) for k, v in written.items()},
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"join checkpoint {self.key(partition)} is unreadable ({exc}): delete the key "
                "to rebuild the partition's state from the start of its topics"
            ) from exc

    async def save(self, partition: int, checkpoint: PartitionCheckpoint) -> bool:
        """Store a checkpoint; ``False`` when a newer one is stored (this worker is stale)."""
        output = {str(k): v for k, v in checkpoint.output_offsets.items()}
        args = [orjson.dumps(checkpoint.offsets), checkpoint.snapshot, orjson.dumps(output)]
        written = await self._call(self._save(keys=[self.key(partition)], args=args))
        return bool(written)

    async def _call(self, command: Any) -> Any:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot reach the join checkpoints in Redis: {exc}") from exc
