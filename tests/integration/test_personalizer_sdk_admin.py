"""The unchanged ``PersonalizerAdministrationClient`` against a real ``learnloop serve``.

One service for the module (embedded mode, one API worker), one loop per test under
``/loops/{loop}/personalizer``. Each test goes through the SDK as a migrating team
would (read, edit, write back) and checks the effect through learnloop's own API:
the decision point's configuration, the model releases and their audit trail.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from app.personalizer.loop import PERSONALIZER_VW_ARGS
from learnloop.policy import VWPolicy
from runtime.processes import ServiceProcess

pytestmark = pytest.mark.integration

ADMIN_KEY = "sdk-admin-key-0123456789abcdef0123"
CLIENT_KEY = "sdk-client-key-0123456789abcdef0123"
AZURE_POLICY = (
    "--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root: Path = tmp_path_factory.mktemp("personalizer-sdk-admin")
    env = {
        "LEARNLOOP_ADMIN_API_KEY": ADMIN_KEY,
        "LEARNLOOP_CLIENT_API_KEYS": json.dumps([CLIENT_KEY]),
    }
    process = ServiceProcess(root / "data", env=env, log_file=root / "serve.log", workers=1)
    with process:
        yield process


@pytest.fixture
def loop() -> str:
    return f"sdk_{uuid.uuid4().hex[:10]}"


def admin(
    service: ServiceProcess, loop: str, key: str = ADMIN_KEY
) -> PersonalizerAdministrationClient:
    # The SDK appends /personalizer to the endpoint itself.
    return PersonalizerAdministrationClient(f"{service.url}/loops/{loop}", AzureKeyCredential(key))


def learnloop_get(service: ServiceProcess, path: str) -> Any:
    response = httpx.get(f"{service.url}{path}", headers={"X-API-Key": ADMIN_KEY}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_service_configuration(service: ServiceProcess, loop: str) -> None:
    client = admin(service, loop)
    config = client.get_service_configuration()
    assert config["rewardWaitTime"] == "PT10M"
    assert config["rewardAggregation"] == "earliest"
    assert config["learningMode"] == "Online"

    config.update(
        rewardWaitTime="PT30S",
        defaultReward=-0.25,
        rewardAggregation="average",
        explorationPercentage=0.1,
        logRetentionDays=30,
    )
    answered = client.update_service_configuration(config)
    assert answered["rewardWaitTime"] == "PT30S"
    assert answered["explorationPercentage"] == 0.1
    assert "lastConfigurationEditDate" in answered
    assert client.get_service_configuration() == answered

    point = learnloop_get(service, f"/v1/decision-points/{loop}")
    assert point["window_seconds"] == 30
    assert point["default_reward"] == -0.25
    assert point["direct_aggregation"] == "mean"
    assert "--epsilon 0.1" in point["vw_args"]

    answered["learningMode"] = "Apprentice"
    apprentice = client.update_service_configuration(answered)
    assert apprentice["learningMode"] == "Apprentice"
    assert apprentice["latestApprenticeModeMetrics"]["numberOfEvents"] == 0
    assert learnloop_get(service, f"/v1/decision-points/{loop}")["learning_mode"] == "apprentice"


def test_refused_configuration_raises_and_changes_nothing(
    service: ServiceProcess, loop: str
) -> None:
    client = admin(service, loop)
    config = client.get_service_configuration()
    with pytest.raises(HttpResponseError) as refused:
        client.update_service_configuration({**config, "rewardWaitTime": "PT1S"})
    assert refused.value.status_code == 400
    assert refused.value.error is not None and refused.value.error.code == "InvalidRewardWaitTime"
    assert client.get_service_configuration() == config


def test_policy(service: ServiceProcess, loop: str) -> None:
    client = admin(service, loop)
    assert client.get_policy() == {"name": loop, "arguments": PERSONALIZER_VW_ARGS}
    updated = client.update_policy({"name": "myPersonalizer", "arguments": AZURE_POLICY})
    runs = AZURE_POLICY.replace(" --dsjson", "")
    assert updated == {"name": "myPersonalizer", "arguments": runs}
    assert learnloop_get(service, f"/v1/decision-points/{loop}")["vw_args"] == runs

    with pytest.raises(HttpResponseError) as refused:
        client.update_policy({"name": "bad", "arguments": "--cb_explore_adf --no_such_option"})
    assert refused.value.status_code == 400
    assert refused.value.error is not None
    assert refused.value.error.code == "InvalidPolicyConfiguration"
    assert client.get_policy()["arguments"] == runs

    reset = client.reset_policy()
    assert reset["arguments"] == PERSONALIZER_VW_ARGS  # epsilon 0.2 was kept
    assert client.get_policy() == reset


def test_model_export_import_reset(service: ServiceProcess, loop: str) -> None:
    client = admin(service, loop)
    exported = b"".join(client.export_model())
    assert "--cb_explore_adf" in VWPolicy("", exported)._ws.get_arguments()
    created = client.get_model_properties()
    assert set(created) == {"creationTime", "lastModifiedTime"}

    policy = VWPolicy(PERSONALIZER_VW_ARGS)
    model = policy.to_bytes()
    policy.close()
    client.import_model(io.BytesIO(model))
    assert b"".join(client.export_model()) == model
    signed = b"".join(client.export_model(signed=True))
    assert signed[:2] == b"PK"
    client.import_model(io.BytesIO(signed))  # an export with signed=True imports too

    with pytest.raises(HttpResponseError) as refused:
        client.import_model(io.BytesIO(b"this is not a model"))
    assert refused.value.status_code == 400
    assert refused.value.error is not None
    assert refused.value.error.code == "InvalidModelImportFormat"

    client.reset_model()
    history = learnloop_get(service, f"/v1/models/{loop}/releases")
    sources = [r["release"]["source"] for r in history["releases"]]
    assert sources[:3] == ["reset", "import", "import"]
    assert [a["action"] for a in history["audit"]][:3] == ["reset", "import", "import"]
    props = client.get_model_properties()
    assert props["creationTime"] == props["lastModifiedTime"]  # a reset starts a lineage
    assert props["lastModifiedTime"] >= created["lastModifiedTime"]


def test_logs(service: ServiceProcess, loop: str) -> None:
    client = admin(service, loop)
    assert client.get_log_properties() == {"dateRange": {"from": None, "to": None}}
    client.delete_logs()
    assert client.get_log_properties() == {"dateRange": {"from": None, "to": None}}


def test_keys(service: ServiceProcess, loop: str) -> None:
    for key in ("not-a-key", CLIENT_KEY):  # 403: only the admin key administers
        with pytest.raises(HttpResponseError) as refused:
            admin(service, loop, key=key).get_policy()
        assert refused.value.status_code == 403
    missing = httpx.get(f"{service.url}/loops/{loop}/personalizer/v1.0/configurations/policy")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "401"
