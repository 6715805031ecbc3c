"""Profile store in Redis for the distributed mode: every API replica and profile consumer
sees the same profiles.

Keys (``prefix`` = ``Settings.redis_prefix``):

- ``{prefix}profile:{user_id}``: the profile as JSON;
- ``{prefix}profiles:seq``: the change counter; ``{prefix}profiles:changes``: a sorted set
  of user ids scored by the number of their latest change; a member whose profile key
  is gone is a tombstone (the user was deleted);
- ``{prefix}profile:applied:{interaction_id}``: an applied interaction, expiring after
  ``dedup_seconds``; ``{prefix}profiles:checkpoints``: a hash of consumer checkpoints.

Every write is optimistic: read the profiles, compute the new ones in Python with the
rules of :mod:`learnloop.profiles`, then one Lua script (atomic in Redis) checks that
each profile still has the version it was computed from and that no interaction id was
applied meanwhile, and only then writes profiles, change numbers, applied ids and the
checkpoint together. A conflict (another replica wrote first) retries from the read.
Exactly once therefore holds as in SQLite: the ids and the checkpoint are written in
the same atomic step as the effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from learnloop.clock import Clock, SystemClock
from learnloop.errors import ConfigurationError, Conflict, Unavailable
from learnloop.profiles import (
    DEFAULT_DEDUP_SECONDS,
    ProfileChange,
    apply_interaction,
    apply_update,
    relabel,
    restamp,
)
from schemas.profiles import Interaction, ProfileUpdate, UserProfile

T = TypeVar("T")
MAX_ATTEMPTS: Final = 20

# ARGV: prefix, n, (user, expected version, json) * n, m, id * m, ttl, checkpoint name, blob.
# Returns n when written, -1 when a profile changed since it was read, -2 when an id was
# applied since.
_WRITE: Final = """
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local i = 3
for k = 1, n do
    local raw = redis.call('GET', prefix .. 'profile:' .. ARGV[i])
    local current = 0
    if raw then current = cjson.decode(raw)['version'] end
    if current ~= tonumber(ARGV[i + 1]) then return -1 end
    i = i + 3
end
local m = tonumber(ARGV[i])
local ids = i + 1
for k = 0, m - 1 do
    if redis.call('EXISTS', prefix .. 'profile:applied:' .. ARGV[ids + k]) == 1 then return -2 end
end
i = 3
for k = 1, n do
    local seq = redis.call('INCR', prefix .. 'profiles:seq')
    redis.call('SET', prefix .. 'profile:' .. ARGV[i], ARGV[i + 2])
    redis.call('ZADD', prefix .. 'profiles:changes', seq, ARGV[i])
    i = i + 3
end
local ttl = ARGV[ids + m]
for k = 0, m - 1 do
    redis.call('SET', prefix .. 'profile:applied:' .. ARGV[ids + k], '1', 'EX', ttl)
end
if ARGV[ids + m + 1] ~= '' then
    redis.call('HSET', prefix .. 'profiles:checkpoints', ARGV[ids + m + 1], ARGV[ids + m + 2])
end
return n
"""

# ARGV: prefix, user. Returns 1 when a profile was deleted (and a tombstone numbered).
_DELETE: Final = """
if redis.call('DEL', ARGV[1] .. 'profile:' .. ARGV[2]) == 0 then return 0 end
local seq = redis.call('INCR', ARGV[1] .. 'profiles:seq')
redis.call('ZADD', ARGV[1] .. 'profiles:changes', seq, ARGV[2])
return 1
"""

Compute = Callable[[dict[str, UserProfile | None]], dict[str, UserProfile]]


class RedisProfileStore:
    """A :class:`~learnloop.profiles.ProfileStore` in Redis (see the module docstring).

    Parameters
    ----------
    redis
        A client or a ``redis://`` URL; a client built from a URL is closed by :meth:`close`.
    prefix
        Prefix of the keys (``Settings.redis_prefix``).
    clock
        Stamps ``updated_at`` of bulk updates and labels.
    dedup_seconds
        How long applied interaction ids are kept (Redis expiry, wall time).
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        prefix: str = "learnloop:",
        *,
        clock: Clock | None = None,
        dedup_seconds: float = DEFAULT_DEDUP_SECONDS,
    ) -> None:
        self._owns_client = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.clock = clock or SystemClock()
        self.dedup_seconds = dedup_seconds
        self._write = self.redis.register_script(_WRITE)
        self._delete = self.redis.register_script(_DELETE)

    def profile_key(self, user_id: str) -> str:
        return f"{self.prefix}profile:{user_id}"

    # -- reads -----------------------------------------------------------------------

    async def get(self, user_id: str) -> UserProfile | None:
        raw = await self._call("read", self.redis.get(self.profile_key(user_id)))
        return self._decode(user_id, raw) if raw is not None else None

    async def load_checkpoint(self, name: str) -> bytes | None:
        key = f"{self.prefix}profiles:checkpoints"
        raw = await self._call("read", self.redis.hget(key, name))
        return raw.encode() if isinstance(raw, str) else raw

    async def changes(self, after: int, limit: int = 1000) -> tuple[list[ProfileChange], int]:
        found = await self._call(
            "read",
            self.redis.zrangebyscore(
                f"{self.prefix}profiles:changes", f"({after}", "+inf", 0, limit, withscores=True
            ),
        )
        members: list[tuple[bytes, float]] = list(found)  # type: ignore[arg-type]
        if not members:
            return [], after
        users = [m.decode() for m, _ in members]
        bodies = await self._call("read", self.redis.mget([self.profile_key(u) for u in users]))
        out = [
            ProfileChange(int(score), user, self._decode(user, body) if body else None)
            for (_, score), user, body in zip(members, users, bodies, strict=True)
        ]
        return out, out[-1].seq

    # -- writes ----------------------------------------------------------------------

    async def put(self, profile: UserProfile) -> UserProfile:
        done = await self._transact(
            [profile.user_id], lambda cur: {profile.user_id: restamp(cur[profile.user_id], profile)}
        )
        return done[profile.user_id]

    async def put_many(self, profiles: Sequence[UserProfile]) -> int:
        def compute(current: dict[str, UserProfile | None]) -> dict[str, UserProfile]:
            out: dict[str, UserProfile] = {}
            for p in profiles:
                out[p.user_id] = restamp(out.get(p.user_id) or current[p.user_id], p)
            return out

        await self._transact([p.user_id for p in profiles], compute)
        return len(profiles)

    async def update(self, user_id: str, update: ProfileUpdate) -> UserProfile:
        return (await self._updates([(user_id, update)]))[user_id]

    async def update_many(self, updates: Sequence[tuple[str, ProfileUpdate]]) -> int:
        await self._updates(updates)
        return len(updates)

    async def _updates(
        self, updates: Sequence[tuple[str, ProfileUpdate]]
    ) -> dict[str, UserProfile]:
        now = self.clock.now()

        def compute(current: dict[str, UserProfile | None]) -> dict[str, UserProfile]:
            out: dict[str, UserProfile] = {}
            for user, update in updates:
                out[user] = apply_update(out.get(user) or current[user], user, update, now)
            return out

        return await self._transact([u for u, _ in updates], compute)

    async def set_label(self, user_id: str, persona: str | None) -> UserProfile:
        now = self.clock.now()
        done = await self._transact(
            [user_id], lambda cur: {user_id: relabel(cur[user_id], user_id, persona, now)}
        )
        return done[user_id]

    async def delete(self, user_id: str) -> bool:
        deleted = await self._call("delete", self._delete(args=[self.prefix, user_id]))
        return bool(deleted)

    async def apply(
        self, interactions: Sequence[Interaction], checkpoint: tuple[str, bytes] | None = None
    ) -> int:
        for _ in range(MAX_ATTEMPTS):
            ids = [i.interaction_id for i in interactions]
            seen = (
                await self._call(
                    "read",
                    self.redis.mget([f"{self.prefix}profile:applied:{i}" for i in ids]),
                )
                if ids
                else []
            )
            new: dict[str, Interaction] = {}
            for interaction, flag in zip(interactions, seen, strict=True):
                if flag is None:
                    new.setdefault(interaction.interaction_id, interaction)
            current = await self._read({i.user_id for i in new.values()})
            profiles: dict[str, UserProfile] = {}
            for interaction in new.values():
                user = interaction.user_id
                profiles[user] = apply_interaction(profiles.get(user) or current[user], interaction)
            written = await self._script(current, profiles, list(new), checkpoint)
            if written >= 0:
                return len(new)
        raise Conflict(
            f"profile updates kept conflicting with other writers ({MAX_ATTEMPTS} attempts); retry"
        )

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()

    # -- the optimistic write ----------------------------------------------------------

    async def _transact(self, users: Sequence[str], compute: Compute) -> dict[str, UserProfile]:
        for _ in range(MAX_ATTEMPTS):
            current = await self._read(set(users))
            profiles = compute(current)
            if await self._script(current, profiles, [], None) >= 0:
                return profiles
        raise Conflict(
            f"profile writes kept conflicting with other writers ({MAX_ATTEMPTS} attempts); retry"
        )

    async def _read(self, users: set[str]) -> dict[str, UserProfile | None]:
        if not users:
            return {}
        order = sorted(users)
        bodies = await self._call("read", self.redis.mget([self.profile_key(u) for u in order]))
        return {
            u: self._decode(u, b) if b is not None else None
            for u, b in zip(order, bodies, strict=True)
        }

    async def _script(
        self,
        current: dict[str, UserProfile | None],
        profiles: dict[str, UserProfile],
        ids: list[str],
        checkpoint: tuple[str, bytes] | None,
    ) -> int:
        args: list[str | bytes | int] = [self.prefix, len(profiles)]
        for user, profile in profiles.items():
            before = current.get(user)
            args += [user, before.version if before else 0, profile.model_dump_json()]
        args += [len(ids), *ids, max(1, int(self.dedup_seconds))]
        args += [checkpoint[0], checkpoint[1]] if checkpoint else ["", ""]
        return int(await self._call("write", self._write(args=args)))

    def _decode(self, user_id: str, raw: bytes | str) -> UserProfile:
        try:
            return UserProfile.model_validate_json(raw)
        except ValidationError as exc:
            raise ConfigurationError(
                f"profile {self.profile_key(user_id)} in Redis is invalid "
                f"({exc.error_count()} errors): PUT a corrected profile or DELETE the user"
            ) from exc

    async def _call(self, what: str, command: Awaitable[T]) -> T:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable(f"cannot {what} profiles in Redis: {exc}") from exc
