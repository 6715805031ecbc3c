"""The user-profile store: its interface, the rules that change a profile, an in-memory backend.

Every backend (memory here, SQLite in ``profile_store_sqlite.py``, Redis in
``profile_store_redis.py``) keeps the same promises:

- :meth:`ProfileStore.apply` applies each :class:`~schemas.profiles.Interaction` id
  **at most once**, however often it is offered (a replay after a crash, the same
  outcome posted twice), and stores the caller's checkpoint in the *same* atomic
  write. A consumer that resumes from that checkpoint therefore counts every
  interaction exactly once. Applied ids are remembered for ``dedup_seconds`` of
  event time past the newest one applied; older replays are the checkpoint's job.
- :meth:`ProfileStore.put_many` writes all profiles or none.
- :meth:`ProfileStore.changes` is a change feed: every write takes the next number
  of one store-wide counter, so a cache that remembers the last number it saw asks
  only for what changed since. A deleted user shows up once as a tombstone
  (``ProfileChange.profile is None``) so caches forget it too.

The rules themselves (:func:`apply_interaction`, :func:`apply_update`) are pure
functions shared by every backend, so the backends cannot disagree on what a
basket add does to a profile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from learnloop.clock import Clock, SystemClock
from schemas.profiles import Interaction, ProfileUpdate, UserProfile

__all__ = [
    "DEFAULT_DEDUP_SECONDS",
    "Interaction",
    "MemoryProfileStore",
    "ProfileChange",
    "ProfileStore",
    "all_profiles",
    "apply_interaction",
    "apply_update",
]

DEFAULT_DEDUP_SECONDS: Final = 7 * 24 * 3600.0
"""How long (event time) an applied interaction id is remembered to refuse a replay."""


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """One entry of the change feed: the profile as it is now, or ``None`` if deleted."""

    seq: int
    user_id: str
    profile: UserProfile | None


class ProfileStore(Protocol):
    """Profiles keyed by pseudonymous user id; see the module docstring for the promises."""

    async def get(self, user_id: str) -> UserProfile | None: ...

    async def put(self, profile: UserProfile) -> UserProfile:
        """Store ``profile`` as given (``version`` is set to the stored one + 1)."""
        ...

    async def put_many(self, profiles: Sequence[UserProfile]) -> int:
        """Store every profile in one transaction (all or nothing); return how many."""
        ...

    async def update(self, user_id: str, update: ProfileUpdate) -> UserProfile:
        """Overwrite the fields ``update`` sets, creating the profile if needed."""
        ...

    async def update_many(self, updates: Sequence[tuple[str, ProfileUpdate]]) -> int:
        """Apply every bulk update in one transaction (all or nothing); return how many."""
        ...

    async def set_label(self, user_id: str, persona: str | None) -> UserProfile:
        """Record (or clear) the persona the shop confirmed for this user."""
        ...

    async def delete(self, user_id: str) -> bool:
        """Forget the user; ``True`` if a profile existed."""
        ...

    async def apply(
        self, interactions: Sequence[Interaction], checkpoint: tuple[str, bytes] | None = None
    ) -> int:
        """Apply the interactions not applied before, and save ``checkpoint`` (name, blob),
        in one atomic write; return how many were new."""
        ...

    async def load_checkpoint(self, name: str) -> bytes | None: ...

    async def changes(self, after: int, limit: int = 1000) -> tuple[list[ProfileChange], int]:
        """Changes numbered above ``after`` (oldest first, at most ``limit``) and the cursor to
        pass next time (the last number returned, or ``after`` when nothing changed)."""
        ...

    async def close(self) -> None: ...


async def all_profiles(store: ProfileStore, batch: int = 1000) -> AsyncIterator[UserProfile]:
    """Every stored profile, read through the change feed in batches (for training)."""
    cursor = 0
    while True:
        changes, cursor_next = await store.changes(cursor, batch)
        for change in changes:
            if change.profile is not None:
                yield change.profile
        if not changes or cursor_next == cursor:
            return
        cursor = cursor_next


def apply_interaction(profile: UserProfile | None, interaction: Interaction) -> UserProfile:
    """The profile after one real-time interaction (pure).

    A ``session`` counts a session; a ``detail_view`` a view; a ``basket_add`` adds
    its value to ``basket_value``; a ``purchase`` counts an order of ``value``, its
    ``items`` (1 when unknown) and their category, and whether it was for others.
    Every kind moves ``last_seen`` forward (never back: outcomes arrive out of order).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> p = apply_interaction(None, Interaction(interaction_id="o1", user_id="u_1",
    ...     kind="purchase", timestamp=t, value=40.0, items=2, category="tea"))
    >>> (p.orders, p.monetary, p.items, p.categories, p.version)
    (1, 40.0, 2, {'tea': 2}, 1)
    """
    base = profile or UserProfile(user_id=interaction.user_id)
    t = interaction.timestamp
    changes: dict[str, object] = {
        "first_seen": _earliest(base.first_seen, t),
        "last_seen": _latest(base.last_seen, t),
        "updated_at": _latest(base.updated_at, t),
        "version": base.version + 1,
    }
    value = interaction.value or 0.0
    if interaction.kind == "session":
        changes["sessions"] = base.sessions + 1
    elif interaction.kind == "detail_view":
        changes["detail_views"] = base.detail_views + 1
    elif interaction.kind == "basket_add":
        changes["basket_adds"] = base.basket_adds + 1
        changes["basket_value"] = base.basket_value + value
    else:  # purchase
        items = interaction.items or 1
        changes["orders"] = base.orders + 1
        changes["monetary"] = base.monetary + value
        changes["items"] = base.items + items
        changes["last_order_at"] = _latest(base.last_order_at, t)
        if interaction.for_others:
            changes["orders_for_others"] = base.orders_for_others + 1
        if interaction.category is not None:
            categories = dict(base.categories)
            categories[interaction.category] = categories.get(interaction.category, 0) + items
            changes["categories"] = categories
    return base.model_copy(update=changes)


def apply_update(
    profile: UserProfile | None, user_id: str, update: ProfileUpdate, now: datetime
) -> UserProfile:
    """The profile after a bulk update: each field ``update`` sets replaces the stored one."""
    base = profile or UserProfile(user_id=user_id)
    fields = update.model_dump(exclude_none=True)
    return UserProfile.model_validate(
        base.model_dump() | fields | {"updated_at": now, "version": base.version + 1}
    )


def relabel(
    profile: UserProfile | None, user_id: str, persona: str | None, now: datetime
) -> UserProfile:
    """The profile with the confirmed persona ``persona`` (``None`` clears it) (pure)."""
    base = profile or UserProfile(user_id=user_id)
    return base.model_copy(
        update={"label": persona, "updated_at": now, "version": base.version + 1}
    )


def restamp(stored: UserProfile | None, profile: UserProfile) -> UserProfile:
    """``profile`` as a replacement of ``stored``: its version follows the stored one."""
    return profile.model_copy(update={"version": (stored.version if stored else 0) + 1})


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


class MemoryProfileStore:
    """A :class:`ProfileStore` in dicts: tests, and a single-process demo."""

    def __init__(
        self, *, clock: Clock | None = None, dedup_seconds: float = DEFAULT_DEDUP_SECONDS
    ) -> None:
        self.clock = clock or SystemClock()
        self.dedup_seconds = dedup_seconds
        self._profiles: dict[str, UserProfile] = {}
        self._seq_of: dict[str, int] = {}  # user -> number of its latest change (incl. deletion)
        self._seq = 0
        self._applied: OrderedDict[str, datetime] = OrderedDict()
        self._newest: datetime | None = None
        self._checkpoints: dict[str, bytes] = {}

    async def get(self, user_id: str) -> UserProfile | None:
        return self._profiles.get(user_id)

    async def put(self, profile: UserProfile) -> UserProfile:
        stored = restamp(self._profiles.get(profile.user_id), profile)
        self._store(stored)
        return stored

    async def put_many(self, profiles: Sequence[UserProfile]) -> int:
        for profile in profiles:  # nothing here can fail half-way
            await self.put(profile)
        return len(profiles)

    async def update(self, user_id: str, update: ProfileUpdate) -> UserProfile:
        profile = apply_update(self._profiles.get(user_id), user_id, update, self.clock.now())
        self._store(profile)
        return profile

    async def update_many(self, updates: Sequence[tuple[str, ProfileUpdate]]) -> int:
        for user_id, update in updates:  # nothing here can fail half-way
            await self.update(user_id, update)
        return len(updates)

    async def set_label(self, user_id: str, persona: str | None) -> UserProfile:
        profile = relabel(self._profiles.get(user_id), user_id, persona, self.clock.now())
        self._store(profile)
        return profile

    async def delete(self, user_id: str) -> bool:
        existed = self._profiles.pop(user_id, None) is not None
        if existed:
            self._seq += 1
            self._seq_of[user_id] = self._seq
        return existed

    async def apply(
        self, interactions: Sequence[Interaction], checkpoint: tuple[str, bytes] | None = None
    ) -> int:
        new = 0
        for interaction in interactions:
            if interaction.interaction_id in self._applied:
                continue
            self._applied[interaction.interaction_id] = interaction.timestamp
            if self._newest is None or interaction.timestamp > self._newest:
                self._newest = interaction.timestamp
            self._store(apply_interaction(self._profiles.get(interaction.user_id), interaction))
            new += 1
        if checkpoint is not None:
            self._checkpoints[checkpoint[0]] = checkpoint[1]
        self._forget_applied()
        return new

    async def load_checkpoint(self, name: str) -> bytes | None:
        return self._checkpoints.get(name)

    async def changes(self, after: int, limit: int = 1000) -> tuple[list[ProfileChange], int]:
        numbered = sorted((seq, user) for user, seq in self._seq_of.items() if seq > after)
        out = [ProfileChange(seq, user, self._profiles.get(user)) for seq, user in numbered[:limit]]
        return out, (out[-1].seq if out else after)

    async def close(self) -> None:
        return None

    def _store(self, profile: UserProfile) -> None:
        self._profiles[profile.user_id] = profile
        self._seq += 1
        self._seq_of[profile.user_id] = self._seq

    def _forget_applied(self) -> None:
        """Drop the ids applied (in order) before the horizon behind the newest one."""
        if self._newest is None:
            return
        horizon = self._newest - timedelta(seconds=self.dedup_seconds)
        while self._applied and next(iter(self._applied.values())) < horizon:
            self._applied.popitem(last=False)
