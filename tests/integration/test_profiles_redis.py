"""The Redis profile store keeps the promises of the others, against a real redis-server:
the behaviour tests of ``tests/unit/test_profiles_store.py`` run here over Redis, plus
concurrent writers and a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.pseudonyms import pseudonymize
from learnloop.clock import FakeClock
from learnloop.profile_store_redis import RedisProfileStore
from learnloop.profiles import ProfileStore, all_profiles
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY
from runtime.cli import cli
from schemas.profiles import ProfileUpdate, UserProfile
from tests.unit.test_profiles_import import GOOD, write_csv
from tests.unit.test_profiles_store import (  # the shared behaviour, collected here too
    T0,
    interaction,
    test_apply_counts_each_interaction_once_even_when_offered_twice,
    test_bulk_update_replaces_set_fields_and_leaves_the_rest,
    test_change_feed_lists_latest_writes_and_tombstones_in_order,
    test_label_and_delete,
    test_out_of_order_interactions_never_move_last_seen_back,
    test_update_many_and_put_many_write_everything,
)

pytestmark = pytest.mark.integration

__all__ = [
    "test_apply_counts_each_interaction_once_even_when_offered_twice",
    "test_bulk_update_replaces_set_fields_and_leaves_the_rest",
    "test_change_feed_lists_latest_writes_and_tombstones_in_order",
    "test_label_and_delete",
    "test_out_of_order_interactions_never_move_last_seen_back",
    "test_update_many_and_put_many_write_everything",
]


@pytest.fixture
def make_store(redis_url: str, redis_prefix: str) -> Callable[[], RedisProfileStore]:
    clock = FakeClock(T0)
    return lambda: RedisProfileStore(redis_url, redis_prefix, clock=clock)


@pytest.fixture
async def store(make_store: Callable[[], RedisProfileStore]) -> AsyncIterator[ProfileStore]:
    s = make_store()
    yield s
    await s.close()


async def test_concurrent_writers_lose_no_update(
    make_store: Callable[[], RedisProfileStore],
) -> None:
    """Two replicas and a consumer write the same users at once: the optimistic script
    retries, so every bulk field and every interaction lands."""
    api, other, consumer = make_store(), make_store(), make_store()
    users = [f"u_{i}" for i in range(20)]
    await asyncio.gather(
        api.update_many([(u, ProfileUpdate(recruits=2)) for u in users]),
        other.update_many([(u, ProfileUpdate(orders_for_others=1)) for u in users]),
        *(
            consumer.apply([interaction(f"{u}-{k}", "detail_view", user=u, seconds=k)])
            for u in users
            for k in range(3)
        ),
    )
    got = [p async for p in all_profiles(api)]
    assert len(got) == 20
    assert all((p.recruits, p.orders_for_others, p.detail_views) == (2, 1, 3) for p in got)
    assert all(p.version == 5 for p in got)
    for s in (api, other, consumer):
        await s.close()


async def test_ids_and_checkpoint_survive_a_new_client(
    make_store: Callable[[], RedisProfileStore],
) -> None:
    first = make_store()
    assert await first.apply([interaction("o1", "basket_add", value=4.0)], ("p0", b"cp")) == 1
    await first.close()
    second = make_store()
    assert await second.apply([interaction("o1", "basket_add", value=4.0)]) == 0
    assert await second.load_checkpoint("p0") == b"cp"
    p = await second.get("u_1")
    assert p is not None and p.basket_value == 4.0
    await second.close()


def test_import_profiles_into_redis(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """``learnloop personas import-profiles --backend kafka`` writes to the Redis store;
    a file with a bad row writes nothing there either. (Sync: the command runs its own
    event loop.)"""

    async def stored() -> dict[str, UserProfile]:
        store = RedisProfileStore(redis_url, redis_prefix)
        try:
            return {p.user_id: p async for p in all_profiles(store)}
        finally:
            await store.close()

    env = {"LEARNLOOP_REDIS_URL": redis_url, "LEARNLOOP_REDIS_PREFIX": redis_prefix}
    bad = write_csv(tmp_path / "bad.csv", [*GOOD, "carol,-1,0,0,,0,"])
    result = CliRunner().invoke(
        cli, ["personas", "import-profiles", str(bad), "--backend", "kafka"], env=env
    )
    assert result.exit_code == 2 and "row 3, column orders" in result.output
    assert asyncio.run(stored()) == {}
    good = write_csv(tmp_path / "good.csv", GOOD)
    result = CliRunner().invoke(
        cli, ["personas", "import-profiles", str(good), "--backend", "kafka"], env=env
    )
    assert result.exit_code == 0, result.output
    profiles = asyncio.run(stored())
    alice = profiles[pseudonymize("alice", DEVELOPMENT_PSEUDONYM_KEY.encode())]
    assert alice.categories == {"tea": 4, "kits": 3} and len(profiles) == 2
