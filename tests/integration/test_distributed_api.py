"""The decision service in distributed mode: Kafka event sink, Redis stores, hot swap on the
release notification, and a quick clear failure when Kafka or Redis is unreachable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis

from learnloop.errors import Unavailable
from learnloop.eventlog.base import Streams
from learnloop.kafka import codec
from learnloop.kafka.topics import TopicNames
from learnloop.modelstore.redis import RedisModelStore
from learnloop.policy import VWPolicy
from learnloop.settings import Settings
from runtime.distributed import running_api, serve_api
from schemas.config import DEFAULT_VW_ARGS
from schemas.events import DecisionEvent, ModelRelease, OutcomeEvent
from tests.integration.kafka_topics import read_topic
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration

DP = "home_products"  # the shipped default decision point
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def client(kafka_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # Polling every minute: a release served within seconds came by the notification.
    settings = kafka_settings.model_copy(update={"model_poll_seconds": 60.0})
    async with running_api(settings) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


async def records_of(settings: Settings, stream: str) -> list[tuple[bytes | None, bytes, dict]]:
    """Every record on ``stream``'s topic now, as (key, value, headers)."""
    topic = TopicNames(settings.topic_prefix).topic(stream)
    return [(k, v, h) for _, _, k, v, h in await read_topic(settings.kafka_bootstrap, topic)]


async def test_a_decision_is_on_the_decisions_topic_before_the_response(
    client: httpx.AsyncClient, kafka_settings: Settings
) -> None:
    body = {
        "decision_point": DP,
        "event_id": "dec-1",
        "context": {"user_id": "u1", "session_id": "s1", "features": {"page": "home"}},
    }
    response = await client.post("/v1/decisions", json=body, headers={"traceparent": TRACE})
    assert response.status_code == 200, response.text
    answer = response.json()

    [(key, value, headers)] = await records_of(kafka_settings, Streams.DECISIONS)
    assert key == b"s1"  # the join key: the session, so a session's decisions meet
    event = codec.decode_value(Streams.DECISIONS, value)
    assert isinstance(event, DecisionEvent)
    assert (event.event_id, event.chosen_action) == ("dec-1", answer["action_id"])
    assert headers[codec.CONTENT_TYPE] == codec.JSON_CONTENT
    assert headers[codec.TRACEPARENT] == event.traceparent.encode()  # type: ignore[union-attr]
    assert event.context.user_id != "u1"  # pseudonymized before it is logged

    again = await client.post("/v1/decisions", json=body)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("event_id", "action_id", "probability")} == {
        k: answer[k] for k in ("event_id", "action_id", "probability")
    }
    assert len(await records_of(kafka_settings, Streams.DECISIONS)) == 1  # idempotent


async def test_two_replicas_give_one_decision_for_one_event_id(
    kafka_settings: Settings,
) -> None:
    # A client retrying through a load balancer may reach another replica, or both at
    # once: the shared Redis index makes it one logged decision and one answer.
    async with running_api(kafka_settings) as first, running_api(kafka_settings) as second:
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
            for app in (first, second)
        ]
        try:
            body = {"decision_point": DP, "event_id": "dec-r", "context": {"session_id": "sr"}}
            answers = await asyncio.gather(
                *(c.post("/v1/decisions", json=body) for c in clients * 3)
            )
        finally:
            for c in clients:
                await c.aclose()
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    chosen = {(a.json()["event_id"], a.json()["action_id"]) for a in answers}
    assert len(chosen) == 1
    assert len(await records_of(kafka_settings, Streams.DECISIONS)) == 1


async def test_outcomes_land_on_the_outcomes_topic_keyed_by_their_decision(
    client: httpx.AsyncClient, kafka_settings: Settings
) -> None:
    for body in (
        {"decision_point": DP, "event_id": "dec-2", "context": {"session_id": "s2"}},
        {"decision_point": DP, "event_id": "dec-3"},  # no session
    ):
        decided = await client.post("/v1/decisions", json=body)
        assert decided.status_code == 200, decided.text
    response = await client.post(
        "/v1/outcomes",
        json=[
            {"event_id": "dec-2", "type": "basket_add"},
            {"event_id": "dec-3", "type": "detail_view"},
            {"session_id": "s9", "type": "detail_view"},
        ],
    )
    assert response.status_code == 202, response.text

    found = set()
    for key, value, _ in await records_of(kafka_settings, Streams.OUTCOMES):
        event = codec.decode_value(Streams.OUTCOMES, value)
        assert isinstance(event, OutcomeEvent)
        found.add((key, event.event_id, event.type))
    # Keyed like their decision (its session, else its event_id), so they meet in the join.
    assert found == {
        (b"s2", "dec-2", "basket_add"),
        (b"dec-3", "dec-3", "detail_view"),
        (b"s9", None, "detail_view"),
    }


async def test_a_release_is_served_on_its_notification(
    client: httpx.AsyncClient, kafka_settings: Settings
) -> None:
    assert (await client.get(f"/v1/models/{DP}")).json()["version"] == 0
    redis = aioredis.Redis.from_url(kafka_settings.redis_url)
    learner_side = RedisModelStore(redis, kafka_settings.redis_prefix)
    try:
        deadline = time.monotonic() + 10
        while (await redis.pubsub_numsub(learner_side.channel))[0][1] < 1:
            assert time.monotonic() < deadline, "the API never subscribed to release notifications"
            await asyncio.sleep(0.02)
        release = ModelRelease(
            event_id=f"{DP}-v1",
            timestamp=datetime.now(UTC),
            decision_point=DP,
            version=1,
            vw_args=DEFAULT_VW_ARGS,
            model_location="",
            examples_learned=7,
        )
        published_at = time.monotonic()
        await learner_side.publish(release, VWPolicy(DEFAULT_VW_ARGS).to_bytes())
        while (await client.get(f"/v1/models/{DP}")).json()["version"] != 1:
            assert time.monotonic() - published_at < 5.0, "release 1 not served within 5 s"
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
    decided = await client.post("/v1/decisions", json={"decision_point": DP})
    assert decided.json()["model_version"] == "1"


# -- unreachable backends ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["Kafka", "Redis"])
async def test_serve_api_fails_fast_when_a_backend_is_unreachable(
    backend: str, kafka_settings: Settings
) -> None:
    unreachable = {
        "Kafka": {"kafka_bootstrap": f"127.0.0.1:{free_port()}"},
        "Redis": {"redis_url": f"redis://127.0.0.1:{free_port()}/0"},
    }[backend]
    settings = kafka_settings.model_copy(update={**unreachable, "connect_timeout_seconds": 2.0})
    started = time.monotonic()
    with pytest.raises(Unavailable, match=f"cannot reach {backend}"):
        await serve_api(settings)
    assert time.monotonic() - started < 5.0


def test_cli_serve_backend_kafka_exits_1_with_the_message() -> None:
    env = {
        **os.environ,
        "LEARNLOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LEARNLOOP_CONNECT_TIMEOUT_SECONDS": "2",
        "COLUMNS": "200",
    }
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "serve",
            "--backend",
            "kafka",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1, done.stderr.decode()
    assert "cannot reach Kafka" in done.stderr.decode()
    assert "LEARNLOOP_KAFKA_BOOTSTRAP" in done.stderr.decode()
    assert time.monotonic() - started < 15.0
