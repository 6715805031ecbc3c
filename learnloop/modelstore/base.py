"""The model-store interface: local files in embedded mode, Redis in distributed mode."""

from __future__ import annotations

from typing import Final, Protocol

from schemas.api import StoredRelease
from schemas.events import ModelRelease, ReleaseSource

PINNED_SOURCES: Final[frozenset[ReleaseSource]] = frozenset({"promotion", "rollback", "import"})
"""Releases whose model bytes are never pruned: what a person chose to serve stays
restorable, however many online releases follow it (an imported model has no other copy)."""


class ModelStore(Protocol):
    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        """Store the model bytes and make ``release`` the current one, atomically.

        Returns the release with ``model_location`` filled in. Readers never see
        a manifest that points at a model not fully written. Raises
        :class:`~learnloop.errors.Conflict` when ``release.version`` is not newer
        than the current release's.
        """
        ...

    async def current(self, decision_point: str) -> ModelRelease | None:
        """The current release of a decision point, or ``None`` before the first."""
        ...

    async def load(self, release: ModelRelease) -> bytes:
        """The model bytes of a release (:class:`~learnloop.errors.NotFound` once pruned)."""
        ...

    async def history(self, decision_point: str, limit: int | None = None) -> list[StoredRelease]:
        """The decision point's releases, newest first (at most ``limit``), each saying
        whether its model bytes are still stored.

        Model bytes kept: the newest ``keep`` releases plus every release whose
        source is in :data:`PINNED_SOURCES` and every release :meth:`pin` was called for.
        """
        ...

    async def pin(self, decision_point: str, version: int) -> bool:
        """Never prune the model of ``version`` (the release a promotion or rollback
        replaces: the one to come back to); whether its bytes are still stored."""
        ...

    async def close(self) -> None: ...


def with_current(history: list[StoredRelease], current: ModelRelease | None) -> list[StoredRelease]:
    """``history`` with the current release in front if it is missing (a manifest written
    before release histories existed, or a crash between the manifest and the history)."""
    if current is None or (history and history[0].release.version >= current.version):
        return history
    return [StoredRelease(release=current, model_kept=True), *history]
