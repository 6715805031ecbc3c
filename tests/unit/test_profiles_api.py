"""``/v1/users``: GET, PUT profile, label, DELETE over the memory and SQLite stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.pseudonyms import pseudonymize
from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog
from learnloop.modelstore import MemoryModelStore
from learnloop.profile_store_sqlite import SqliteProfileStore
from learnloop.profiles import MemoryProfileStore, ProfileStore
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY, Settings
from tests.unit.test_api_harness import START

ADMIN = {"X-API-Key": "admin-secret"}
ALICE = pseudonymize("alice@shop", DEVELOPMENT_PSEUDONYM_KEY.encode())


def client_for(profiles: ProfileStore | None) -> TestClient:
    app = create_app(
        Settings(admin_api_key="admin-secret", model_poll_seconds=0.05),
        events=MemoryEventLog(),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
        models=MemoryModelStore(),
        clock=FakeClock(START),
        profiles=profiles,
    )
    return TestClient(app)


@pytest.fixture(params=["memory", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    clock = FakeClock(START)
    store: ProfileStore = (
        MemoryProfileStore(clock=clock)
        if request.param == "memory"
        else SqliteProfileStore(tmp_path / "profiles.sqlite", clock=clock)
    )
    with client_for(store) as c:
        yield c
        c.portal.call(store.close)  # type: ignore[union-attr]


def test_put_then_get_shows_the_profile_under_the_pseudonym(client: TestClient) -> None:
    body = {"orders": 4, "monetary": 320.5, "recruits": 2, "categories": {"kits": 3}}
    put = client.put("/v1/users/alice@shop/profile", json=body, headers=ADMIN)
    assert put.status_code == 200, put.text
    assert put.json()["user_id"] == ALICE and put.json()["version"] == 1
    # a second PUT leaves the fields it does not name
    client.put("/v1/users/alice@shop/profile", json={"sessions": 9}, headers=ADMIN)
    got = client.get("/v1/users/alice@shop", headers=ADMIN)
    assert got.status_code == 200
    view = got.json()
    assert view["user_id"] == ALICE
    profile = view["profile"]
    assert (profile["orders"], profile["monetary"], profile["sessions"]) == (4, 320.5, 9)
    assert profile["version"] == 2
    assert isinstance(view["persona"], str) and view["persona_source"] in {"default", "model"}


def test_label_shows_in_the_profile(client: TestClient) -> None:
    r = client.post("/v1/users/bob/label", json={"persona": "consultant"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["label"] == "consultant"
    bad = client.post("/v1/users/bob/label", json={"persona": "no spaces"}, headers=ADMIN)
    assert bad.status_code == 422


def test_delete_forgets_the_user(client: TestClient) -> None:
    client.put("/v1/users/carol/profile", json={"orders": 1}, headers=ADMIN)
    r = client.delete("/v1/users/carol", headers=ADMIN)
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert client.get("/v1/users/carol", headers=ADMIN).json()["profile"] is None
    assert client.delete("/v1/users/carol", headers=ADMIN).json()["deleted"] is False


@pytest.mark.parametrize(
    "body",
    [{"orders": -1}, {"monetary": "lots"}, {"unknown_field": 1}, {"last_seen": "2026-01-01T00:00"}],
    ids=["negative", "not-a-number", "unknown-field", "naive-time"],
)
def test_bad_profile_bodies_are_refused(client: TestClient, body: dict[str, object]) -> None:
    r = client.put("/v1/users/dave/profile", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert client.get("/v1/users/dave", headers=ADMIN).json()["profile"] is None


def test_every_route_needs_the_admin_key(client: TestClient) -> None:
    assert client.get("/v1/users/alice@shop").status_code == 401
    assert client.put("/v1/users/a/profile", json={}, headers={"X-API-Key": "x"}).status_code == 403
    assert client.delete("/v1/users/a").status_code == 401
    assert client.post("/v1/users/a/label", json={"persona": "x"}).status_code == 401


def test_without_a_profile_store_the_routes_answer_503() -> None:
    with client_for(None) as c:
        r = c.get("/v1/users/alice", headers=ADMIN)
    assert r.status_code == 503 and "profile store" in r.text
