"""The embedded join runner: feeds the pure join from the local event log and writes
joined examples back to it.

It only moves events: decode, hand to :class:`join_service.window.Join`, append what
comes out. Exactly-once holds because joined examples are appended with their
decision's event id as unique key, and the join state is checkpointed with the
input offset in the same SQLite transaction (see :meth:`EmbeddedJoinRunner._commit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from join_service.metrics import JoinMetrics
from join_service.window import Join, idle_stream_time
from learnloop.clock import Clock, SystemClock
from learnloop.decision_points import DecisionPointCache, DecisionPointStore
from learnloop.errors import InvalidInput
from learnloop.eventlog.base import Append, EventLog, LogRecord, Streams
from learnloop.settings import DEFAULTS
from learnloop.streams import decode_join_input
from schemas import JoinedExample

log = logging.getLogger(__name__)

STATE_SNAPSHOT = "join.snapshot"
STATE_OFFSET = "join.offset"


class EmbeddedJoinRunner:
    """Runs the join over the embedded event log until stopped.

    Parameters
    ----------
    events
        The event log holding decisions, outcomes, rewards and activations.
    decision_points
        Where window, reward map and aggregation of each decision point come from;
        re-read every ``config_refresh_seconds``.
    poll_seconds
        How long to wait when the log has nothing new.
    checkpoint_seconds
        How often the join state is written with its offset. Joined examples are
        written as soon as they are emitted either way.
    """

    def __init__(
        self,
        events: EventLog,
        decision_points: DecisionPointStore,
        *,
        clock: Clock | None = None,
        metrics: JoinMetrics | None = None,
        poll_seconds: float = 0.02,
        batch_size: int = 2000,
        checkpoint_seconds: float = DEFAULTS.join_checkpoint_seconds,
        config_refresh_seconds: float = 1.0,
    ) -> None:
        self.events = events
        self.decision_points = decision_points
        self.clock = clock or SystemClock()
        self.metrics = metrics or JoinMetrics()
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.checkpoint_seconds = checkpoint_seconds
        self._configs = DecisionPointCache(decision_points, config_refresh_seconds)
        self._join = Join(self._configs.mapping)
        self._offset = -1
        self._last_arrival = 0.0
        self._last_checkpoint = 0.0
        self._dirty = False

    @property
    def join(self) -> Join:
        return self._join

    @property
    def offset(self) -> int:
        """The last input offset handed to the join."""
        return self._offset

    async def start(self) -> None:
        """Load configs and restore the join state and offset of the last checkpoint."""
        await self._configs.refresh(self.clock.monotonic(), force=True)
        snapshot = await self.events.load_state(STATE_SNAPSHOT)
        offset = await self.events.load_state(STATE_OFFSET)
        if snapshot is not None and offset is not None:
            self._join = Join.restore(snapshot, self._configs.mapping)
            self._offset = int(offset)
            log.info("join restored at offset %d", self._offset)
        self._last_arrival = self.clock.monotonic()
        self._last_checkpoint = self.clock.monotonic()

    async def run(self) -> None:
        """Consume until cancelled; checkpoint on the way out."""
        await self.start()
        try:
            while True:
                if not await self.step():
                    await asyncio.sleep(self.poll_seconds)
        finally:
            await asyncio.shield(self.checkpoint())

    async def step(self) -> int:
        """Handle one batch of input (or advance an idle stream); return events consumed."""
        await self._configs.refresh(self.clock.monotonic())
        records = await self.events.read(Streams.JOIN_INPUTS, self._offset, self.batch_size)
        emitted: list[JoinedExample] = []
        if records:
            emitted = self._feed(records)
            self._last_arrival = self.clock.monotonic()
        elif self._join.stream_time is not None:
            idle_time = idle_stream_time(
                self._join.stream_time, self._last_arrival, self.clock.monotonic()
            )
            if idle_time > self._join.stream_time:
                emitted = self._join.advance(idle_time)
                # The idle advance is now the stream time; measure further idleness from here.
                self._last_arrival = self.clock.monotonic()
                self._dirty = True
        await self._commit(emitted)
        return len(records)

    async def checkpoint(self) -> None:
        """Write the join state and offset now (also on shutdown)."""
        await self._commit([], force_checkpoint=True)

    def _feed(self, records: Sequence[LogRecord]) -> list[JoinedExample]:
        emitted: list[JoinedExample] = []
        for record in records:
            try:
                event = decode_join_input(record.stream, record.value)
            except InvalidInput:
                # Written by the API after validation, so this is a bug or a foreign writer:
                # skip it loudly rather than wedge the join forever.
                log.exception("undecodable %s record at offset %d", record.stream, record.offset)
            else:
                emitted.extend(self._join.on_event(event))
                self.metrics.events.labels(record.stream).inc()
            self._offset = record.offset
        self._dirty = True
        return emitted

    async def _commit(self, emitted: list[JoinedExample], force_checkpoint: bool = False) -> None:
        """Ship what the join produced, then (periodically) its state.

        Commit order, all in one transaction of the event log:
        1. append the joined examples (unique key = decision event id, so a replay
           after a crash cannot write one twice) and the dropped events (audit);
        2. store the join snapshot and the input offset it reflects.
        Nothing is acknowledged upstream: the log offset *is* the acknowledgement.
        """
        dropped = self._join.drain_dropped()
        records = [
            Append(
                Streams.JOINED, e.model_dump_json().encode(), key=e.event_id, unique_key=e.event_id
            )
            for e in emitted
        ]
        records += [
            Append(Streams.DROPPED, d.model_dump_json().encode(), key=d.reason) for d in dropped
        ]
        now = self.clock.monotonic()
        checkpoint_due = self._dirty and (
            force_checkpoint or now - self._last_checkpoint >= self.checkpoint_seconds
        )
        if not records and not checkpoint_due:
            return
        state: dict[str, bytes] = {}
        if checkpoint_due:
            state = {
                STATE_SNAPSHOT: self._join.snapshot(),
                STATE_OFFSET: str(self._offset).encode(),
            }
            self._last_checkpoint = now
            self._dirty = False
        await self.events.commit(records, state)
        self.metrics.emitted(emitted)
        for item in dropped:
            self.metrics.dropped.labels(item.reason).inc()
        self._update_gauges()

    def _update_gauges(self) -> None:
        stats = self._join.stats
        self.metrics.open_windows.set(stats.open_windows)
        self.metrics.held.set(stats.held_events)
        if stats.stream_time is not None:
            self.metrics.lag.set((self.clock.now() - stats.stream_time).total_seconds())
