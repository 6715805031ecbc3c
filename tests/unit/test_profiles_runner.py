"""The embedded profile runner over an event log: exactly once across a crash and a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from learnloop.clock import FakeClock
from learnloop.eventlog import Append, MemoryEventLog, Streams
from learnloop.profile_runner import CHECKPOINT, EmbeddedProfileRunner
from learnloop.profile_store_sqlite import SqliteProfileStore
from learnloop.profiles import all_profiles
from schemas import DecisionEvent, OutcomeEvent

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def decision(n: int, user: str | None) -> Append:
    event = DecisionEvent(
        event_id=f"d{n}",
        timestamp=T0 + timedelta(seconds=n),
        decision_point="home_products",
        context={"user_id": user, "session_id": f"s-{user}"},
        persona="unclassified",
        actions=[{"id": "a"}],
        chosen_index=0,
        probabilities=[1.0],
        model_version="0",
    )
    return Append(Streams.DECISIONS, event.model_dump_json().encode(), unique_key=event.event_id)


def outcome(n: int, kind: str, value: float | None = None) -> Append:
    event = OutcomeEvent(
        outcome_id=f"o{n}-{kind}",
        event_id=f"d{n}",
        type=kind,
        value=value,
        timestamp=T0 + timedelta(seconds=n + 1),
    )
    return Append(Streams.OUTCOMES, event.model_dump_json().encode(), unique_key=event.outcome_id)


def traffic(start: int, stop: int) -> list[Append]:
    records: list[Append] = []
    for n in range(start, stop):
        user = None if n % 5 == 0 else f"u_{n % 3}"
        records += [decision(n, user), outcome(n, "detail_view"), outcome(n, "basket_add", 2.0)]
    return records


async def totals(store: SqliteProfileStore) -> dict[str, tuple[int, int, int, float]]:
    return {
        p.user_id: (p.sessions, p.detail_views, p.basket_adds, p.basket_value)
        async for p in all_profiles(store)
    }


async def drain(runner: EmbeddedProfileRunner) -> None:
    while await runner.step():
        pass


async def test_a_crash_between_checkpoints_counts_nothing_twice(tmp_path: Path) -> None:
    reference_log = MemoryEventLog()
    await reference_log.append(traffic(0, 50))
    reference = SqliteProfileStore(tmp_path / "reference.sqlite")
    ref_runner = EmbeddedProfileRunner(reference_log, reference, batch_size=1000)
    await ref_runner.start()
    await drain(ref_runner)
    expected = await totals(reference)
    # 50 decisions, 10 anonymous: 40 attributed to 3 users with one session each
    assert sum(v[1] for v in expected.values()) == 40
    assert sum(v[3] for v in expected.values()) == 80.0
    assert [v[0] for v in expected.values()] == [1, 1, 1]

    log = MemoryEventLog()
    clock = FakeClock(T0)
    await log.append(traffic(0, 40))
    path = tmp_path / "profiles.sqlite"
    store = SqliteProfileStore(path)
    first = EmbeddedProfileRunner(log, store, batch_size=7, clock=clock, checkpoint_seconds=5)
    await first.start()
    for _ in range(6):
        await first.step()
        clock.advance(2)  # a checkpoint every third batch
    assert await store.load_checkpoint(CHECKPOINT) is not None
    # kill -9: the runner is gone without its final checkpoint; the batches after the
    # last checkpoint are applied, but the checkpoint does not cover them.
    await store.close()

    reopened = SqliteProfileStore(path)
    second = EmbeddedProfileRunner(log, reopened, batch_size=7, clock=clock)
    await second.start()
    assert -1 < second.offset < first.offset  # it really replays
    await log.append(traffic(40, 50))
    await drain(second)
    assert await totals(reopened) == expected
    await reopened.close()
    await reference.close()


async def test_restart_after_a_clean_stop_resumes_at_the_checkpoint(tmp_path: Path) -> None:
    log = MemoryEventLog()
    await log.append(traffic(1, 5))
    path = tmp_path / "profiles.sqlite"
    store = SqliteProfileStore(path)
    runner = EmbeddedProfileRunner(log, store)
    await runner.start()
    await drain(runner)
    await runner.checkpoint()
    offset = runner.offset
    await store.close()

    store = SqliteProfileStore(path)
    again = EmbeddedProfileRunner(log, store)
    await again.start()
    assert again.offset == offset
    assert await again.step() == 0
    assert again.applied == 0
    await store.close()
