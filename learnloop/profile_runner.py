"""The embedded profile runner: feeds the pure :class:`ProfileUpdater` from the local event
log and applies what it emits to the profile store.

It runs in the loop process next to the join and the learner (``runtime/embedded.py``).
Exactly once across a crash: every batch's interactions are applied in one transaction
of the profile store that also records their ids; every ``checkpoint_seconds`` (and on
the way out) that transaction also stores the updater's snapshot and the log offset it
reflects. After a kill -9 the runner resumes from the last checkpoint with the updater
as it was then and reads the same records again: it derives the same interactions with
the same ids, which the store refuses, so no outcome is lost or counted twice. (Ids are
remembered for days of event time; a checkpoint is seconds old.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final

from learnloop.clock import Clock, SystemClock
from learnloop.errors import InvalidInput
from learnloop.eventlog.base import EventLog
from learnloop.profile_updates import (
    DEFAULT_HOLD_SECONDS,
    DEFAULT_HORIZON_SECONDS,
    ProfileUpdater,
)
from learnloop.profiles import ProfileStore
from learnloop.streams import Streams, decode_join_input
from schemas.profiles import Interaction

log = logging.getLogger(__name__)

CHECKPOINT: Final = "profiles.embedded"
INPUTS: Final = (Streams.DECISIONS, Streams.OUTCOMES)


def encode_checkpoint(offset: int, updater: ProfileUpdater) -> bytes:
    """The blob stored with each batch: the log offset and the updater's snapshot."""
    return json.dumps({"offset": offset, "updater": updater.snapshot().decode()}).encode()


def decode_checkpoint(blob: bytes) -> tuple[int, ProfileUpdater]:
    raw = json.loads(blob)
    return int(raw["offset"]), ProfileUpdater.restore(raw["updater"].encode())


class EmbeddedProfileRunner:
    """Applies the decisions and outcomes of the embedded log to user profiles until stopped.

    Parameters
    ----------
    events
        The event log the API workers append decisions and outcomes to.
    profiles
        The profile store (``<data_dir>/profiles.sqlite``); it also keeps the checkpoint.
    poll_seconds
        How long to wait when the log has nothing new.
    batch_size
        Records read and applied per transaction.
    checkpoint_seconds
        How often the updater snapshot and offset are stored with a batch.
    """

    def __init__(
        self,
        events: EventLog,
        profiles: ProfileStore,
        *,
        poll_seconds: float = 0.05,
        batch_size: int = 2000,
        checkpoint_seconds: float = 1.0,
        clock: Clock | None = None,
        horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
    ) -> None:
        self.events = events
        self.profiles = profiles
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock or SystemClock()
        self._last_checkpoint = self.clock.monotonic()
        self._committed = -1  # offset of the last stored checkpoint
        self._updater = ProfileUpdater(horizon_seconds, hold_seconds)
        self._offset = -1
        self.applied = 0  # interactions this process applied (new ones only)

    @property
    def offset(self) -> int:
        """The last log offset whose effect is committed."""
        return self._offset

    @property
    def updater(self) -> ProfileUpdater:
        return self._updater

    async def start(self) -> None:
        """Resume from the last committed checkpoint, if any."""
        blob = await self.profiles.load_checkpoint(CHECKPOINT)
        if blob is not None:
            self._offset, self._updater = decode_checkpoint(blob)
            self._committed = self._offset
            log.info("profile updates resumed at offset %d", self._offset)

    async def run(self) -> None:
        """Consume until cancelled; checkpoint on the way out."""
        await self.start()
        try:
            while True:
                if not await self.step():
                    await asyncio.sleep(self.poll_seconds)
        finally:
            await asyncio.shield(self.checkpoint())

    async def checkpoint(self) -> None:
        """Store the updater snapshot and offset now (also on shutdown)."""
        if self._offset != self._committed:
            await self._commit([], force=True)

    async def step(self) -> int:
        """Read one batch, feed the updater, apply what it emits; return records read."""
        records = await self.events.read(INPUTS, self._offset, self.batch_size)
        if not records:
            if self._offset != self._committed:
                await self._commit([])
            return 0
        interactions: list[Interaction] = []
        for record in records:
            try:
                event = decode_join_input(record.stream, record.value)
            except InvalidInput:
                log.exception("undecodable %s record at offset %d", record.stream, record.offset)
            else:
                interactions.extend(self._updater.on_event(event))
            self._offset = record.offset
        await self._commit(interactions)
        return len(records)

    async def _commit(self, interactions: list[Interaction], force: bool = False) -> None:
        """Apply ``interactions`` and, when due, the checkpoint, in one store transaction.

        Commit order (one transaction): apply each new interaction id to its profile and
        remember the id; then store the updater snapshot with the offset of the last
        record it has seen. A failure raises: the loop process restarts and resumes
        from the previous checkpoint, and the ids make the replay harmless.
        """
        now = self.clock.monotonic()
        due = force or now - self._last_checkpoint >= self.checkpoint_seconds
        if not interactions and not due:
            return
        checkpoint = (CHECKPOINT, encode_checkpoint(self._offset, self._updater)) if due else None
        self.applied += await self.profiles.apply(interactions, checkpoint)
        if due:
            self._committed, self._last_checkpoint = self._offset, now
