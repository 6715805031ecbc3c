"""Policy serving: which model answers each decision point, and hot swap to new releases.

The registry maps a decision point to an immutable :class:`ServedModel`. A
request reads that reference once, so it never sees a half-loaded model; a swap
replaces the dict entry. Models are built in a worker thread, but a VW workspace
is not thread-safe, so predictions only ever run on the event-loop thread: the
thread only *builds* new instances.

Building a workspace holds the GIL for ~15 ms (pylibvw does not release it), so
every swap stalls the requests in flight that long even from a thread. Hence at
most one swap per decision point per ``min_swap_seconds``: a learner releasing
every second would otherwise cost the p99. The first trained model replaces an
untrained one at once, and a release that learned from at least twice the examples
of the served model is swapped in at once too (early on, when models change most).

A release is served only if its ``vw_args`` equal the decision point's current
configuration: after an operator changes the arguments, an old model trained
with other reductions or interactions must not come back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.metrics import ServiceMetrics
from learnloop.clock import Clock, SystemClock
from learnloop.decision_points import DecisionPointStore
from learnloop.modelstore.base import ModelStore
from learnloop.policy import Policy, VWPolicy
from learnloop.shutdown import cancel_requested, stop_task
from schemas.config import DecisionPointConfig
from schemas.events import ModelRelease

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The policy answering one decision point, and where it came from.

    ``release`` is ``None`` while the policy is untrained (version 0, or the last
    version number after ``vw_args`` changed and no release with the new
    arguments exists yet).
    """

    policy: Policy
    version: int
    release: ModelRelease | None
    vw_args: str

    @property
    def trained(self) -> bool:
        return self.release is not None


def _release_key(release: ModelRelease) -> tuple[int, str]:
    return (release.version, release.event_id)


class ModelRegistry:
    """Serves one model per decision point and swaps in new releases from the model store."""

    def __init__(
        self,
        models: ModelStore,
        decision_points: DecisionPointStore,
        *,
        poll_seconds: float,
        min_swap_seconds: float = 0.0,
        clock: Clock | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.models = models
        self.decision_points = decision_points
        self.poll_seconds = poll_seconds
        self.min_swap_seconds = min_swap_seconds
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self._served: dict[str, ServedModel] = {}
        self._swapped_at: dict[str, float] = {}
        self._failed: set[tuple[str, int, str]] = set()
        self._lock = asyncio.Lock()
        self._ready = False
        self._notifications: Callable[[], AsyncIterator[tuple[str, int]]] | None = None

    @property
    def ready(self) -> bool:
        """True once every configured decision point has been given a model."""
        return self._ready

    def get(self, decision_point: str) -> ServedModel | None:
        """The model serving ``decision_point`` now (read it once per request)."""
        return self._served.get(decision_point)

    def snapshot(self) -> Mapping[str, ServedModel]:
        """A read-only view of every served model (metrics, listings)."""
        return MappingProxyType(dict(self._served))

    def serve_untrained(self, config: DecisionPointConfig) -> ServedModel:
        """Serve a fresh untrained model for ``config`` at once, on the calling thread.

        For a decision point that has no model yet (e.g. created by another
        replica and not yet seen by the watcher): a one-off ~20 ms stall.
        """
        served = ServedModel(
            VWPolicy(config.vw_args), self._last_version(config.name), None, config.vw_args
        )
        self._swap(config.name, served)
        return served

    async def load_all(self) -> None:
        """Give every configured decision point its model; then the registry is ready."""
        for config in await self.decision_points.all():
            await self.refresh(config.name)
        self._ready = True

    async def refresh(self, decision_point: str) -> ServedModel | None:
        """Bring one decision point up to date with its config and the model store.

        Serves the store's current release if its ``vw_args`` match the config and it
        is not already served; otherwise, if the served model's ``vw_args`` are stale
        (or there is none), a fresh untrained model with the configured arguments.
        The config is read under the lock, so a concurrent ``PUT`` cannot be undone
        by a poll that read the config before it.
        """
        async with self._lock:
            config = await self.decision_points.get(decision_point)
            if config is None:
                return self._served.get(decision_point)
            served = self._served.get(decision_point)
            release = await self.models.current(decision_point)
            if release is not None and self._should_load(config, served, release):
                loaded = await self._load(config, release)
                if loaded is not None:
                    return loaded
            if served is None or served.vw_args != config.vw_args:
                policy = await asyncio.to_thread(VWPolicy, config.vw_args)
                served = ServedModel(
                    policy, self._last_version(decision_point), None, config.vw_args
                )
                self._swap(decision_point, served)
            return served

    def _should_load(
        self, config: DecisionPointConfig, served: ServedModel | None, release: ModelRelease
    ) -> bool:
        if release.vw_args != config.vw_args:
            return False  # trained for other arguments: wait for a release with these
        if (config.name, *_release_key(release)) in self._failed:
            return False
        if (
            served is not None
            and served.release is not None
            and served.vw_args == config.vw_args
            and self.clock.monotonic() - self._swapped_at[config.name] < self.min_swap_seconds
            and release.examples_learned < max(1, 2 * served.release.examples_learned)
        ):
            # Swapped recently; the store keeps the newest, a later poll takes it. Unless
            # the release learned from twice the examples the served model did: a young
            # model improves fastest, and a second of fast traffic served by the model of
            # the first 50 examples costs more than a swap (at most log2(N) such swaps).
            return False
        return (
            served is None
            or served.release is None
            or served.vw_args != config.vw_args
            or _release_key(served.release) != _release_key(release)
        )

    async def _load(self, config: DecisionPointConfig, release: ModelRelease) -> ServedModel | None:
        """Load and build a release off the event loop; ``None`` (and remembered) if broken."""
        try:
            blob = await self.models.load(release)
            policy = await asyncio.to_thread(VWPolicy, release.vw_args, blob)
        except Exception:
            # A corrupt or vanished model must not take serving down: keep the old one.
            log.exception(
                "cannot load model %s v%d; keeping the served model", config.name, release.version
            )
            self._failed.add((config.name, *_release_key(release)))
            return None
        served = ServedModel(policy, release.version, release, release.vw_args)
        self._swap(config.name, served)
        log.info("serving %s model v%d", config.name, release.version)
        return served

    def _last_version(self, decision_point: str) -> int:
        served = self._served.get(decision_point)
        return served.version if served is not None else 0

    def _swap(self, decision_point: str, served: ServedModel) -> None:
        # One dict assignment: a request holds either the old or the new reference.
        self._served[decision_point] = served
        self._swapped_at[decision_point] = self.clock.monotonic()
        if self.metrics is not None:
            self.metrics.model_version.labels(decision_point).set(served.version)
            self.metrics.model_swaps.labels(decision_point).inc()

    def listen(self, notifications: Callable[[], AsyncIterator[tuple[str, int]]]) -> None:
        """Also refresh a decision point as soon as a release of it is announced.

        ``notifications`` opens a stream of ``(decision_point, version)`` (e.g.
        :meth:`~learnloop.modelstore.redis.RedisModelStore.watch`); it is reopened
        after a failure. Polling stays on: a notification can be lost. Call before
        :meth:`watch` starts.
        """
        self._notifications = notifications

    async def watch(self) -> None:
        """Poll the decision points and the model store forever (the lifespan's task);
        with :meth:`listen`, also refresh on every release notification."""
        listener = None
        if self._notifications is not None:
            listener = asyncio.create_task(self._listen(self._notifications))
        try:
            await self._poll()
        finally:
            if listener is not None:
                await stop_task(listener)

    async def _listen(self, notifications: Callable[[], AsyncIterator[tuple[str, int]]]) -> None:
        while not cancel_requested():
            try:
                async for decision_point, _version in notifications():
                    await self.refresh(decision_point)
                    if cancel_requested():
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("release notifications lost; polling, resubscribing", exc_info=True)
            await asyncio.sleep(self.poll_seconds)
        raise asyncio.CancelledError

    async def _poll(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self.poll_seconds)
            try:
                if not self._ready:
                    await self.load_all()
                    continue
                for config in await self.decision_points.all():
                    await self.refresh(config.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store may be briefly unreachable; keep serving and try again.
                log.exception("model watcher poll failed; retrying in %.1fs", self.poll_seconds)
        raise asyncio.CancelledError
