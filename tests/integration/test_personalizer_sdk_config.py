"""The unchanged ``azure-ai-personalizer`` administration client on two API workers.

The service configuration, the policy and the model of a loop, changed through one
``learnloop serve --workers 2`` and read back through the SDK and through learnloop's own
routes (either worker may answer), and the stable v1.0 API from a plain HTTP client. The
rank, reward and learning-mode tests share a service in ``test_personalizer_sdk.py``;
``test_personalizer_sdk_admin.py`` covers the refusals on one worker.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from runtime.processes import run_learnloop
from tests.integration.personalizer_deployment import (
    ADMIN_KEY,
    CLIENT_KEY,
    Deployment,
    configure,
    embedded_deployment,
    error_code,
    rank_body,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with embedded_deployment(tmp_path_factory.mktemp("personalizer-config")) as deployment:
        yield deployment


def test_service_configuration_get_and_update(deployment: Deployment) -> None:
    admin = deployment.admin("config")
    config = admin.get_service_configuration()
    assert config["rewardWaitTime"] == "PT10M"  # Personalizer's defaults
    assert config["defaultReward"] == 0
    assert config["explorationPercentage"] == pytest.approx(0.2)
    assert config["learningMode"] == "Online"
    updated = configure(
        admin, rewardWaitTime="PT30S", explorationPercentage=0.1, defaultReward=-0.25
    )
    assert updated["rewardWaitTime"] == "PT30S" and updated["defaultReward"] == -0.25
    assert updated["explorationPercentage"] == pytest.approx(0.1)
    assert "lastConfigurationEditDate" in updated
    again = admin.get_service_configuration()
    assert {k: again[k] for k in ("rewardWaitTime", "defaultReward")} == {
        "rewardWaitTime": "PT30S",
        "defaultReward": -0.25,
    }
    # It is the decision point's configuration, seen by both API workers.
    with deployment.http() as http:
        point = http.get("/v1/decision-points/config").json()
    assert point["window_seconds"] == 30 and point["default_reward"] == -0.25
    # Changing the learning mode with the reward settings at once is refused, and changes nothing.
    with pytest.raises(HttpResponseError) as refused:
        configure(admin, learningMode="Apprentice", defaultReward=0.5)
    assert error_code(refused.value) == (400, "InvalidLearningModeServiceConfiguration")
    assert admin.get_service_configuration()["learningMode"] == "Online"


def test_policy_get_update_reset(deployment: Deployment) -> None:
    admin = deployment.admin("policy")
    default = admin.get_policy()
    assert "--cb_explore_adf" in default["arguments"] and default["name"]
    custom = {"name": "custom", "arguments": "--cb_explore_adf --epsilon 0.1 -l 0.01 -q ::"}
    assert admin.update_policy(custom)["arguments"] == custom["arguments"]
    assert admin.get_policy()["arguments"] == custom["arguments"]
    # Either API worker reads the decision point as stored now.
    with deployment.http() as http:
        point = http.get("/v1/decision-points/policy").json()
    assert point["vw_args"] == custom["arguments"], point
    with pytest.raises(HttpResponseError) as refused:
        admin.update_policy({"name": "bad", "arguments": "--cb_explore_adf --no_such_option"})
    assert error_code(refused.value) == (400, "InvalidPolicyConfiguration")
    assert admin.get_policy()["arguments"] == custom["arguments"]
    # The policy's --epsilon is the loop's explorationPercentage; a reset keeps it.
    assert admin.get_service_configuration()["explorationPercentage"] == pytest.approx(0.1)
    reset = default["arguments"].replace("--epsilon 0.2", "--epsilon 0.1")
    assert admin.reset_policy()["arguments"] == reset
    assert admin.get_policy()["arguments"] == reset


def test_model_export_then_import(deployment: Deployment) -> None:
    client, admin = deployment.loop("model")
    client.rank(rank_body("a"))  # the loop exists and serves a model
    exported = b"".join(admin.export_model())
    assert exported, "the exported model is empty"
    before = deployment.model("model")["version"]
    assert admin.import_model(io.BytesIO(exported)) is None  # 204
    after = deployment.wait_model("model", lambda m: m["version"] > before)
    assert after["version"] > before
    properties = admin.get_model_properties()
    assert {"creationTime", "lastModifiedTime"} <= set(properties)
    assert b"".join(admin.export_model()), "the imported model cannot be exported again"
    with pytest.raises(HttpResponseError) as refused:
        admin.import_model(io.BytesIO(b"this is not a VW model"))
    assert error_code(refused.value)[0] == 400
    assert error_code(refused.value)[1] in {"InvalidModelImportFormat", "BadRequest"}
    # Nothing was released (each API worker swaps releases in on its own poll, so the
    # store's release history says it, not whichever worker answers).
    history = json.loads(
        run_learnloop(
            "models", "list", "model", "--data-dir", deployment.service.data_dir, "--json"
        )
    )
    assert history["releases"][0]["release"]["version"] == after["version"]
    assert admin.reset_model() is None  # 204
    assert client.rank(rank_body("b"))["rewardActionId"] in {"x", "y", "z"}


def test_the_stable_api_answers_any_http_client(deployment: Deployment) -> None:
    """C#, JavaScript or hand-written clients of v1.0: the same loop under ``/v1.0``."""
    base = f"{deployment.url}/loops/stable/personalizer/v1.0"
    admin = {"Ocp-Apim-Subscription-Key": ADMIN_KEY}
    client = {"Ocp-Apim-Subscription-Key": CLIENT_KEY}
    with httpx.Client(timeout=10.0) as http:
        config = http.get(f"{base}/configurations/service", headers=admin)
        assert config.status_code == 200 and config.json()["rewardWaitTime"] == "PT10M"
        ranked = http.post(f"{base}/rank", json=rank_body("a", eventId="stable-1"), headers=client)
        assert ranked.status_code == 201 and ranked.json()["eventId"] == "stable-1"
        rewarded = http.post(f"{base}/events/stable-1/reward", json={"value": 1}, headers=client)
        assert rewarded.status_code == 204 and rewarded.content == b""
        refused = http.post(f"{base}/events/stable-1/reward", json={"value": 7}, headers=client)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "InvalidRewardRequest"
        assert refused.headers["x-ms-error-code"] == "InvalidRewardRequest"
        no_key = http.post(f"{base}/rank", json=rank_body("a"))
        assert no_key.status_code == 401 and "error" in no_key.json()
