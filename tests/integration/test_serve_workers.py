"""``learnloop serve --workers N``: real API worker processes and a loop process under one
supervisor, sharing the SQLite WAL log and the model store.

kill -9 of one worker or of the loop in the middle of a load loses no acknowledged
decision and applies no reward twice; a change made through one worker reaches the
others; SIGTERM drains everything; ``/metrics`` of any worker counts the whole service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from learnloop.eventlog import Streams
from runtime.processes import ServiceProcess
from schemas import DecisionEvent, JoinedExample
from tests.integration.test_serve_crash import logged, wait_for_joined, wait_for_release
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.integration

START = datetime.now(UTC) - timedelta(hours=2)
FRESH = {"Connection": "close"}  # a new connection per request: the kernel spreads them


def answering_pids(url: str, want: set[int], within: float = 30.0) -> set[int]:
    """The pids of the API workers that answer ``/healthz`` on fresh connections.

    ``/readyz`` answers as soon as one worker is up; a second worker may still be
    importing, so this asks until every wanted pid has answered or ``within`` seconds
    have passed (a fixed number of tries failed in CI while one worker was starting).
    """
    seen: set[int] = set()
    deadline = time.monotonic() + within
    with httpx.Client(base_url=url, headers=FRESH) as client:
        while not want <= seen and time.monotonic() < deadline:
            seen.add(client.get("/healthz").json()["pid"])
            if not want <= seen:
                time.sleep(0.005)
    return seen


def decisions_total(metrics_text: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^learnloop_decisions_total\{[^}]*\} (\S+)$", metrics_text, re.M)
    )


async def load_until(traffic: Traffic, first: int, last: int, concurrency: int = 16) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await traffic.run(first, last, concurrency=concurrency)


async def test_workers_share_the_log_configs_and_metrics(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "data", workers=2, log_file=tmp_path / "serve.log") as service:
        pids = service.pids()
        workers = {pids["api-0"], pids["api-1"]}
        assert answering_pids(service.url, workers) == workers, "both workers accept"

        # One event_id sent to both workers at once: one decision, one answer.
        body = {"decision_point": "home_products", "event_id": "same", "context": {}}
        async with httpx.AsyncClient(base_url=service.url, headers=FRESH) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/decisions", json=body) for _ in range(32))
            )
        assert {a.status_code for a in answers} == {200}
        assert len({a.text for a in answers}) == 1
        decisions = await logged(service.data_dir, Streams.DECISIONS)
        assert [DecisionEvent.model_validate_json(v).event_id for v in decisions] == ["same"]

        # A decision point changed through one worker is served by all within a second.
        with httpx.Client(base_url=service.url, headers=FRESH) as client:
            current = client.get("/v1/decision-points/home_products").json()
            current["actions"] = [{"id": "blue"}, {"id": "green"}]
            current.pop("name", None)
            put = client.put("/v1/decision-points/home_products", json=current)
            assert put.status_code == 200, put.text
            time.sleep(1.0)
            chosen = {
                client.post(
                    "/v1/decisions", json={"decision_point": "home_products", "context": {}}
                ).json()["action_id"]
                for _ in range(40)
            }
            assert chosen <= {"blue", "green"}, chosen
            assert answering_pids(service.url, workers) == workers

            # Any worker's /metrics counts the decisions of every worker.
            for _ in range(4):
                assert decisions_total(client.get("/metrics").text) == 41.0


async def test_kill_9_of_an_api_worker_mid_load_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service = ServiceProcess(data, workers=2, log_file=tmp_path / "serve.log").start()
    traffic = Traffic(service.url, START, retries=20)
    try:
        load = asyncio.create_task(load_until(traffic, 0, 1200))
        while len(traffic.acked_decisions) < 300 and not load.done():
            await asyncio.sleep(0.01)
        killed = service.kill_child("api-0")
        await load
        restarted = await asyncio.to_thread(service.wait_restarted, "api-0", killed)
        assert restarted != killed
        await traffic.run(traffic.sent, traffic.sent + 100, concurrency=16)
        await traffic.tick(traffic.sent)
        joined = await wait_for_joined(data, service.url, len(traffic.acked_decisions))
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()
    assert len(traffic.acked_decisions) == traffic.sent == 1300, "every request got through"

    found = Counter()
    actions = {}
    for value in await logged(data, Streams.DECISIONS):
        event = DecisionEvent.model_validate_json(value)
        found[event.event_id] += 1
        actions[event.event_id] = event.chosen_action
    assert not set(traffic.acked_decisions) - set(found), "an acknowledged decision was lost"
    assert max(found.values()) == 1, "a resent event_id was logged twice"
    assert all(actions[e] == a for e, a in traffic.acked_decisions.items())
    assert_joined_once(joined, traffic)


async def test_kill_9_of_the_loop_mid_load_joins_and_learns_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"LEARNLOOP_RELEASE_EVERY_EXAMPLES": "50"}
    service = ServiceProcess(data, workers=1, env=env, log_file=tmp_path / "serve.log").start()
    traffic = Traffic(service.url, START)
    try:
        await traffic.run(0, 400, concurrency=16)
        before = await wait_for_release(service.url, minimum_examples=1)
        load = asyncio.create_task(traffic.run(400, 1000, concurrency=16))
        while len(traffic.acked_decisions) < 600:
            await asyncio.sleep(0.01)
        killed = service.kill_child("loop")
        await load  # the API keeps answering while the loop is down
        await asyncio.to_thread(service.wait_restarted, "loop", killed)
        await traffic.tick(traffic.sent)
        joined = await wait_for_joined(data, service.url, len(traffic.acked_decisions))
        final = await wait_for_release(service.url, minimum_examples=len(joined))
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()
    assert_joined_once(joined, traffic)
    assert final["examples_learned"] == len(joined), "the learner learned an example twice"
    assert final["version"] > before["version"]


async def test_sigterm_drains_every_process(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data", workers=2, log_file=tmp_path / "serve.log")
    service.start()
    children = [pid for name, pid in service.pids().items() if name != "supervisor"]
    assert len(children) == 3
    traffic = Traffic(service.url, START)
    await traffic.run(0, 64, concurrency=16)
    assert service.stop() == 0, service.log_tail()
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(await logged(service.data_dir, Streams.DECISIONS)) == 64


def assert_joined_once(joined: list[JoinedExample], traffic: Traffic) -> None:
    """Every acknowledged decision joined exactly once, no outcome counted twice."""
    ids = [e.event_id for e in joined]
    assert len(ids) == len(set(ids)), "a decision was joined twice"
    assert not set(traffic.acked_decisions) - set(ids), "an acknowledged decision never joined"
    for example in joined:
        outcome_ids = [o.outcome_id for o in example.outcomes]
        assert len(outcome_ids) == len(set(outcome_ids)), "a reward was applied twice"
        assert example.reward == (3.0 if example.outcomes else 0.0)
    assert set(traffic.acked_outcomes) <= {o.outcome_id for e in joined for o in e.outcomes}
