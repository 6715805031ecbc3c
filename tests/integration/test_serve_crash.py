"""kill -9 of a real ``learnloop serve`` process: nothing acknowledged is lost, nothing
is joined or learned twice, and the learner resumes from its last release."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from learnloop.eventlog import Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from runtime.processes import ServiceProcess
from schemas import DecisionEvent, JoinedExample
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.integration

START = datetime.now(UTC) - timedelta(hours=2)


async def kill_mid_load(
    service: ServiceProcess, traffic: Traffic, first: int, last: int, kill_after: int
) -> None:
    """Run traffic and SIGKILL the service once ``kill_after`` decisions were acknowledged,
    while requests are still in flight."""
    load = asyncio.create_task(traffic.run(first, last, concurrency=16))
    while len(traffic.acked_decisions) < kill_after and not load.done():
        await asyncio.sleep(0.01)
    service.kill()
    with contextlib.suppress(httpx.HTTPError):
        await load


async def logged(data_dir: Path, stream: str) -> list[bytes]:
    log = SqliteEventLog(data_dir / "log")
    try:
        return [r.value for r in await log.read([stream], -1, 1_000_000)]
    finally:
        await log.close()


async def test_acknowledged_decisions_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    traffic = Traffic("", START)
    service = ServiceProcess(data).start()
    traffic.base_url = service.url
    await kill_mid_load(service, traffic, 0, 100_000, kill_after=400)
    assert len(traffic.acked_decisions) >= 400

    found = {}
    for value in await logged(data, Streams.DECISIONS):
        event = DecisionEvent.model_validate_json(value)
        found[event.event_id] = event.chosen_action
    missing = set(traffic.acked_decisions) - set(found)
    assert not missing, f"{len(missing)} acknowledged decisions lost, e.g. {sorted(missing)[:5]}"
    assert all(found[e] == a for e, a in traffic.acked_decisions.items())

    # After restart the same event ids answer from the log: the same action, nothing new.
    with ServiceProcess(data) as again, httpx.Client(base_url=again.url) as client:
        for event_id in list(traffic.acked_decisions)[:50]:
            n = int(event_id[1:])
            body = {
                "decision_point": "home_products",
                "event_id": event_id,
                "timestamp": traffic.time(n).isoformat(),
                "context": {"session_id": f"s{n % 50}", "features": {"page": f"p{n % 3}"}},
            }
            answer = client.post("/v1/decisions", json=body).json()
            assert answer["action_id"] == traffic.acked_decisions[event_id]
    assert len(await logged(data, Streams.DECISIONS)) == len(found)


async def test_restart_mid_loop_joins_and_learns_everything_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"LEARNLOOP_RELEASE_EVERY_EXAMPLES": "50"}
    traffic = Traffic("", START)
    first = ServiceProcess(data, env=env).start()
    traffic.base_url = first.url
    await traffic.run(0, 400, concurrency=16)  # event time 0..100 s: most windows closed
    release_before = await wait_for_release(first.url, minimum_examples=1)
    await kill_mid_load(first, traffic, traffic.sent, 100_000, kill_after=600)

    second = ServiceProcess(data, env=env).start()
    traffic.base_url = second.url
    try:
        model = httpx.get(f"{second.url}/v1/models/home_products").json()
        assert model["version"] >= release_before["version"]  # resumed from its release
        await traffic.run(traffic.sent, traffic.sent + 200, concurrency=16)
        await traffic.tick(traffic.sent)
        joined = await wait_for_joined(data, second.url, len(traffic.acked_decisions))
        final = await wait_for_release(second.url, minimum_examples=len(joined))
    finally:
        second.stop()

    ids = [e.event_id for e in joined]
    assert len(ids) == len(set(ids)), "a decision was joined twice"
    missing = set(traffic.acked_decisions) - set(ids)
    assert not missing, f"acknowledged decisions never joined: {sorted(missing)[:5]}"
    for example in joined:
        outcome_ids = [o.outcome_id for o in example.outcomes]
        assert len(outcome_ids) == len(set(outcome_ids)), "an outcome was applied twice"
        expected = 3.0 if example.outcomes else 0.0
        assert example.reward == expected
    acked_outcomes_joined = {o.outcome_id for e in joined for o in e.outcomes}
    assert set(traffic.acked_outcomes) <= acked_outcomes_joined
    # The learner learned each joined example exactly once across the crash.
    assert final["examples_learned"] == len(joined)
    assert final["version"] > release_before["version"]


async def wait_for_release(url: str, minimum_examples: int, timeout: float = 30.0) -> dict:
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(int(timeout / 0.1)):
            model = (await client.get("/v1/models/home_products")).json()
            if model["examples_learned"] >= minimum_examples:
                return model
            await asyncio.sleep(0.1)
    raise AssertionError(f"no release with {minimum_examples} examples; last {model}")


async def wait_for_joined(
    data: Path, url: str, expected: int, timeout: float = 30.0
) -> list[JoinedExample]:
    """Joined examples from the log once their count stops short of nothing (bounded)."""
    for _ in range(int(timeout / 0.2)):
        # The running service holds the log; a second reader is fine with WAL.
        joined = [JoinedExample.model_validate_json(v) for v in await logged(data, Streams.JOINED)]
        if len({e.event_id for e in joined}) >= expected:
            return joined
        await asyncio.sleep(0.2)
    return joined
