"""The online persona learner: confirmed labels → the river classifier → river releases.

One learner per installation (in the loop process embedded, in ``learnloop learn``
distributed) reads the profile store's change feed, learns every *new* confirmed label
(a user's label the first time it is seen, or when it changes; the many later changes of
a labelled profile — purchases, sessions — are not learned again) and publishes the
model to the online persona-model store, where every API process loads it like the
CatBoost model. Learning in one place keeps all API workers on the same model.

The feed cursor and the labels learned so far travel inside each release's bytes, so a
restarted learner resumes exactly where its last release was: labels after it are
learned once, by the next release. A deleted user's entry leaves the learned labels
XX
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Protocol

from learnloop.clock import Clock, SystemClock
from learnloop.persona_features import profile_features
from learnloop.persona_models import PersonaModelStore
from learnloop.persona_online import OnlinePersonaClassifier
from learnloop.profiles import ProfileChange, ProfileStore
from learnloop.shutdown import cancel_requested
from schemas.personas import PersonaModelRelease

log = logging.getLogger(__name__)


class Lease(Protocol):
    async def hold(self) -> bool:
        """Take or renew the lease; ``True`` while this process holds it."""
        ...


_HOLD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class RedisLease:
    """A lease held by one process at a time: a Redis key with this holder's id and a
    time-out, renewed on every :meth:`hold` (so a dead holder's lease lapses after
    ``ttl_ms``)."""

    def __init__(self, redis: Any, key: str, ttl_ms: int = 10_000) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.owner = uuid.uuid4().hex

    async def hold(self) -> bool:
        return bool(await self.redis.eval(_HOLD, 1, self.key, self.owner, self.ttl_ms))


class PersonaLabelLearner:
    """Learns the labels of the profile change feed; publishes every ``publish_every_labels``
    new labels, or ``publish_every_seconds`` after the first unpublished one."""

    def __init__(
        self,
        profiles: ProfileStore,
        models: PersonaModelStore,
        *,
        clock: Clock | None = None,
        publish_every_labels: int = 20,
        publish_every_seconds: float = 2.0,
        poll_seconds: float = 0.5,
        batch: int = 1000,
    ) -> None:
        self.profiles = profiles
        self.models = models
        self.clock = clock or SystemClock()
        self.publish_every_labels = publish_every_labels
        self.publish_every_seconds = publish_every_seconds
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._model = OnlinePersonaClassifier()
        self._cursor = 0
        self._learned: dict[str, str] = {}
        self._pending = 0
        self._pending_since: float | None = None
        self._started = False

    @property
    def model(self) -> OnlinePersonaClassifier:
        return self._model

    @property
    def cursor(self) -> int:
        return self._cursor

    async def start(self) -> None:
        """Resume from the current river release (model, cursor, labels learned)."""
        release = await self.models.current()
        if release is not None:
            model, state = OnlinePersonaClassifier.load(
                await self.models.load(release), release.version
            )
            self._model = model
            self._cursor = int(state.get("cursor", 0))
            self._learned = {str(k): str(v) for k, v in dict(state.get("learned", {})).items()}
            log.info(
                "online persona learner resumes from v%d (feed cursor %d, %d labels)",
                release.version,
                self._cursor,
                len(self._learned),
            )
        self._started = True

    async def step(self) -> int:
        """Read the feed to its end; learn the new labels; publish if due. Returns how
        many labels were learned."""
        if not self._started:
            await self.start()
        learned = 0
        while True:
            changes, cursor = await self.profiles.changes(self._cursor, self.batch)
            for change in changes:
                learned += self._learn(change)
            self._cursor = max(self._cursor, cursor)
            if len(changes) < self.batch:
                break
        if learned and self._pending_since is None:
            self._pending_since = self.clock.monotonic()
        self._pending += learned
        if self._due():
            await self.publish()
        return learned

    async def publish(self) -> PersonaModelRelease | None:
        """Publish the model now if it learned anything since the last release."""
        if self._pending == 0 or not self._model.trained:
            return None
        state: dict[str, Any] = {"cursor": self._cursor, "learned": self._learned}
        model = self._model
        release = PersonaModelRelease(
            version=0,
            created_at=self.clock.now(),
            source="online",
            kind="river",
            classes=list(model.classes),
            feature_names=list(model.feature_names),
            metrics={"labels_learned": float(model.labels_learned)},
            train_size=model.labels_learned,
        )
        blob = await asyncio.to_thread(model.to_bytes, state)
        stored = await self.models.publish(release, blob)
        self._model = model.with_version(stored.version)
        self._pending = 0
        self._pending_since = None
        log.info(
            "published river persona model v%d (%d labels)", stored.version, len(self._learned)
        )
        return stored

    async def run(self, lease: Lease | None = None) -> None:
        """Step every ``poll_seconds`` until cancelled; publishes what is pending on the way out.

        With a ``lease`` (several ``learnloop learn`` workers), only its holder learns; a
        worker that takes the lease over resumes from the newest release.
        """
        try:
            while not cancel_requested():
                await self.tick(lease)
                await asyncio.sleep(self.poll_seconds)
        finally:
            if lease is None or self._started:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.publish())

    async def tick(self, lease: Lease | None = None) -> int:
        """One round of :meth:`run`: a :meth:`step` if this process may learn; labels learned."""
        if lease is None or await lease.hold():
            return await self.step()
        self._started = False  # another worker learns: reload from its release when ours
        self._pending, self._pending_since = 0, None
        return 0

    def _learn(self, change: ProfileChange) -> int:
        profile = change.profile
        if profile is None:
            self._learned.pop(change.user_id, None)
            return 0
        if profile.label is None or self._learned.get(profile.user_id) == profile.label:
            return 0
        now = profile.updated_at or self.clock.now()
        self._model.learn_one(profile_features(profile, {}, now), profile.label)
        self._learned[profile.user_id] = profile.label
        return 1

    def _due(self) -> bool:
        if self._pending == 0:
            return False
        if self._pending >= self.publish_every_labels:
            return True
        since = self._pending_since
        return since is not None and self.clock.monotonic() - since >= self.publish_every_seconds
