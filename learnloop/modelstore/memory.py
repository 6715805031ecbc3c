"""In-memory model store, for tests."""

from __future__ import annotations

from schemas.events import ModelRelease


class MemoryModelStore:
    def __init__(self) -> None:
        self._current: dict[str, ModelRelease] = {}
        self._blobs: dict[str, bytes] = {}

    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        location = f"memory://{release.decision_point}/{release.version}"
        self._blobs[location] = model
        stored = release.model_copy(update={"model_location": location})
        self._current[release.decision_point] = stored
        return stored

    async def current(self, decision_point: str) -> ModelRelease | None:
        return self._current.get(decision_point)

    async def load(self, release: ModelRelease) -> bytes:
        return self._blobs[release.model_location]

    async def close(self) -> None:
        return None
