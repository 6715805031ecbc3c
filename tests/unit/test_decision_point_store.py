"""The same behaviour tests over the in-memory and the SQLite decision-point stores,
plus durability, which only the SQLite store offers."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from learnloop.decision_point_store import FILE_NAME, SqliteDecisionPointStore
from learnloop.decision_points import (
    DecisionPointStore,
    MemoryDecisionPointStore,
    load_config_file,
)
from learnloop.errors import ConfigurationError, Unavailable
from schemas.config import DecisionPointConfig
from schemas.features import Action


def config(
    name: str, *, actions: tuple[str, ...] = ("a", "b"), window: float = 20.0
) -> DecisionPointConfig:
    return DecisionPointConfig(
        name=name,
        actions=[Action(id=a, features={"price": 1.5}) for a in actions],
        window_seconds=window,
        reward_map={"purchase": 10.0},
    )


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DecisionPointStore]:
    if request.param == "memory":
        yield MemoryDecisionPointStore()
        return
    durable = SqliteDecisionPointStore(tmp_path / FILE_NAME)
    yield durable
    await durable.close()


async def test_get_missing_is_none(store: DecisionPointStore) -> None:
    assert await store.get("nope") is None
    assert await store.all() == []


async def test_put_then_get_round_trips(store: DecisionPointStore) -> None:
    home = config("home_products")
    await store.put(home)
    assert await store.get("home_products") == home


async def test_put_replaces_and_keeps_order(store: DecisionPointStore) -> None:
    await store.put(config("first"))
    await store.put(config("second"))
    changed = config("first", actions=("x",), window=5.0)
    await store.put(changed)
    assert await store.get("first") == changed
    assert [c.name for c in await store.all()] == ["first", "second"]
    assert (await store.all())[0] == changed


# --- SQLite only -----------------------------------------------------------------------


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / FILE_NAME
    first = SqliteDecisionPointStore(path)
    await first.put(config("home_products"))
    await first.close()
    second = SqliteDecisionPointStore(path)
    try:
        assert await second.get("home_products") == config("home_products")
    finally:
        await second.close()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_sqlite_sees_another_process_change_after_the_check_interval(
    tmp_path: Path,
) -> None:
    """Two stores on one file stand for two processes of ``learnloop serve``: a change
    through one is served by the other once its change check runs, not before."""
    clock = FakeMonotonic()
    path = tmp_path / FILE_NAME
    writer = SqliteDecisionPointStore(path)
    reader = SqliteDecisionPointStore(path, change_check_seconds=0.2, monotonic=clock)
    try:
        await writer.put(config("home_products"))
        assert await reader.get("home_products") == config("home_products")
        await writer.put(config("home_products", window=60.0))
        await writer.put(config("checkout"))
        clock.now += 0.1  # inside the interval: the cached config is served
        assert (await reader.get("home_products")).window_seconds == 20.0  # type: ignore[union-attr]
        # ... but an admin's fresh read sees the change at once
        fresh = await reader.get("home_products", fresh=True)
        assert fresh is not None and fresh.window_seconds == 60.0
        clock.now += 0.15
        assert (await reader.get("home_products")).window_seconds == 60.0  # type: ignore[union-attr]
        assert [c.name for c in await reader.all()] == ["home_products", "checkout"]
        clock.now += 1.0  # nothing changed since: still the same configs
        assert await reader.get("checkout") == config("checkout")
    finally:
        await writer.close()
        await reader.close()


async def test_sqlite_sees_a_decision_point_another_process_created_at_once(
    tmp_path: Path,
) -> None:
    """A name missing from the cache is checked for at once: a decision point created
    through one worker is never "unknown" on another one for an interval."""
    clock = FakeMonotonic()
    path = tmp_path / FILE_NAME
    writer = SqliteDecisionPointStore(path)
    reader = SqliteDecisionPointStore(path, change_check_seconds=0.2, monotonic=clock)
    try:
        assert await reader.get("checkout") is None
        await writer.put(config("checkout"))
        assert await reader.get("checkout") == config("checkout")
        assert await reader.get("still_missing") is None
    finally:
        await writer.close()
        await reader.close()


async def test_seed_inserts_only_missing(store: DecisionPointStore) -> None:
    defaults = load_config_file(None)
    assert defaults, "the shipped defaults should define decision points"
    inserted = await store.seed(defaults)
    assert inserted == [c.name for c in defaults]
    assert await store.all() == defaults

    # An admin changes one; a restart seeds again and must not undo it.
    edited = defaults[0].model_copy(update={"window_seconds": 3.0})
    await store.put(edited)
    assert await store.seed([*defaults, config("new_point")]) == ["new_point"]
    assert await store.get(edited.name) == edited
    assert await store.seed([]) == []


async def test_sqlite_invalid_stored_config_is_reported(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    store = SqliteDecisionPointStore(path)
    try:
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO decision_points VALUES ('broken', '{\"name\": \"broken\"')")
        conn.commit()
        conn.close()
        with pytest.raises(ConfigurationError, match=r"(?s)'broken'.*PUT a corrected"):
            await store.get("broken")
    finally:
        await store.close()


async def test_sqlite_closed_store_refuses(tmp_path: Path) -> None:
    store = SqliteDecisionPointStore(tmp_path / FILE_NAME)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(Unavailable, match="closed"):
        await store.get("x")
    with pytest.raises(Unavailable, match="closed"):
        await store.seed([config("x")])


def test_sqlite_unwritable_location_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable, match="cannot open decision-point store"):
        SqliteDecisionPointStore(blocker / FILE_NAME)
