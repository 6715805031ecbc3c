"""The what-if re-join under the online settings reproduces the online embedded join
exactly, and a what-if gives other rewards without touching the production log.

The online side is the real :class:`EmbeddedJoinRunner` on a real SQLite log in a
temporary directory, fed in uneven batches, crashing once after its checkpoint (its
successor replays and re-emits what was already written; the log's unique key keeps
one copy). Its clock never moves, so stream time is event time only: no idle advance,
which a replay could not know. The recorded stream ends with far-future ticks, so
every window closes by event time.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from join_service.embedded_runner import EmbeddedJoinRunner
from learnloop.clock import FakeClock
from learnloop.decision_point_store import FILE_NAME as DECISION_POINTS_FILE
from learnloop.decision_point_store import SqliteDecisionPointStore
from learnloop.eventlog import Append, SqliteEventLog, Streams
from learnloop.streams import stream_of
from offline_learner.rejoin import EventLogReader, raw_events, rejoin, what_if
from runtime.cli import cli
from schemas import Context, DecisionEvent, JoinInput, OutcomeEvent
from tests.integration.join_traffic import CONFIGS, T0, recorded_stream

pytestmark = pytest.mark.integration

CRAFTED_START = T0 - timedelta(seconds=100)


def _crafted() -> list[JoinInput]:
    """Four home_products decisions, closed (20 s windows) before the recorded stream starts:
    w1 view at 2 s + basket at 4 s; w2 views at 3 s and 12 s; w3 a basket at 15 s;
    w4 three views."""

    def at(seconds: float) -> datetime:
        return CRAFTED_START + timedelta(seconds=seconds)

    def decision(n: int, second: float) -> DecisionEvent:
        return DecisionEvent(
            event_id=f"w{n}", decision_point="home_products", timestamp=at(second),
            context=Context(session_id=f"what-if-{n}"), persona="visitor",
            actions=[{"id": "a"}, {"id": "b"}], chosen_index=1, probabilities=[0.4, 0.6],
            model_version="0",
        )  # fmt: skip

    def seen(n: int, kind: str, second: float, oid: str) -> OutcomeEvent:
        return OutcomeEvent(outcome_id=oid, event_id=f"w{n}", type=kind, timestamp=at(second))

    return [
        decision(1, 0), decision(2, 0), decision(3, 0), decision(4, 0),
        seen(4, "detail_view", 1, "wo1"), seen(1, "detail_view", 2, "wo2"),
        seen(4, "detail_view", 2, "wo3"), seen(2, "detail_view", 3, "wo4"),
        seen(4, "detail_view", 3, "wo5"), seen(1, "basket_add", 4, "wo6"),
        seen(2, "detail_view", 12, "wo7"), seen(3, "basket_add", 15, "wo8"),
    ]  # fmt: skip


def _runner(
    events: SqliteEventLog, points: SqliteDecisionPointStore, clock: FakeClock
) -> EmbeddedJoinRunner:
    return EmbeddedJoinRunner(
        events, points, clock=clock, batch_size=37,
        checkpoint_seconds=3_600,  # the clock stands still: checkpoints only when asked
    )  # fmt: skip


async def _run_online(data_dir: Path, stream: list[JoinInput]) -> EmbeddedJoinRunner:
    """Write the stream in uneven chunks, joining in between; crash once after a checkpoint."""
    events = SqliteEventLog(data_dir / "log")
    points = SqliteDecisionPointStore(data_dir / DECISION_POINTS_FILE)
    await points.seed(list(CONFIGS))
    clock = FakeClock(T0)
    rng = random.Random(5)
    runner = _runner(events, points, clock)
    await runner.start()
    position = 0
    crashed = False
    while position < len(stream):
        size = rng.randint(1, 90)
        chunk = stream[position : position + size]
        position += size
        await events.append([Append(stream_of(e), e.model_dump_json().encode()) for e in chunk])
        while await runner.step():
            pass
        if not crashed and position > len(stream) // 3:
            await runner.checkpoint()
            more = stream[position : position + 150]
            position += len(more)
            await events.append([Append(stream_of(e), e.model_dump_json().encode()) for e in more])
            while await runner.step():
                pass  # joined examples written, state not checkpointed: then a crash
            runner = _runner(events, points, clock)
            await runner.start()
            crashed = True
    while await runner.step():
        pass
    assert runner.join.stats.open_windows == 0, "the ticks should have closed every window"
    await events.close()
    await points.close()
    return runner


def _fingerprint(data_dir: Path) -> tuple[int, str, str, bytes]:
    """End offset, digests of the joined stream and of the whole events table, and the
    decision points' file."""
    conn = sqlite3.connect(f"{(data_dir / 'log' / 'events.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        end = conn.execute('SELECT MAX("offset") FROM events').fetchone()[0]
        joined = hashlib.sha256()
        everything = hashlib.sha256()
        for stream, value in conn.execute('SELECT stream, value FROM events ORDER BY "offset"'):
            everything.update(stream.encode() + bytes(value))
            if stream == Streams.JOINED:
                joined.update(bytes(value))
    finally:
        conn.close()
    points = (data_dir / DECISION_POINTS_FILE).read_bytes()
    return int(end), joined.hexdigest(), everything.hexdigest(), points


async def test_rejoin_reproduces_the_online_join_then_a_what_if_changes_rewards(
    tmp_path: Path,
) -> None:
    stream = _crafted() + recorded_stream(seed=11, decisions=300)
    online_runner = await _run_online(tmp_path, stream)
    reader = EventLogReader(tmp_path)
    online = list(reader.joined())
    assert len(online) > 250
    reasons = {e.close_reason for e in online}
    assert reasons == {"outcome", "direct", "default"}
    assert any(e.late_outcomes for e in online) or online_runner.join.stats.late > 0
    before = _fingerprint(tmp_path)

    configs = {c.name: c for c in CONFIGS}
    # Same order, not just the same set: the join is deterministic in arrival order, and
    # the online runner's replay after its crash re-emitted only examples already written.
    replayed = rejoin(raw_events(tmp_path), configs, flush=False)
    assert [e.model_dump() for e in replayed] == [e.model_dump() for e in online]
    assert replayed.stats == online_runner.join.stats
    flushed = list(rejoin(raw_events(tmp_path), configs))
    assert [e.model_dump() for e in flushed] == [e.model_dump() for e in online]

    home = what_if(
        configs["home_products"], reward_map={"detail_view": 0.5}, window_seconds=10,
        aggregation="sum",
    )  # fmt: skip
    changed = list(rejoin(raw_events(tmp_path), {**configs, "home_products": home}))
    by_id = {e.event_id: e for e in changed}
    online_by_id = {e.event_id: e for e in online}
    # Deferred decisions activated between 10 s and 20 s now close unactivated: no example.
    missing = online_by_id.keys() - by_id.keys()
    assert missing and not by_id.keys() - online_by_id.keys()
    assert all(
        not online_by_id[i].decision.activated
        and online_by_id[i].decision.decision_point == "home_products"
        for i in missing
    )
    assert {f"w{n}": online_by_id[f"w{n}"].reward for n in range(1, 5)} == {
        "w1": 3.0, "w2": 1.0, "w3": 3.0, "w4": 1.0,
    }  # fmt: skip
    assert {f"w{n}": by_id[f"w{n}"].reward for n in range(1, 5)} == {
        "w1": 3.5, "w2": 0.5, "w3": 0.0, "w4": 1.5,
    }  # fmt: skip
    assert by_id["w3"].close_reason == "default"
    assert by_id["w1"].timestamp == CRAFTED_START + timedelta(seconds=10)
    # checkout_layout kept its settings: its examples are unchanged.
    checkout = [e for e in online if e.decision.decision_point == "checkout_layout"]
    assert checkout
    assert all(by_id[e.event_id] == e for e in checkout)

    assert _fingerprint(tmp_path) == before

    # The command line: the same what-if, decision points read from the data directory.
    out = tmp_path.parent / f"{tmp_path.name}-what-if"
    result = CliRunner().invoke(
        cli,
        ["offline", "rejoin", str(out), "--data-dir", str(tmp_path),
         "--decision-point", "home_products", "--reward", "detail_view=0.5", "--window", "10",
         "--aggregation", "sum", "--format", "dsjson", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    home_changed = [e for e in changed if e.decision.decision_point == "home_products"]
    home_online = [e for e in online if e.decision.decision_point == "home_products"]
    assert payload["rejoined"]["n"] == len(home_changed)
    assert payload["online"]["n"] == len(home_online)
    assert payload["rejoined"]["reward_mean"] == pytest.approx(
        sum(e.reward for e in home_changed) / len(home_changed)
    )
    lines = out.read_text().splitlines()
    assert len(lines) == len(home_changed)
    assert _fingerprint(tmp_path) == before

    refused = CliRunner().invoke(
        cli, ["offline", "rejoin", str(tmp_path / "x"), "--data-dir", str(tmp_path)]
    )
    assert refused.exit_code == 2
    bad = CliRunner().invoke(
        cli, ["offline", "rejoin", str(out), "--data-dir", str(tmp_path), "--window", "-3"]
    )
    assert bad.exit_code == 2
    assert _fingerprint(tmp_path) == before


def test_a_missing_log_is_refused_clearly(tmp_path: Path) -> None:
    from learnloop.errors import InvalidInput

    with pytest.raises(InvalidInput, match="no embedded event log"):
        list(raw_events(tmp_path))
    assert not any(tmp_path.iterdir())
