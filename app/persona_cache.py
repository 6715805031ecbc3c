"""The API process's profiles in memory, fed by the profile store's change feed.

A decision never reads the store: :meth:`ProfileCache.profile` is a dict look-up on the
event-loop thread. A background task (:meth:`ProfileCache.watch`) pulls
:meth:`~learnloop.profiles.ProfileStore.changes` every ``refresh_seconds``: new and
changed profiles replace the cached ones, tombstones (a ``DELETE``) drop them. So a
profile written by any process (real-time updates, a bulk import, another API worker)
serves here within one refresh.

The cache is bounded (``max_profiles``, least recently used out). While nothing has been
evicted it holds every profile the store has, so a miss means "no profile" and costs
nothing. Once it has evicted, a miss may be a user it dropped: the decision is served
as a user without a profile (the default persona; never a store read on the request
path) and the user is fetched in the background, so their next decision has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable

from app.metrics import ServiceMetrics
from learnloop.profiles import ProfileChange, ProfileStore
from learnloop.shutdown import cancel_requested
from schemas.profiles import UserProfile

log = logging.getLogger(__name__)


class ProfileCache:
    """Pseudonymous user id → :class:`~schemas.profiles.UserProfile`, for one API process.

    ``on_forget`` is called with the users whose profile was deleted (after each
    refresh), so the persona resolver drops what it remembered about them.
    """

    def __init__(
        self,
        store: ProfileStore,
        *,
        max_profiles: int = 200_000,
        refresh_seconds: float = 0.2,
        batch: int = 1000,
        max_prefetch: int = 10_000,
        metrics: ServiceMetrics | None = None,
        on_forget: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.max_profiles = max_profiles
        self.refresh_seconds = refresh_seconds
        self.batch = batch
        self.max_prefetch = max_prefetch
        self.metrics = metrics
        self.on_forget = on_forget
        self._profiles: OrderedDict[str, UserProfile] = OrderedDict()
        self._cursor = 0
        self._evicted = False
        self._wanted: set[str] = set()
        self._absent: set[str] = set()  # fetched and not found (until the feed shows them)
        self._ready = False

    @property
    def cursor(self) -> int:
        """The last change-feed number applied."""
        return self._cursor

    @property
    def ready(self) -> bool:
        """True once the change feed has been read to its end once."""
        return self._ready

    def __len__(self) -> int:
        return len(self._profiles)

    def profile(self, user_id: str) -> UserProfile | None:
        """The cached profile, or ``None`` (see the module docstring for what a miss means)."""
        profiles = self._profiles
        found = profiles.get(user_id)
        if found is not None:
            profiles.move_to_end(user_id)
            return found
        if self._evicted and user_id not in self._absent and len(self._wanted) < self.max_prefetch:
            self._wanted.add(user_id)
        return None

    def put(self, profile: UserProfile) -> None:
        """A profile this process just wrote (e.g. a label): serve it at once."""
        self._keep(profile)

    def forget(self, user_id: str) -> None:
        """A user this process just deleted: forget them at once."""
        self._profiles.pop(user_id, None)
        self._wanted.discard(user_id)
        if self.on_forget is not None:
            self.on_forget((user_id,))

    async def load(self) -> None:
        """Read the change feed to its end (start-up: awaited before serving)."""
        await self.refresh()
        self._ready = True

    async def refresh(self) -> int:
        """Apply every change since the last refresh, then fetch the missed users;
        return how many changes were applied."""
        applied = 0
        forgotten: list[str] = []
        while True:
            changes, cursor = await self.store.changes(self._cursor, self.batch)
            for change in changes:
                self._apply(change, forgotten)
            applied += len(changes)
            self._cursor = max(self._cursor, cursor)
            if len(changes) < self.batch:
                break
        if forgotten and self.on_forget is not None:
            self.on_forget(forgotten)
        await self._prefetch()
        if self.metrics is not None:
            self.metrics.persona_cache_profiles.set(len(self._profiles))
        return applied

    async def watch(self) -> None:
        """Refresh every ``refresh_seconds`` forever (a lifespan task); a failed refresh
        (the store briefly unreachable) is logged and retried, serving what is cached."""
        while not cancel_requested():
            await asyncio.sleep(self.refresh_seconds)
            try:
                if not self._ready:
                    await self.load()
                else:
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("profile refresh failed; retrying in %.1fs", self.refresh_seconds)
        raise asyncio.CancelledError

    def _apply(self, change: ProfileChange, forgotten: list[str]) -> None:
        if change.profile is None:
            if self._profiles.pop(change.user_id, None) is not None or self._evicted:
                forgotten.append(change.user_id)
            return
        self._keep(change.profile)

    def _keep(self, profile: UserProfile) -> None:
        self._absent.discard(profile.user_id)
        profiles = self._profiles
        held = profiles.get(profile.user_id)
        if held is not None and held.version > profile.version:
            return  # this process already wrote a newer one (the feed will catch up)
        profiles[profile.user_id] = profile
        profiles.move_to_end(profile.user_id)
        if len(profiles) > self.max_profiles:
            profiles.popitem(last=False)
            self._evicted = True

    async def _prefetch(self) -> None:
        if not self._wanted:
            return
        wanted, self._wanted = self._wanted, set()
        found = 0
        for user_id in wanted:
            profile = await self.store.get(user_id)
            if profile is not None:
                self._keep(profile)
                found += 1
            else:
                if len(self._absent) >= self.max_profiles:
                    self._absent.clear()
                self._absent.add(user_id)
        if self.metrics is not None and found:
            self.metrics.persona_prefetches.inc(found)
