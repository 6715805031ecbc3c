"""The same behaviour checks over every flag store: memory and SQLite here, Redis in
``tests/integration/test_flags_distributed.py`` (which runs :data:`BEHAVIOURS` too).

Each check takes a store whose clock is the :class:`FakeClock` it is given, and
asserts versions, the audit history (action, who, when, diff), all-or-nothing
imports and refusals that store nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from learnloop.clock import FakeClock
from learnloop.errors import InvalidInput, NotFound, Unavailable
from learnloop.flag_store import FlagStore, MemoryFlagStore
from learnloop.flag_store_sqlite import FILE_NAME, SqliteFlagStore
from schemas.flags import FlagDefinition

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def layout(**extra: Any) -> FlagDefinition:
    """``checkout_layout`` with three variants (the feature team's first step)."""
    return FlagDefinition.model_validate(
        {
            "type": "string",
            "variants": {"classic": "classic", "one_page": "one-page", "wizard": "wizard"},
            "default_variant": "classic",
            **extra,
        }
    )


Check = Callable[[FlagStore, FakeClock], Awaitable[None]]
BEHAVIOURS: list[Check] = []


def behaviour(check: Check) -> Check:
    BEHAVIOURS.append(check)
    return check


@behaviour
async def check_create_then_read(store: FlagStore, clock: FakeClock) -> None:
    before = await store.version()
    assert await store.get("checkout_layout") is None
    flag = await store.put("checkout_layout", layout(), "ana")

    assert (flag.key, flag.version, flag.updated_by, flag.updated_at) == (
        "checkout_layout",
        1,
        "ana",
        clock.now(),
    )
    assert await store.get("checkout_layout") == flag
    assert await store.all() == [flag]
    assert await store.version() > before
    (change,) = await store.history("checkout_layout")
    assert (change.action, change.version, change.by, change.flag) == ("create", 1, "ana", flag)
    assert {d["path"] for d in change.diff} >= {"type", "variants", "default_variant"}


@behaviour
async def check_update_records_the_diff(store: FlagStore, clock: FakeClock) -> None:
    await store.put("checkout_layout", layout(), "ana")
    clock.advance(60)
    rule = {"personas": ["shop_owner"], "variant": "wizard"}
    updated = await store.put("checkout_layout", layout(rules=[rule]), "ben")

    assert (updated.version, updated.updated_by) == (2, "ben")
    newest, oldest = await store.history("checkout_layout")
    assert (newest.action, newest.version, newest.timestamp) == ("update", 2, clock.now())
    assert oldest.action == "create"
    assert newest.diff == [
        {"path": "rules", "before": [], "after": [updated.rules[0].model_dump()]}
    ]
    assert await store.history("checkout_layout", limit=1) == [newest]


@behaviour
async def check_toggle(store: FlagStore, clock: FakeClock) -> None:
    await store.put("checkout_layout", layout(), "ana")
    off = await store.set_enabled("checkout_layout", False, "oncall")
    again = await store.set_enabled("checkout_layout", False, "oncall")
    on = await store.set_enabled("checkout_layout", True, "oncall")

    assert (off.enabled, off.version, again.version, on.enabled, on.version) == (
        False,
        2,
        2,
        True,
        3,
    )
    actions = [(c.action, c.diff) for c in await store.history("checkout_layout")]
    assert actions == [
        ("enable", [{"path": "enabled", "before": False, "after": True}]),
        ("disable", [{"path": "enabled", "before": True, "after": False}]),
        ("create", actions[-1][1]),
    ]
    with pytest.raises(NotFound, match="'nope' does not exist"):
        await store.set_enabled("nope", True, "oncall")


@behaviour
async def check_delete_keeps_history_and_numbering(store: FlagStore, clock: FakeClock) -> None:
    await store.put("bulk_order_form", layout(), "ana")
    await store.put("checkout_layout", layout(), "ana")
    await store.delete("bulk_order_form", "ben")

    assert await store.get("bulk_order_form") is None
    assert [f.key for f in await store.all()] == ["checkout_layout"]
    deleted = (await store.history("bulk_order_form"))[0]
    assert (deleted.action, deleted.version, deleted.flag, deleted.by) == ("delete", 2, None, "ben")
    again = await store.put("bulk_order_form", layout(), "ana")
    assert again.version == 3
    assert [f.key for f in await store.all()] == ["checkout_layout", "bulk_order_form"]
    with pytest.raises(NotFound):
        await store.delete("never", "ben")


@behaviour
async def check_refusals_store_nothing(store: FlagStore, clock: FakeClock) -> None:
    await store.put("checkout_layout", layout(), "ana")
    version = await store.version()
    with pytest.raises(InvalidInput, match="flag key"):
        await store.put("bad key!", layout(), "ana")
    with pytest.raises(InvalidInput, match="limit"):
        await store.history("checkout_layout", limit=0)

    assert await store.version() == version
    assert len(await store.history("checkout_layout")) == 1
    assert [f.key for f in await store.all()] == ["checkout_layout"]


@behaviour
async def check_import_is_all_or_nothing(store: FlagStore, clock: FakeClock) -> None:
    await store.put("checkout_layout", layout(), "ana")
    imported = await store.put_many(
        {"checkout_layout": layout(description="imported"), "bulk_order_form": layout()}, "ci"
    )
    assert [(f.key, f.version) for f in imported] == [
        ("checkout_layout", 2),
        ("bulk_order_form", 1),
    ]
    assert {
        c.action
        for k in ("checkout_layout", "bulk_order_form")
        for c in (await store.history(k))[:1]
    } == {"import"}
    version = await store.version()
    with pytest.raises(InvalidInput, match="bad key"):
        await store.put_many({"banner": layout(), "bad key!": layout()}, "ci")
    with pytest.raises(InvalidInput, match="no flags"):
        await store.put_many({}, "ci")
    assert await store.get("banner") is None
    assert await store.version() == version


async def _memory(tmp_path: Path, clock: FakeClock) -> AsyncIterator[FlagStore]:
    yield MemoryFlagStore(clock)


async def _sqlite(tmp_path: Path, clock: FakeClock) -> AsyncIterator[FlagStore]:
    store = SqliteFlagStore(tmp_path / FILE_NAME, clock=clock)
    yield store
    await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[FlagStore]:
    opener = _memory if request.param == "memory" else _sqlite
    async for opened in opener(tmp_path, clock):
        yield opened


@pytest.mark.parametrize("check", BEHAVIOURS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_store_behaviour(check: Check, store: FlagStore, clock: FakeClock) -> None:
    await check(store, clock)


async def test_sqlite_survives_a_restart_and_sees_other_processes(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / FILE_NAME
    first = SqliteFlagStore(path, clock=clock)
    second = SqliteFlagStore(path, clock=clock)  # another API worker on the same file
    seen = await second.version()
    flag = await first.put("checkout_layout", layout(), "ana")

    assert await second.version() != seen
    assert await second.get("checkout_layout") == flag
    await first.close()
    reopened = SqliteFlagStore(path, clock=clock)
    assert await reopened.all() == [flag]
    assert [c.action for c in await reopened.history("checkout_layout")] == ["create"]
    await reopened.close()
    await second.close()


async def test_sqlite_rolls_back_a_change_whose_history_cannot_be_written(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Flag, history and counter are one transaction: when the history record cannot be
    written, the flag stays as it was and the counter does not move."""
    path = tmp_path / FILE_NAME
    store = SqliteFlagStore(path, clock=clock)
    await store.put("checkout_layout", layout(description="kept"), "ana")
    raw = sqlite3.connect(path)
    raw.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON flag_history BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    raw.commit()
    raw.close()
    version = await store.version()

    with pytest.raises(Unavailable):
        await store.put("checkout_layout", layout(description="lost"), "ana")

    stored = await store.get("checkout_layout")
    assert stored is not None and (stored.description, stored.version) == ("kept", 1)
    assert await store.version() == version
    await store.close()


async def test_sqlite_writers_of_two_processes_each_get_a_version(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two API workers changing one flag at once: SQLite serialises the transactions,
    and each plans from what the other committed."""
    path = tmp_path / FILE_NAME
    stores = [SqliteFlagStore(path, clock=clock) for _ in range(2)]
    await stores[0].put("checkout_layout", layout(), "ana")
    await asyncio.gather(
        *(
            stores[i % 2].put("checkout_layout", layout(description=f"v{i}"), f"w{i}")
            for i in range(10)
        )
    )
    history = await stores[1].history("checkout_layout")
    assert sorted(c.version for c in history) == list(range(1, 12))
    stored = await stores[0].get("checkout_layout")
    assert stored is not None and stored == history[0].flag
    for store in stores:
        await store.close()
