"""The same checks over every Personalizer document store: memory, SQLite and a real
``redis-server`` (started once for this module, never skipped).

They pin what the API relies on: documents are copies (changing one read changes
nothing stored), ``list`` keeps first-put order through replacements, deletes and
loops/kinds are separate, ``put_if_absent`` creates once, and a second process
(a second SQLite connection) sees what the first wrote.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from learnloop.errors import ConfigurationError, Unavailable
from learnloop.personalizer_store import MemoryPersonalizerStore, PersonalizerStore
from learnloop.personalizer_store_redis import RedisPersonalizerStore
from learnloop.personalizer_store_sqlite import FILE_NAME, SqlitePersonalizerStore
from tests.integration.servers import ServerProcess, ServerStartError, start_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    try:
        server = start_redis(tmp_path_factory.mktemp("redis"))
    except ServerStartError as exc:
        pytest.fail(f"cannot start redis-server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PersonalizerStore]:
    made: PersonalizerStore
    if request.param == "memory":
        made = MemoryPersonalizerStore()
    elif request.param == "sqlite":
        made = SqlitePersonalizerStore.open(tmp_path)
    else:
        server: ServerProcess = request.getfixturevalue("redis_server")
        prefix = f"t{uuid.uuid4().hex[:12]}:"
        made = RedisPersonalizerStore(f"redis://{server.address}/0", prefix)
    yield made
    await made.close()


async def test_put_get_roundtrip_and_copies(store: PersonalizerStore) -> None:
    assert await store.get("shop", "settings", "service") is None
    doc = {"logRetentionDays": 90, "nested": {"a": [1, 2.5, None, True, "x"]}}
    await store.put("shop", "settings", "service", doc)
    doc["logRetentionDays"] = 1  # the caller's dict is not the stored one

    found = await store.get("shop", "settings", "service")
    assert found == {"logRetentionDays": 90, "nested": {"a": [1, 2.5, None, True, "x"]}}
    assert found is not None
    found["nested"]["a"].clear()
    assert (await store.get("shop", "settings", "service")) == {
        "logRetentionDays": 90,
        "nested": {"a": [1, 2.5, None, True, "x"]},
    }


async def test_loops_and_kinds_are_separate(store: PersonalizerStore) -> None:
    await store.put("shop", "evaluation", "e1", {"id": "shop-e1"})
    await store.put("news", "evaluation", "e1", {"id": "news-e1"})
    await store.put("shop", "feature_importance", "e1", {"id": "fi"})

    assert await store.get("shop", "evaluation", "e1") == {"id": "shop-e1"}
    assert await store.get("news", "evaluation", "e1") == {"id": "news-e1"}
    assert await store.list("shop", "evaluation") == [{"id": "shop-e1"}]
    assert await store.list("shop", "feature_importance") == [{"id": "fi"}]
    assert await store.list("shop", "state") == []


async def test_list_keeps_first_put_order(store: PersonalizerStore) -> None:
    for key in ["zeta", "alpha", "mid"]:
        await store.put("shop", "evaluation", key, {"id": key, "v": 1})
    await store.put("shop", "evaluation", "zeta", {"id": "zeta", "v": 2})  # replaced in place

    assert await store.list("shop", "evaluation") == [
        {"id": "zeta", "v": 2},
        {"id": "alpha", "v": 1},
        {"id": "mid", "v": 1},
    ]
    assert await store.delete("shop", "evaluation", "alpha") is True
    await store.put("shop", "evaluation", "alpha", {"id": "alpha", "v": 3})  # now last
    assert [d["id"] for d in await store.list("shop", "evaluation")] == ["zeta", "mid", "alpha"]


async def test_put_if_absent_creates_once(store: PersonalizerStore) -> None:
    assert await store.put_if_absent("shop", "evaluation", "e1", {"v": 1}) is True
    assert await store.put_if_absent("shop", "evaluation", "e1", {"v": 2}) is False
    assert await store.get("shop", "evaluation", "e1") == {"v": 1}


async def test_concurrent_put_if_absent_has_one_winner(store: PersonalizerStore) -> None:
    results = await asyncio.gather(
        *(store.put_if_absent("shop", "evaluation", "race", {"n": n}) for n in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert await store.get("shop", "evaluation", "race") == {"n": winner}


async def test_delete(store: PersonalizerStore) -> None:
    assert await store.delete("shop", "state", "logs") is False
    await store.put("shop", "state", "logs", {"cleared": "2026-03-01T12:00:00Z"})
    assert await store.delete("shop", "state", "logs") is True
    assert await store.get("shop", "state", "logs") is None
    assert await store.list("shop", "state") == []
    assert await store.delete("shop", "state", "logs") is False


async def test_not_json_refused_before_writing(tmp_path: Path, redis_server: ServerProcess) -> None:
    """The durable backends refuse NaN (JSON has none) rather than store what they cannot read."""
    for store in (
        SqlitePersonalizerStore.open(tmp_path),
        RedisPersonalizerStore(f"redis://{redis_server.address}/0", f"t{uuid.uuid4().hex[:12]}:"),
    ):
        try:
            with pytest.raises(ValueError):
                await store.put("shop", "settings", "service", {"bad": float("nan")})
            assert await store.get("shop", "settings", "service") is None
        finally:
            await store.close()


async def test_sqlite_shared_between_processes(tmp_path: Path) -> None:
    """Two API workers open the same file: what one writes, the other reads at once."""
    first = SqlitePersonalizerStore.open(tmp_path)
    second = SqlitePersonalizerStore(tmp_path / FILE_NAME)
    try:
        await first.put("shop", "settings", "service", {"v": 1})
        assert await second.get("shop", "settings", "service") == {"v": 1}
        await second.put("shop", "settings", "service", {"v": 2})
        assert await first.get("shop", "settings", "service") == {"v": 2}
        assert await second.put_if_absent("shop", "evaluation", "e", {}) is True
        assert await first.put_if_absent("shop", "evaluation", "e", {}) is False
    finally:
        await first.close()
        await second.close()
    assert (tmp_path / FILE_NAME).exists()


async def test_sqlite_closed_and_corrupt(tmp_path: Path) -> None:
    store = SqlitePersonalizerStore.open(tmp_path)
    store._conn.execute(
        "INSERT INTO personalizer_documents VALUES ('shop', 'settings', 'service', '[1]')"
    )
    with pytest.raises(ConfigurationError, match="not a JSON object"):
        await store.get("shop", "settings", "service")
    await store.close()
    with pytest.raises(Unavailable, match="closed"):
        await store.get("shop", "settings", "service")


async def test_redis_unreachable_is_unavailable() -> None:
    from tests.integration.servers import free_port

    store = RedisPersonalizerStore(f"redis://127.0.0.1:{free_port()}/0", "x:")
    try:
        with pytest.raises(Unavailable, match="Redis"):
            await store.get("shop", "settings", "service")
    finally:
        await store.close()
