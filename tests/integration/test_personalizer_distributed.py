"""The Personalizer API in the distributed mode, through the unchanged SDK clients.

``learnloop serve --backend kafka`` (two API workers), a ``learnloop join`` and a
``learnloop learn`` worker, on real tansu and redis-server: the Personalizer documents
live in Redis, every stream is a Kafka topic. The core of ``test_personalizer_sdk.py``
again: rank then reward comes out of the join as one example with that reward, the
service configuration is the decision point's in Redis (so every replica sees it), the
learner releases a model for the loop, and an evaluation job replays the ``joined``
topic to ``Succeeded``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError

from learnloop.settings import Settings
from runtime.processes import LearnloopProcess, ServiceProcess, settings_env
from tests.integration.conftest import TANSU_MAX_BATCH_BYTES
from tests.integration.personalizer_deployment import (
    FAST_LOOP_ENV,
    WAIT_SECONDS,
    Deployment,
    configure,
    error_code,
    kafka_reader,
    rank_body,
)
from tests.integration.test_kafka_join import start_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("personalizer-distributed")
    tag = uuid.uuid4().hex[:12]
    settings = Settings(
        backend="kafka",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topic_prefix=f"t{tag}.",
        redis_prefix=f"t{tag}:",
        kafka_partitions=3,
        kafka_idempotence=False,
        kafka_max_batch_bytes=TANSU_MAX_BATCH_BYTES,
        connect_timeout_seconds=5.0,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=200,
    )
    env = settings_env(settings) | FAST_LOOP_ENV
    api = ServiceProcess(env=env, workers=2, log_file=root / "api.log")
    learner = LearnloopProcess("learn", env=env, log_file=root / "learn.log")
    started: list[LearnloopProcess] = []
    try:
        started.append(api.start())  # creates the topics
        started.append(start_worker(settings, root / "join.log"))
        started.append(learner.start())
        yield Deployment(api, kafka_reader(kafka_bootstrap, settings.topic_prefix))
        for process in started:
            assert process.running, f"{process.command[-1]} died:\n{process.log_tail()}"
    finally:
        codes = [process.stop() for process in started]
    assert codes == [0] * len(started), "\n\n".join(p.log_tail() for p in started)


async def test_rank_reward_configuration_and_an_evaluation_on_kafka_and_redis(
    deployment: Deployment,
) -> None:
    started = datetime.now(UTC)
    client, admin = deployment.loop("dist")
    config = admin.get_service_configuration()
    assert config["rewardWaitTime"] == "PT5S" and config["learningMode"] == "Online"
    with deployment.http() as http:  # the decision point in Redis, as every replica reads it
        assert http.get("/v1/decision-points/dist").json()["window_seconds"] == WAIT_SECONDS
    deployment.settle()  # the join worker has read the 5 s wait

    sent: dict[str, float] = {}
    for n in range(30):
        kind = "abc"[n % 3]
        answer = client.rank(rank_body(kind, eventId=f"dist-{n}"))
        assert answer["eventId"] == f"dist-{n}"
        assert {a["id"] for a in answer["ranking"]} == {"x", "y", "z"}
        # A miss is penalized: negative rewards go through the Kafka join worker too.
        value = 1.0 if answer["rewardActionId"] == "xyz"["abc".index(kind)] else -0.5
        client.reward(answer["eventId"], {"value": value})
        sent[answer["eventId"]] = value
    with pytest.raises(HttpResponseError) as refused:
        client.reward("dist-0", {"value": 2.0})
    assert error_code(refused.value) == (400, "InvalidRewardRequest")

    joined = await deployment.wait_joined("dist", set(sent), timeout=45.0)
    assert {e: j.reward for e, j in joined.items()} == sent  # the 2.0 never counted
    model = deployment.wait_model("dist", lambda m: m["examples_learned"] >= len(sent))
    assert model["trained"] and model["examples_learned"] == len(sent), model

    updated = configure(admin, explorationPercentage=0.1)
    assert updated["explorationPercentage"] == pytest.approx(0.1)
    assert deployment.admin("dist").get_service_configuration()["explorationPercentage"] == (
        pytest.approx(0.1)
    )

    start, end = started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=5)
    contract = {
        "name": "distributed evaluation",
        "startTime": start.isoformat(),
        "endTime": end.isoformat(),
        "policies": [{"name": "custom", "arguments": "--cb_explore_adf --epsilon 0.05 -q ::"}],
    }
    admin.create_evaluation("dist-eval", contract)
    deadline = time.monotonic() + 60
    while True:
        evaluation = admin.get_evaluation("dist-eval", start_time=start, end_time=end)
        if evaluation["status"] not in {"Running", "NotSubmitted"}:
            break
        assert time.monotonic() < deadline, evaluation
        time.sleep(0.5)
    assert evaluation["status"] == "Succeeded", evaluation
    assert "custom" in {r["name"] for r in evaluation["content"]["value"]}
    assert [e["id"] for e in admin.list_evaluations()] == ["dist-eval"]
