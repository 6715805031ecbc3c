"""Automatic optimization (``isAutoOptimizationEnabled``): periodic ``Auto`` evaluations.

With auto-optimization on, Personalizer ran an offline evaluation with policy
optimization over the recent logs every ``autoOptimizationFrequency`` from
``autoOptimizationStartDate``, and adopted the learning settings it found when they
were better than the online ones. Here every API worker runs an :class:`AutoOptimizer`
(started by ``app/main.py`` when the app has a job launcher). Every
``settings.personalizer_auto_check_seconds`` it reads each decision point's Personalizer
settings document; a loop with auto-optimization on is *due* when its current period
(the ``frequency``-long slots counted from the start date, or from the Unix epoch
without one) has no run yet. The run is claimed with ``put_if_absent`` on the document
``state/auto:<slot start>``, so of the workers and replicas that notice it at the same
time exactly one creates the evaluation and launches it. The job process decides the
outcome (``runtime/personalizer_auto_apply.py``): ``OptimalPolicyApplied`` or
``OnlinePolicyRetained``.

A slot is named by the epoch second it begins at rather than by its index, so changing
the start date or the frequency can never meet an old claim and skip a run; the
``auto:last`` document (when the last run started) keeps such a change from running a
loop twice in one period.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.personalizer.errors import PersonalizerError
from app.personalizer.evaluation_jobs import new_job, start_job
from app.personalizer.jobs import JobLauncher
from app.personalizer.routes_config import load_settings
from app.personalizer.service_config import ServiceSettings
from learnloop.clock import Clock
from learnloop.decision_points import DecisionPointStore
from learnloop.personalizer_store import PersonalizerStore
from learnloop.shutdown import cancel_requested
from schemas.config import DecisionPointConfig

log = logging.getLogger("learnloop.personalizer.auto")

DEFAULT_FREQUENCY: Final = timedelta(days=7)
"""The period when ``autoOptimizationFrequency`` was never set: the ``P7D`` of
Personalizer's examples (its API documents no default)."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
LAST_KEY: Final = "auto:last"


@dataclass(frozen=True)
class Slot:
    """The period a check falls in: ``[start, start + length)``."""

    start: datetime
    length: timedelta

    @property
    def key(self) -> str:
        """The claim document's key: one per period, whatever the settings were."""
        return f"auto:{int(self.start.timestamp())}"


def current_slot(settings: ServiceSettings, now: datetime) -> Slot | None:
    """The period ``now`` falls in, or ``None``: auto-optimization is off, or its start
    date is still ahead.

    >>> s = ServiceSettings(is_auto_optimization_enabled=True,
    ...     auto_optimization_frequency_seconds=86400,
    ...     auto_optimization_start_date=datetime(2026, 3, 1, tzinfo=UTC))
    >>> current_slot(s, datetime(2026, 3, 3, 7, tzinfo=UTC)).start.isoformat()
    '2026-03-03T00:00:00+00:00'
    >>> current_slot(s, datetime(2026, 2, 28, tzinfo=UTC)) is None
    True
    """
    if not settings.is_auto_optimization_enabled:
        return None
    anchor = settings.auto_optimization_start_date or EPOCH
    anchor = anchor.replace(tzinfo=UTC) if anchor.tzinfo is None else anchor.astimezone(UTC)
    if now < anchor:
        return None
    seconds = settings.auto_optimization_frequency_seconds
    length = timedelta(seconds=seconds) if seconds else DEFAULT_FREQUENCY
    index = (now - anchor) // length
    return Slot(anchor + index * length, length)


def evaluated_range(
    settings: ServiceSettings, slot: Slot, now: datetime, cleared: datetime | None
) -> tuple[datetime, datetime]:
    """The logs an automatic run evaluates: the last ``modelRetrainDays`` days when set,
    else the last period, never from before the logs were deleted.

    >>> s = ServiceSettings(model_retrain_days=3)
    >>> now = datetime(2026, 3, 10, tzinfo=UTC)
    >>> start, end = evaluated_range(s, Slot(now, timedelta(days=7)), now, None)
    >>> (end - start).days
    3
    """
    if settings.model_retrain_days > 0:
        start = now - timedelta(days=settings.model_retrain_days)
    else:
        start = now - slot.length
    if cleared is not None and start < cleared < now:
        start = cleared
    return start, now


class AutoOptimizer:
    """Starts the due ``Auto`` evaluations of every loop (see the module docstring)."""

    def __init__(
        self,
        *,
        decision_points: DecisionPointStore,
        store: PersonalizerStore,
        launcher: JobLauncher,
        clock: Clock,
        check_seconds: float,
    ) -> None:
        self.decision_points = decision_points
        self.store = store
        self.launcher = launcher
        self.clock = clock
        self.check_seconds = check_seconds

    @classmethod
    def of_app(cls, state: Any) -> AutoOptimizer:
        """The optimizer over an app's stores, launcher, clock and settings."""
        return cls(
            decision_points=state.decision_points,
            store=state.personalizer,
            launcher=state.personalizer_jobs,
            clock=state.clock,
            check_seconds=state.settings.personalizer_auto_check_seconds,
        )

    async def watch(self) -> None:
        """Check every ``check_seconds`` until cancelled; a failed check is logged and
        the next one tries again (a store that is down must not stop the schedule)."""
        while not cancel_requested():
            try:
                await self.check()
            except Exception:
                log.exception("automatic optimization check failed; retrying")
            await asyncio.sleep(self.check_seconds)

    async def check(self) -> list[tuple[str, str]]:
        """Start every due run; the ``(loop, evaluation id)`` of those this worker started."""
        started = []
        for config in await self.decision_points.all():
            job_id = await self.run_if_due(config)
            if job_id is not None:
                started.append((config.name, job_id))
        return started

    async def run_if_due(self, config: DecisionPointConfig) -> str | None:
        """The id of the evaluation started for the loop, if it was due and this worker
        won its claim."""
        loop = config.name
        settings = await load_settings(self.store, loop)
        now = self.clock.now()
        slot = current_slot(settings, now)
        if slot is None:
            return None
        last = await self.store.get(loop, "state", LAST_KEY)
        if last is not None and datetime.fromisoformat(last["at"]) >= slot.start:
            return None  # this period already ran (under other settings, maybe)
        claim = {"at": now.isoformat(), "slot_start": slot.start.isoformat()}
        if not await self.store.put_if_absent(loop, "state", slot.key, claim):
            return None  # another worker or replica has it
        job_id = str(uuid.uuid4())
        cleared = await self._logs_cleared(loop)
        start, end = evaluated_range(settings, slot, now, cleared)
        job = new_job(
            config, "evaluation", job_id, name=f"auto-{loop}-{now:%Y-%m-%d}"[:256],
            start_time=start, end_time=end, now=now, optimize=True, evaluation_type="Auto",
        )  # fmt: skip
        try:
            await start_job(self.launcher, self.store, loop, job, "EvaluationAlreadyExists")
        except PersonalizerError as exc:
            await self.store.delete(loop, "state", slot.key)  # the next check tries again
            log.warning("automatic optimization of loop %s did not start: %s", loop, exc.message)
            return None
        if last is not None and last.get("key") not in (None, slot.key):
            await self.store.delete(loop, "state", str(last["key"]))  # an old claim
        await self.store.put(
            loop, "state", LAST_KEY, {**claim, "key": slot.key, "evaluation_id": job_id}
        )
        log.info(
            "automatic optimization of loop %s: evaluation %s over %s to %s",
            loop, job_id, start.isoformat(), end.isoformat(),
        )  # fmt: skip
        return job_id

    async def _logs_cleared(self, loop: str) -> datetime | None:
        span = await self.store.get(loop, "state", "logs") or {}
        cleared = span.get("cleared")
        return datetime.fromisoformat(cleared) if isinstance(cleared, str) else None
