"""Release history and pinned retention: the same behaviour over the memory and local stores
(Redis: tests/integration/test_promote_distributed.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from learnloop.errors import Conflict
from learnloop.modelstore import LocalModelStore, MemoryModelStore, ModelStore
from schemas.events import ModelRelease, ReleaseSource

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def release(version: int, source: ReleaseSource = "online", dp: str = "home") -> ModelRelease:
    return ModelRelease(
        event_id=f"{dp}-v{version}",
        timestamp=T0 + timedelta(seconds=version),
        decision_point=dp,
        version=version,
        vw_args="--cb_explore_adf",
        model_location="",
        examples_learned=version,
        source=source,
    )


def blob(version: int) -> bytes:
    return version.to_bytes(4, "big") * 8


@pytest.fixture(params=["memory", "local"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[int], ModelStore]:
    def make(keep: int) -> ModelStore:
        if request.param == "memory":
            return MemoryModelStore(keep=keep)
        return LocalModelStore(tmp_path / "models", keep=keep)

    return make


async def test_history_is_newest_first_and_limited(make_store: Callable[[int], ModelStore]) -> None:
    store = make_store(5)
    assert await store.history("home") == []
    for version in (1, 2, 3):
        await store.publish(release(version), blob(version))
    await store.publish(release(1, dp="other"), blob(1))
    history = await store.history("home")
    assert [h.release.version for h in history] == [3, 2, 1]
    assert all(h.model_kept for h in history)
    assert history[0].release == await store.current("home")
    assert [h.release.version for h in await store.history("home", limit=2)] == [3, 2]


async def test_pinned_releases_keep_their_bytes(make_store: Callable[[int], ModelStore]) -> None:
    """The newest ``keep`` models plus every promotion and rollback stay loadable."""
    store = make_store(2)
    sources: dict[int, ReleaseSource] = {2: "promotion", 4: "rollback"}
    for version in range(1, 9):
        await store.publish(release(version, sources.get(version, "online")), blob(version))
    kept = {h.release.version: h.model_kept for h in await store.history("home")}
    assert kept == {8: True, 7: True, 6: False, 5: False, 4: True, 3: False, 2: True, 1: False}
    for entry in await store.history("home"):
        if entry.model_kept:
            assert await store.load(entry.release) == blob(entry.release.version)
    assert (await store.history("home"))[-2].release.source == "promotion"


async def test_a_stale_version_is_refused(make_store: Callable[[int], ModelStore]) -> None:
    store = make_store(5)
    await store.publish(release(3), blob(3))
    with pytest.raises(Conflict, match="not newer"):
        await store.publish(release(3, "promotion"), blob(9))
    assert [h.release.version for h in await store.history("home")] == [3]


async def test_two_handles_on_one_directory_refuse_each_others_version(tmp_path: Path) -> None:
    """The learner and a promote command are different processes on one root."""
    learner, promote = LocalModelStore(tmp_path), LocalModelStore(tmp_path)
    await learner.publish(release(1), blob(1))
    await promote.publish(release(2, "promotion"), blob(2))
    with pytest.raises(Conflict, match=r"v2 \(promotion\)"):
        await learner.publish(release(2), blob(3))
    current = await learner.current("home")
    assert current is not None and current.source == "promotion"
    assert await learner.load(current) == blob(2)


async def test_local_history_ignores_a_torn_last_line(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    await store.publish(release(1), blob(1))
    await store.publish(release(2), blob(2))
    with open(tmp_path / "home" / "history.jsonl", "ab") as handle:
        handle.write(b'{"event_id": "home-v3", "timest')  # a crash mid-append
    assert [h.release.version for h in await store.history("home")] == [2, 1]
    await store.publish(release(3), blob(3))  # the next append starts on its own line
    assert [h.release.version for h in await store.history("home")] == [3, 2, 1]


async def test_local_history_of_a_store_older_than_histories(tmp_path: Path) -> None:
    """A manifest written before history.jsonl existed still shows as the current release."""
    store = LocalModelStore(tmp_path)
    await store.publish(release(1), blob(1))
    (tmp_path / "home" / "history.jsonl").unlink()
    history = await store.history("home")
    assert [(h.release.version, h.model_kept) for h in history] == [(1, True)]


async def test_local_history_reads_a_long_file_from_its_end(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path, keep=2)
    for version in range(1, 301):  # ~100 kB of history: more than one read chunk
        await store.publish(release(version), b"m")
    newest = await store.history("home", limit=3)
    assert [h.release.version for h in newest] == [300, 299, 298]
    assert len(await store.history("home")) == 300


async def test_local_history_keeps_the_newest_online_releases_and_every_promotion(
    tmp_path: Path,
) -> None:
    """At about one online release a second the history would grow without end: it is
    compacted to the newest ``history_keep`` online entries, never losing a promotion."""
    store = LocalModelStore(tmp_path, keep=2, history_keep=20)
    for version in range(1, 121):
        await store.publish(release(version, "promotion" if version == 7 else "online"), b"m")
    history = [h.release.version for h in await store.history("home")]
    assert history[:20] == list(range(120, 100, -1))  # the newest online ones, in order
    assert 7 in history and len(history) < 60  # the promotion survived compaction
    assert history == sorted(history, reverse=True)


def test_old_manifest_json_loads_as_an_online_release() -> None:
    old = (
        '{"event_id":"home-v1","timestamp":"2026-01-01T00:00:00Z","decision_point":"home",'
        '"version":1,"vw_args":"--cb_explore_adf","model_location":"file:///x"}'
    )
    loaded = ModelRelease.model_validate_json(old)
    assert loaded.source == "online" and loaded.restores_version is None


async def test_a_pinned_online_release_survives_pruning(
    make_store: Callable[[int], ModelStore],
) -> None:
    """What a promotion replaces stays restorable: the one to come back to."""
    store = make_store(2)
    for version in (1, 2, 3):
        await store.publish(release(version), blob(version))
    assert await store.pin("home", 3) is True
    for version in range(4, 9):
        await store.publish(release(version), blob(version))
    kept = {h.release.version: h.model_kept for h in await store.history("home")}
    assert [v for v, k in kept.items() if k] == [8, 7, 3]
    assert await store.pin("home", 1) is False  # gone already: nothing to pin
