"""Publishing model releases, resuming from them, and adopting the releases someone else
published (a promotion or a rollback): where the learner meets the model store."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from learnloop.clock import Clock
from learnloop.errors import Conflict, NotFound
from learnloop.modelstore.base import ModelStore
from online_learner.learner import OnlineLearner
from schemas.events import ModelRelease

logger = logging.getLogger(__name__)


async def publish_due(
    learner: OnlineLearner, store: ModelStore, clock: Clock
) -> list[ModelRelease]:
    """Publish every decision point whose release is due; the one place that commits models.

    Commit order, per decision point:

    1. snapshot the model bytes and counters (``learner.make_release``);
    2. the store makes the model bytes durable;
    3. the store swaps its manifest to the new release (readers switch here);
    4. the learner marks the release as published (pending count and timer reset).

    A failure in 2 or 3 leaves the learner unmarked, so the same examples stay
    pending and the next call retries under the same version number. The
    release's ``last_offset`` is the offset up to which the stored model is
    complete; :func:`resume` restarts consumption after it. Call from one task
    only: two concurrent callers would snapshot the same version.

    Before 1, and when the store refuses the version in 2 (``Conflict``), a newer
    promotion or rollback in the store is adopted (:func:`adopt_newer`) instead
    of being overwritten; a newer *online* release is another learner's, and its
    ``Conflict`` propagates.
    """
    published: list[ModelRelease] = []
    for decision_point in learner.due_releases(clock.monotonic()):
        if await adopt_newer(learner, store, decision_point) is not None:
            continue
        release, model = learner.make_release(decision_point, clock.now())
        try:
            stored = await store.publish(release, model)
        except Conflict:
            if await adopt_newer(learner, store, decision_point) is None:
                raise
            continue
        learner.mark_released(stored, clock.monotonic())
        logger.info(
            "published %s v%d (%d examples, last offset %d)",
            decision_point,
            stored.version,
            stored.examples_learned,
            stored.last_offset,
        )
        published.append(stored)
    return published


async def resume(learner: OnlineLearner, store: ModelStore, decision_points: Iterable[str]) -> int:
    """Restore each decision point's current release; return the offset to consume after.

    The result is the smallest ``last_offset`` over ``decision_points`` (-1 when
    any of them has no release yet: its examples live only in the log). The
    runner reads the examples with offsets greater than it; the learner skips
    those each restored model already holds and relearns the rest, so every
    example is in each model exactly once. The examples it skips also refill
    the learner's memory of recent event ids.
    """
    offsets: list[int] = []
    for decision_point in decision_points:
        release = await store.current(decision_point)
        if release is None:
            offsets.append(-1)
            continue
        model = await store.load(release)
        learner.restore(release, model)
        logger.info(
            "restored %s v%d (last offset %d)",
            decision_point,
            release.version,
            release.last_offset,
        )
        offsets.append(release.last_offset)
    return min(offsets, default=-1)


async def adopt_newer(
    learner: OnlineLearner, store: ModelStore, decision_point: str
) -> ModelRelease | None:
    """Adopt the store's current release of ``decision_point`` if it is newer than the
    learner's and someone else made it (a promotion or a rollback); return it, or ``None``.

    The learner keeps its read position (:meth:`OnlineLearner.adopt`), so the next
    release holds the adopted model and the examples read after it was adopted.
    """
    current = await store.current(decision_point)
    if current is None or current.source == "online":
        return None
    if current.version <= learner.version(decision_point):
        return None
    try:
        model = await store.load(current)
    except NotFound:
        return None  # superseded and pruned meanwhile: the next look finds the newer one
    learner.adopt(current, model)
    logger.info(
        "adopted %s v%d (%s%s, %d examples)",
        decision_point,
        current.version,
        current.source,
        f" of v{current.restores_version}" if current.restores_version is not None else "",
        current.examples_learned,
    )
    return current


async def adopt_all(
    learner: OnlineLearner, store: ModelStore, decision_points: Iterable[str]
) -> list[ModelRelease]:
    """:func:`adopt_newer` for each decision point; the releases adopted."""
    adopted = []
    for decision_point in decision_points:
        release = await adopt_newer(learner, store, decision_point)
        if release is not None:
            adopted.append(release)
    return adopted
