"""The persona-model store, in memory and on local disk: versions in order (0 takes the
next), history newest first, a stale version refused, the bytes of every version kept,
and rollback republishing an older model as a new version."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.persona_models import (
    LocalPersonaModelStore,
    MemoryPersonaModelStore,
    PersonaModelStore,
    rollback,
)
from schemas.personas import PersonaModelRelease

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def release(version: int = 0, f1: float = 0.9) -> PersonaModelRelease:
    return PersonaModelRelease(
        version=version,
        created_at=NOW,
        source="train",
        classes=["a", "b"],
        feature_names=["frequency"],
        metrics={"macro_f1": f1},
    )


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PersonaModelStore]:
    if request.param == "memory":
        yield MemoryPersonaModelStore()
    else:
        yield LocalPersonaModelStore(tmp_path / "personas")


def test_publish_current_load_history(store: PersonaModelStore) -> None:
    async def scenario() -> None:
        assert await store.current() is None
        assert await store.history() == []
        first = await store.publish(release(), b"one")
        second = await store.publish(release(f1=0.95), b"two")
        assert (first.version, second.version) == (1, 2)
        assert second.model_location
        assert await store.current() == second
        assert await store.load(first) == b"one"
        assert await store.load(second) == b"two"
        history = await store.history()
        assert [h.release.version for h in history] == [2, 1]
        assert all(h.model_kept for h in history)
        assert [h.release.version for h in await store.history(limit=1)] == [2]
        with pytest.raises(Conflict, match="not newer"):
            await store.publish(release(version=2), b"stale")
        assert (await store.publish(release(version=7), b"seven")).version == 7
        with pytest.raises(NotFound):
            await store.load(release(version=5))

    asyncio.run(scenario())


def test_rollback_republishes_the_older_bytes(store: PersonaModelStore) -> None:
    async def scenario() -> None:
        with pytest.raises(NotFound, match="train first"):
            await rollback(store, NOW)
        await store.publish(release(f1=0.8), b"one")
        with pytest.raises(InvalidInput, match="only persona model"):
            await rollback(store, NOW)
        await store.publish(release(f1=0.9), b"two")
        await store.publish(release(f1=0.7), b"three")
        back = await rollback(store, NOW)  # default: the one before the current
        assert (back.version, back.source, back.restores_version) == (4, "rollback", 2)
        assert await store.load(back) == b"two"
        assert back.metrics == {"macro_f1": 0.9}
        again = await rollback(store, NOW, to_version=1)
        assert (again.version, again.restores_version) == (5, 1)
        assert await store.load((await store.current()) or back) == b"one"
        with pytest.raises(NotFound, match="no persona model v9"):
            await rollback(store, NOW, to_version=9)
        with pytest.raises(InvalidInput, match="already the current"):
            await rollback(store, NOW, to_version=5)
        assert [h.release.version for h in await store.history()] == [5, 4, 3, 2, 1]

    asyncio.run(scenario())


def test_local_store_survives_a_torn_history_and_a_new_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        root = tmp_path / "personas"
        await LocalPersonaModelStore(root).publish(release(), b"one")
        with open(root / "history.jsonl", "ab") as handle:
            handle.write(b'{"version": 2, "torn')  # a crash mid-append
        reopened = LocalPersonaModelStore(root)
        second = await reopened.publish(release(), b"two")
        assert second.version == 2
        assert [h.release.version for h in await reopened.history()] == [2, 1]
        assert (root / "00000002.model").read_bytes() == b"two"

    asyncio.run(scenario())
