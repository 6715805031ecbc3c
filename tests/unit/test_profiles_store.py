"""The profile stores keep the same promises: memory and SQLite through one parametrized fixture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from learnloop.clock import FakeClock
from learnloop.profile_store_sqlite import SqliteProfileStore
from learnloop.profiles import MemoryProfileStore, ProfileStore, all_profiles
from schemas.profiles import Interaction, ProfileUpdate, UserProfile

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)

StoreFactory = Callable[[], ProfileStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory, so a test can reopen the same durable store ("a restart")."""
    clock = FakeClock(T0)
    if request.param == "memory":
        store = MemoryProfileStore(clock=clock)
        return lambda: store
    return lambda: SqliteProfileStore(tmp_path / "profiles.sqlite", clock=clock)


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[ProfileStore]:
    s = make_store()
    yield s
    await s.close()


def interaction(
    iid: str, kind: str, user: str = "u_1", seconds: float = 0, **kw: object
) -> Interaction:
    return Interaction.model_validate(
        {
            "interaction_id": iid,
            "user_id": user,
            "kind": kind,
            "timestamp": T0 + timedelta(seconds=seconds),
            **kw,
        }
    )


async def test_apply_counts_each_interaction_once_even_when_offered_twice(
    store: ProfileStore,
) -> None:
    batch = [
        interaction("s1", "session"),
        interaction("o1", "detail_view", seconds=1),
        interaction("o2", "basket_add", seconds=2, value=30.0),
        interaction(
            "o3", "purchase", seconds=3, value=55.5, items=3, category="tea", for_others=True
        ),
    ]
    assert await store.apply(batch, ("c", b"1")) == 4
    assert (
        await store.apply([*batch, interaction("o4", "detail_view", seconds=4)], ("c", b"2")) == 1
    )
    p = await store.get("u_1")
    assert p is not None
    assert (p.sessions, p.detail_views, p.basket_adds, p.basket_value) == (1, 2, 1, 30.0)
    assert (p.orders, p.monetary, p.items, p.categories, p.orders_for_others) == (
        1,
        55.5,
        3,
        {"tea": 3},
        1,
    )
    assert (p.first_seen, p.last_seen, p.last_order_at) == (
        T0,
        T0 + timedelta(seconds=4),
        T0 + timedelta(seconds=3),
    )
    assert p.version == 5
    assert await store.load_checkpoint("c") == b"2"
    assert await store.load_checkpoint("other") is None


async def test_out_of_order_interactions_never_move_last_seen_back(store: ProfileStore) -> None:
    await store.apply(
        [interaction("a", "detail_view", seconds=10), interaction("b", "detail_view", seconds=5)]
    )
    p = await store.get("u_1")
    assert (
        p is not None
        and p.last_seen == T0 + timedelta(seconds=10)
        and p.first_seen == T0 + timedelta(seconds=5)
    )


async def test_bulk_update_replaces_set_fields_and_leaves_the_rest(store: ProfileStore) -> None:
    await store.apply([interaction("v", "detail_view"), interaction("p", "purchase", value=10.0)])
    p = await store.update(
        "u_1", ProfileUpdate(orders=12, monetary=900.0, recruits=3, categories={"kits": 4})
    )
    assert (p.orders, p.monetary, p.recruits, p.categories, p.detail_views) == (
        12,
        900.0,
        3,
        {"kits": 4},
        1,
    )
    assert p.updated_at == T0 and p.version == 3
    # real-time interactions then add to the bulk values
    await store.apply([interaction("p2", "purchase", value=100.0)])
    p2 = await store.get("u_1")
    assert p2 is not None and (p2.orders, p2.monetary) == (13, 1000.0)


async def test_update_many_and_put_many_write_everything(store: ProfileStore) -> None:
    n = await store.update_many([(f"u_{i}", ProfileUpdate(orders=i)) for i in range(5)])
    assert n == 5
    await store.put_many(
        [UserProfile(user_id="u_9", recruits=7), UserProfile(user_id="u_0", orders=99)]
    )
    got = {p.user_id: p async for p in all_profiles(store, batch=2)}
    assert sorted(got) == ["u_0", "u_1", "u_2", "u_3", "u_4", "u_9"]
    assert got["u_0"].orders == 99 and got["u_0"].version == 2
    assert got["u_9"].recruits == 7 and got["u_9"].version == 1


async def test_label_and_delete(store: ProfileStore) -> None:
    p = await store.set_label("u_1", "consultant")
    assert p.label == "consultant" and p.version == 1
    assert await store.delete("u_1") is True
    assert await store.get("u_1") is None
    assert await store.delete("u_1") is False


async def test_change_feed_lists_latest_writes_and_tombstones_in_order(store: ProfileStore) -> None:
    await store.update("u_a", ProfileUpdate(orders=1))
    await store.update("u_b", ProfileUpdate(orders=2))
    changes, cursor = await store.changes(0)
    assert [(c.user_id, c.profile is not None) for c in changes] == [("u_a", True), ("u_b", True)]
    assert await store.changes(cursor) == ([], cursor)
    await store.update("u_a", ProfileUpdate(orders=3))
    await store.delete("u_b")
    changes, cursor2 = await store.changes(cursor)
    assert [(c.user_id, c.profile.orders if c.profile else None) for c in changes] == [
        ("u_a", 3),
        ("u_b", None),
    ]
    assert cursor2 > cursor
    # a deleted user who comes back is a profile again, not a tombstone
    await store.apply([interaction("x", "session", user="u_b")])
    changes, _ = await store.changes(cursor2)
    assert [(c.user_id, c.profile is not None) for c in changes] == [("u_b", True)]


async def test_applied_ids_are_forgotten_past_the_dedup_horizon(tmp_path: Path) -> None:
    store = SqliteProfileStore(tmp_path / "p.sqlite", dedup_seconds=60)
    await store.apply([interaction("old", "detail_view")])
    await store.apply([interaction("new", "detail_view", seconds=120)])
    # "old" is past the horizon: the checkpoint, not the id set, guards against its replay
    assert await store.apply([interaction("old", "detail_view")]) == 1
    assert await store.apply([interaction("new", "detail_view", seconds=120)]) == 0
    await store.close()


async def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    first = SqliteProfileStore(path)
    await first.apply([interaction("o1", "basket_add", value=5.0)], ("join", b"cp"))
    await first.close()
    second = SqliteProfileStore(path)
    assert await second.apply([interaction("o1", "basket_add", value=5.0)]) == 0
    p = await second.get("u_1")
    assert p is not None and p.basket_value == 5.0
    assert await second.load_checkpoint("join") == b"cp"
    await second.close()


async def test_sqlite_failed_batch_writes_nothing(tmp_path: Path) -> None:
    store = SqliteProfileStore(tmp_path / "p.sqlite")
    await store.update("u_1", ProfileUpdate(orders=1))

    class Boom(ProfileUpdate):
        def model_dump(self, **kw: object) -> dict[str, object]:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        await store.update_many([("u_1", ProfileUpdate(orders=5)), ("u_2", Boom())])
    p = await store.get("u_1")
    assert p is not None and p.orders == 1 and await store.get("u_2") is None
    await store.close()


async def test_sqlite_two_connections_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    api, loop = SqliteProfileStore(path), SqliteProfileStore(path)
    await asyncio.gather(
        api.update_many([(f"u_{i}", ProfileUpdate(recruits=1)) for i in range(50)]),
        loop.apply([interaction(f"o{i}", "detail_view", user=f"u_{i}") for i in range(50)]),
    )
    profiles = [p async for p in all_profiles(api)]
    assert len(profiles) == 50
    assert all(p.recruits == 1 and p.detail_views == 1 for p in profiles)
    await api.close()
    await loop.close()
