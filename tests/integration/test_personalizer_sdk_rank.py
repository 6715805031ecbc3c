"""The unchanged ``azure-ai-personalizer`` client's rank, reward and activate (single and
multi-slot) against a real ``learnloop serve``, checked in learnloop's own event log.

One service for the module (embedded mode, a client key); each test uses its own event
ids, so what it finds in the log is its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from azure.ai.personalizer import PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from learnloop.eventlog import Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from runtime.processes import ServiceProcess
from schemas.events import ActivationEvent, DecisionEvent, RewardEvent

if TYPE_CHECKING:  # the package exports the patched client; its stubs see the generated one
    from azure.ai.personalizer._patch import PersonalizerClient as Client

pytestmark = pytest.mark.integration

CLIENT_KEY = "rank-client-key-0123456789"
ACTIONS = [
    {"id": "NewsArticle", "features": [{"type": "News"}]},
    {"id": "SportsArticle", "features": [{"type": "Sports", "tags": ["live", "hot"]}]},
    {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}]},
]
CONTEXT = [
    {"user": {"profileType": "AnonymousUser", "loc": {"lat": 47.6}}},
    {"device": {"mobile": True}},
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("personalizer-sdk-rank")
    env = {"LEARNLOOP_CLIENT_API_KEYS": f'["{CLIENT_KEY}"]'}
    process = ServiceProcess(root / "data", env=env, log_file=root / "serve.log").start()
    try:
        yield process
        assert process.running, process.log_tail()
    finally:
        code = process.stop()
    assert code == 0, process.log_tail()


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Iterator[Client]:
    sdk = PersonalizerClient(endpoint=service.url, credential=AzureKeyCredential(CLIENT_KEY))
    yield sdk  # type: ignore[misc]


def logged(service: ServiceProcess, stream: str) -> list[bytes]:
    async def read() -> list[bytes]:
        log = SqliteEventLog(service.data_dir / "log")
        try:
            return [r.value for r in await log.read([stream], -1, 1_000_000)]
        finally:
            await log.close()

    return asyncio.run(read())


def decisions(service: ServiceProcess, prefix: str) -> list[DecisionEvent]:
    found = [DecisionEvent.model_validate_json(v) for v in logged(service, Streams.DECISIONS)]
    return [d for d in found if d.event_id.startswith(prefix)]


def fresh_id() -> str:
    return str(uuid.uuid4()).upper()


def test_rank_reward_activate_with_the_sdk(service: ServiceProcess, client: Client) -> None:
    event_id = fresh_id()
    answer: Any = client.rank(
        {
            "contextFeatures": CONTEXT,
            "actions": ACTIONS,
            "excludedActions": ["SportsArticle"],
            "eventId": event_id,
            "deferActivation": True,
        }
    )
    assert answer["eventId"] == event_id
    assert answer["ranking"][0]["id"] == answer["rewardActionId"] != "SportsArticle"
    assert answer["ranking"][-1] == {"id": "SportsArticle", "probability": 0.0}

    [decision] = decisions(service, event_id)
    assert decision.decision_point == "personalizer"
    assert decision.context.features == {
        "user": {"profileType": "AnonymousUser", "loc.lat": 47.6},
        "device": {"mobile": True},
    }
    assert [a.id for a in decision.actions] == ["NewsArticle", "EntertainmentArticle"]
    assert decision.chosen_action == answer["rewardActionId"]
    assert decision.activated is False

    assert client.activate(event_id) is None
    assert client.reward(event_id, {"value": 0.5}) is None
    activations = [ActivationEvent.model_validate_json(v) for v in logged(service, "activations")]
    assert event_id in {a.event_id for a in activations}
    rewards = [RewardEvent.model_validate_json(v) for v in logged(service, "rewards")]
    assert (event_id, 0.5) in {(r.event_id, r.value) for r in rewards}


def test_a_generated_event_id_can_be_rewarded(service: ServiceProcess, client: Client) -> None:
    answer: Any = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS})
    client.reward(answer["eventId"], {"value": 1.0})
    rewards = [RewardEvent.model_validate_json(v) for v in logged(service, "rewards")]
    assert (answer["eventId"], 1.0) in {(r.event_id, r.value) for r in rewards}


def test_multislot_rank_reward_activate_with_the_sdk(
    service: ServiceProcess, client: Client
) -> None:
    event_id = fresh_id()
    slots = [
        {
            "id": "Main Article",
            "features": [{"size": "Large", "position": "Top Middle"}],
            "excludedActions": ["SportsArticle"],
            "baselineAction": "EntertainmentArticle",
        },
        {"id": "Side Bar", "features": [{"size": "Small"}], "baselineAction": "NewsArticle"},
    ]
    answer: Any = client.rank_multi_slot(
        {
            "contextFeatures": CONTEXT,
            "actions": ACTIONS,
            "slots": slots,
            "eventId": event_id,
            "deferActivation": True,
        }
    )
    assert answer["eventId"] == event_id
    assert [s["id"] for s in answer["slots"]] == ["Main Article", "Side Bar"]
    chosen = [s["rewardActionId"] for s in answer["slots"]]
    assert len(set(chosen)) == 2 and chosen[0] != "SportsArticle"

    logged_slots = decisions(service, event_id)
    assert [d.event_id for d in logged_slots] == [f"{event_id}:0", f"{event_id}:1"]
    assert [d.chosen_action for d in logged_slots] == chosen
    assert [d.context.features["slot_id"] for d in logged_slots] == ["Main Article", "Side Bar"]

    client.reward_multi_slot(event_id, {"reward": [{"slotId": "Side Bar", "value": 1.0}]})
    client.activate_multi_slot(event_id)
    rewards = [RewardEvent.model_validate_json(v) for v in logged(service, "rewards")]
    assert (f"{event_id}:1", 1.0) in {(r.event_id, r.value) for r in rewards}
    activated = {
        ActivationEvent.model_validate_json(v).event_id for v in logged(service, "activations")
    }
    assert {f"{event_id}:0", f"{event_id}:1"} <= activated


def test_the_sdk_sees_personalizer_errors(service: ServiceProcess, client: Client) -> None:
    before = len(logged(service, Streams.DECISIONS))
    with pytest.raises(HttpResponseError) as caught:
        client.rank({"actions": [ACTIONS[0], ACTIONS[0]]})
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "InvalidRankRequest"
    with pytest.raises(HttpResponseError) as refused:
        client.reward(fresh_id(), {"value": 1.0})
    assert refused.value.status_code == 404
    with pytest.raises(HttpResponseError) as out_of_range:
        client.reward(fresh_id(), {"value": 2.0})
    assert out_of_range.value.status_code == 400
    wrong: Client = PersonalizerClient(  # type: ignore[assignment]
        endpoint=service.url, credential=AzureKeyCredential("wrong")
    )
    with pytest.raises(ClientAuthenticationError):
        wrong.rank({"actions": ACTIONS})
    assert len(logged(service, Streams.DECISIONS)) == before


def test_nothing_failed_in_the_service(service: ServiceProcess) -> None:
    assert "Traceback" not in service.log_tail(100_000), service.log_tail()
