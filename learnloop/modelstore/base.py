"""The model-store interface: local files in embedded mode, Redis in distributed mode."""

from __future__ import annotations

from typing import Protocol

from schemas.events import ModelRelease


class ModelStore(Protocol):
    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        """Store the model bytes and make ``release`` the current one, atomically.

        Returns the release with ``model_location`` filled in. Readers never see
        a manifest that points at a model not fully written.
        """
        ...

    async def current(self, decision_point: str) -> ModelRelease | None:
        """The current release of a decision point, or ``None`` before the first."""
        ...

    async def load(self, release: ModelRelease) -> bytes:
        """The model bytes of a release."""
        ...

    async def close(self) -> None: ...
