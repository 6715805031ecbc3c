"""The embedded join and learner runners over the in-memory log with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from join_service.embedded_runner import EmbeddedJoinRunner
from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import Append, MemoryEventLog, Streams
from learnloop.modelstore import MemoryModelStore
from online_learner.embedded_runner import EmbeddedLearnerRunner
from schemas import DecisionEvent, JoinedExample, OutcomeEvent

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
ACTIONS = [{"id": a} for a in ("category1", "category2", "bestsellers", "trending")]


def decision(n: int, at: float, session: str = "s") -> Append:
    event = DecisionEvent(
        event_id=f"d{n}",
        timestamp=T0 + timedelta(seconds=at),
        decision_point="home_products",
        context={"session_id": f"{session}{n}", "features": {"page": "home"}},
        persona="visitor",
        actions=ACTIONS,
        chosen_index=n % 4,
        probabilities=[0.25] * 4,
        model_version="0",
    )
    return Append(
        Streams.DECISIONS,
        event.model_dump_json().encode(),
        key=event.event_id,
        unique_key=event.event_id,
    )


def outcome(n: int, at: float, kind: str = "basket_add") -> Append:
    event = OutcomeEvent(
        outcome_id=f"o{n}-{kind}", event_id=f"d{n}", type=kind, timestamp=T0 + timedelta(seconds=at)
    )
    return Append(
        Streams.OUTCOMES,
        event.model_dump_json().encode(),
        key=event.event_id,
        unique_key=event.outcome_id,
    )


async def joined(log: MemoryEventLog) -> list[JoinedExample]:
    return [
        JoinedExample.model_validate_json(r.value)
        for r in await log.read([Streams.JOINED], -1, 100_000)
    ]


def stores() -> tuple[MemoryEventLog, MemoryDecisionPointStore, FakeClock]:
    return MemoryEventLog(), MemoryDecisionPointStore(load_config_file(None)), FakeClock(T0)


async def test_idle_stream_closes_windows_by_elapsed_wall_time() -> None:
    log, points, clock = stores()
    runner = EmbeddedJoinRunner(log, points, clock=clock)
    await runner.start()
    await log.append([decision(1, 0.0), outcome(1, 3.0, "detail_view")])
    await runner.step()
    assert await joined(log) == []
    clock.advance(16.0)
    await runner.step()  # idle: stream time 3 s (last event) + 16 s = 19 s; [0, 20) still open
    assert await joined(log) == []
    clock.advance(1.0)
    await runner.step()
    [example] = await joined(log)
    assert (example.event_id, example.reward, example.close_reason) == ("d1", 1.0, "outcome")


async def test_replay_time_is_not_jumped_to_the_wall_clock() -> None:
    log, points, clock = stores()
    clock.advance(86_400 * 30)  # the wall clock is a month after the replayed events
    runner = EmbeddedJoinRunner(log, points, clock=clock)
    await runner.start()
    await log.append([decision(1, 0.0)])
    await runner.step()
    clock.advance(5.0)
    await runner.step()
    assert await joined(log) == []  # only 5 s of idleness, not a month
    await log.append([outcome(1, 6.0)])
    await runner.step()
    clock.advance(20.0)
    await runner.step()
    assert [(e.event_id, e.reward) for e in await joined(log)] == [("d1", 3.0)]


async def test_restart_from_checkpoint_emits_nothing_twice() -> None:
    log, points, clock = stores()
    first = EmbeddedJoinRunner(log, points, clock=clock, checkpoint_seconds=1.0)
    await first.start()
    timeline = [(n * 1.0, decision(n, n * 1.0)) for n in range(10)]
    timeline += [(n * 1.0 + 2, outcome(n, n * 1.0 + 2)) for n in range(0, 10, 2)]
    await log.append([item for _, item in sorted(timeline, key=lambda pair: pair[0])])
    await first.step()
    await first.checkpoint()
    # More input, windows close, but the process "dies" before its next checkpoint.
    await log.append([decision(n, n * 1.0) for n in range(10, 40)])
    await first.step()
    emitted_before_crash = {e.event_id for e in await joined(log)}
    assert emitted_before_crash  # decisions 0..19 closed by stream time 39
    second = EmbeddedJoinRunner(log, points, clock=clock)
    await second.start()
    assert second.offset < await log.end_offset()  # it replays what the checkpoint missed
    await second.step()
    await log.append([decision(99, 200.0)])
    await second.step()
    ids = [e.event_id for e in await joined(log)]
    assert len(ids) == len(set(ids)) == 40
    rewards = {e.event_id: e.reward for e in await joined(log)}
    assert all(rewards[f"d{n}"] == (3.0 if n % 2 == 0 else 0.0) for n in range(10))


async def test_learner_runner_learns_once_and_resumes_after_its_release() -> None:
    log, points, clock = stores()
    models = MemoryModelStore()
    join = EmbeddedJoinRunner(log, points, clock=clock)
    await join.start()
    timeline = [(n * 0.1, decision(n, n * 0.1)) for n in range(300)]
    timeline += [(n * 0.1 + 1, outcome(n, n * 0.1 + 1)) for n in range(0, 300, 3)]
    await log.append([item for _, item in sorted(timeline, key=lambda pair: pair[0])])
    await log.append([decision(1000, 100.0)])
    await join.step()
    assert len(await joined(log)) == 300

    learner = EmbeddedLearnerRunner(log, models, points, clock=clock, release_every_examples=100)
    await learner.start()
    await learner.step()
    release = await models.current("home_products")
    assert release is not None and release.examples_learned == 300
    assert release.metrics["reward_mean"] == 1.0  # every third decision paid 3

    restarted = EmbeddedLearnerRunner(log, models, points, clock=clock)
    await restarted.start()
    assert restarted.offset == release.last_offset
    await restarted.step()
    clock.advance(2.0)
    await restarted.step()
    again = await models.current("home_products")
    assert again is not None and again.version == release.version  # nothing new to learn
