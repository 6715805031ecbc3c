"""Model stores: the same behaviour over the in-memory and the local-disk backend."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.modelstore import LocalModelStore, MemoryModelStore, ModelStore
from schemas.events import ModelRelease

T0 = datetime(2026, 1, 1, tzinfo=UTC)
StoreFactory = Callable[[], ModelStore]


def release(version: int, decision_point: str = "home") -> ModelRelease:
    return ModelRelease(
        event_id=f"{decision_point}-v{version}",
        timestamp=T0,
        decision_point=decision_point,
        version=version,
        vw_args="--cb_explore_adf",
        model_location="",
        examples_learned=version * 10,
        last_offset=version * 100,
        metrics={"reward_mean": 0.5},
    )


def model_bytes(version: int, size: int = 64) -> bytes:
    """Bytes that say which version they are, all the way through (a torn read shows)."""
    return version.to_bytes(4, "big") * (size // 4)


@pytest.fixture(params=["memory", "local"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens the store under test; each call is a new handle on the same storage."""
    shared = MemoryModelStore()

    def open_store() -> ModelStore:
        return shared if request.param == "memory" else LocalModelStore(tmp_path / "models")

    yield open_store
    await shared.close()


async def test_nothing_published_yet(opener: StoreFactory) -> None:
    assert await opener().current("home") is None


async def test_publish_current_load_roundtrip(opener: StoreFactory) -> None:
    store = opener()
    stored = await store.publish(release(1), model_bytes(1))
    assert stored.model_location
    assert stored.model_copy(update={"model_location": ""}) == release(1)
    assert await store.current("home") == stored
    assert await store.load(stored) == model_bytes(1)


async def test_versions_increase_and_current_is_latest(opener: StoreFactory) -> None:
    store = opener()
    locations = set()
    for version in (1, 2, 3):
        locations.add((await store.publish(release(version), model_bytes(version))).model_location)
    current = await store.current("home")
    assert current is not None and current.version == 3
    assert await store.load(current) == model_bytes(3)
    assert len(locations) == 3


async def test_decision_points_are_independent(opener: StoreFactory) -> None:
    store = opener()
    await store.publish(release(1, "home"), model_bytes(1))
    await store.publish(release(7, "checkout_layout"), model_bytes(7))
    home, checkout = await store.current("home"), await store.current("checkout_layout")
    assert home is not None and home.version == 1
    assert checkout is not None and checkout.version == 7


async def test_reader_polling_during_publishes_never_sees_a_broken_release(
    opener: StoreFactory,
) -> None:
    writer, versions, size = opener(), 15, 128 * 1024
    done = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    async def poll() -> None:
        reader = opener()  # like the app process: its own handle on the same storage
        while not done.is_set():
            current = await reader.current("home")
            if current is not None:
                try:
                    data = await reader.load(current)
                except NotFound:
                    continue  # pruned between manifest read and load: read the manifest again
                if data != model_bytes(current.version, size):
                    errors.append(f"v{current.version}: {len(data)} bytes, wrong content")
                if seen and current.version < seen[-1]:
                    errors.append(f"went back from v{seen[-1]} to v{current.version}")
                seen.append(current.version)
            await asyncio.sleep(0.0002)  # poll hard, but leave the writer the GIL

    def reader_thread() -> None:
        try:
            asyncio.run(poll())
        except Exception as exc:  # a torn manifest surfaces here: report it, do not hide it
            errors.append(repr(exc))

    thread = threading.Thread(target=reader_thread)
    thread.start()
    try:
        for version in range(1, versions + 1):
            await writer.publish(release(version), model_bytes(version, size))
            await asyncio.sleep(0.002)
    finally:
        done.set()
        thread.join(timeout=10)
    assert not errors
    assert seen and seen[-1] <= versions


async def test_reopened_local_store_finds_the_current_release(tmp_path: Path) -> None:
    first = LocalModelStore(tmp_path)
    stored = await first.publish(release(4), model_bytes(4))
    await first.close()
    reopened = LocalModelStore(tmp_path)
    assert await reopened.current("home") == stored
    assert await reopened.load(stored) == model_bytes(4)


async def test_local_store_layout_and_pruning(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path, keep=3)
    for version in range(1, 8):
        await store.publish(release(version), model_bytes(version))
    files = sorted(os.listdir(tmp_path / "home"))
    assert files == [
        ".lock",
        "00000005.vw",
        "00000006.vw",
        "00000007.vw",
        "history.jsonl",
        "manifest.json",
    ]
    with pytest.raises(NotFound, match="newest 3"):
        await store.load(release(2))


async def test_local_store_refuses_a_stale_version(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    await store.publish(release(5), model_bytes(5))
    with pytest.raises(Conflict, match="not newer"):
        await store.publish(release(5), model_bytes(55))
    current = await store.current("home")
    assert current is not None and await store.load(current) == model_bytes(5)


async def test_local_store_recovers_from_a_crash_before_the_manifest_swap(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    await store.publish(release(1), model_bytes(1))
    # Crash debris: a model file written without its manifest, and a half-written temp file.
    (tmp_path / "home" / "00000002.vw").write_bytes(b"partial")
    (tmp_path / "home" / ".manifest.json.dead.tmp").write_bytes(b"{")
    current = await LocalModelStore(tmp_path).current("home")
    assert current is not None and current.version == 1
    stored = await store.publish(release(2), model_bytes(2))
    assert await store.load(stored) == model_bytes(2)
    assert not [name for name in os.listdir(tmp_path / "home") if name.endswith(".tmp")]


async def test_local_store_current_is_cached_until_the_manifest_changes(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    await store.publish(release(1), model_bytes(1))
    first = await store.current("home")
    assert await store.current("home") is first  # unchanged file: no re-parse
    await LocalModelStore(tmp_path).publish(release(2), model_bytes(2))  # another writer handle
    second = await store.current("home")
    assert second is not None and second.version == 2


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ""])
async def test_local_store_refuses_names_that_are_not_directory_names(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(InvalidInput, match="directory name"):
        await LocalModelStore(tmp_path).current(name)
