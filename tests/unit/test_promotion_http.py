"""``GET /v1/models/{name}/releases`` and ``POST /v1/models/{name}/rollback`` over the
in-memory stores: the history, the rollback the API then serves, the refusals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from learnloop.audit import MemoryAuditLog
from schemas.config import DEFAULT_VW_ARGS
from tests.unit.test_api_harness import DP, Harness, release, running_app, trained_model

ADMIN = {"X-API-Key": "admin"}


@pytest.fixture
def harness() -> Iterator[Harness]:
    with running_app(admin_api_key="admin") as h:
        h.app.state.audit = MemoryAuditLog()
        yield h


def test_history_lists_the_releases_newest_first(harness: Harness) -> None:
    assert harness.client.get(f"/v1/models/{DP}/releases").json()["releases"] == []
    for version in (1, 2, 3):
        harness.publish(release(version, DEFAULT_VW_ARGS), trained_model(DEFAULT_VW_ARGS, 0))
    body = harness.client.get(f"/v1/models/{DP}/releases", params={"limit": 2}).json()
    assert [r["release"]["version"] for r in body["releases"]] == [3, 2]
    assert all(r["model_kept"] for r in body["releases"]) and body["audit"] == []
    missing = harness.client.get("/v1/models/nowhere/releases")
    assert missing.status_code == 404 and "does not exist" in missing.text


def test_rollback_serves_the_earlier_model_and_is_audited(harness: Harness) -> None:
    harness.publish(release(1, DEFAULT_VW_ARGS), trained_model(DEFAULT_VW_ARGS, 2))
    harness.publish(release(2, DEFAULT_VW_ARGS), trained_model(DEFAULT_VW_ARGS, 0))
    answer = harness.client.post(
        f"/v1/models/{DP}/rollback", json={"to_version": 1, "by": "ops"}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    rolled = answer.json()
    assert (rolled["version"], rolled["source"], rolled["restores_version"]) == (3, "rollback", 1)
    assert harness.client.get(f"/v1/models/{DP}").json()["version"] == 3
    ranking = harness.decide(event_id="after-rollback")["ranking"]
    assert max(ranking, key=lambda r: r["probability"])["id"] == "bestsellers"  # v1's favourite
    history = harness.client.get(f"/v1/models/{DP}/releases").json()
    assert [(a["action"], a["by"]) for a in history["audit"]] == [("rollback", "ops")]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"to_version": 9}, 404, "no release v9"),
        ({"to_version": 2}, 422, "current release"),
        ({"to_version": 0}, 422, "greater than or equal to 1"),
    ],
)
def test_rollback_refusals(
    harness: Harness, body: dict[str, int], status: int, message: str
) -> None:
    harness.publish(release(1, DEFAULT_VW_ARGS), b"one")
    harness.publish(release(2, DEFAULT_VW_ARGS), b"two")
    answer = harness.client.post(f"/v1/models/{DP}/rollback", json=body, headers=ADMIN)
    assert answer.status_code == status and message in answer.text, answer.text


def test_rollback_needs_the_admin_key(harness: Harness) -> None:
    assert harness.client.post(f"/v1/models/{DP}/rollback").status_code == 401


def test_rollback_without_an_audit_log_is_unavailable(harness: Harness) -> None:
    harness.app.state.audit = None
    harness.publish(release(1, DEFAULT_VW_ARGS), b"one")
    harness.publish(release(2, DEFAULT_VW_ARGS), b"two")
    answer = harness.client.post(f"/v1/models/{DP}/rollback", headers=ADMIN)
    assert answer.status_code == 503 and "audit log" in answer.text
