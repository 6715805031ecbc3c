"""A feature team's session with flags, against a real ``learnloop serve --workers 2``.

1. create ``checkout_layout`` with three variants;
2. fix ``bulk_order_form`` for shop owners (a user the shop labelled, and an explicit persona);
3. personalize ``checkout_layout`` for consultants between two variants: the exposure's
   ``event_id`` comes back, an outcome posted against it becomes a joined example of
   ``flag.checkout_layout`` (seen in ``learnloop dataset export``);
4. roll out ``wizard`` to 20 % of direct customers, sticky (over 2,000 users; the same
   users get the same variant again, and again after the service restarts);
5. toggle the flag off (everyone gets the default, ``DISABLED``) and on;
6. check every evaluation's value and reason, and the audit history.

After each change every evaluation through fresh connections (either API worker) must
show it within a second. :func:`feature_team_scenario` is shared with the distributed
run (``test_flags_distributed.py``), which passes other clients and another way to
find joined examples.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.pseudonyms import pseudonymize
from learnloop.eventlog.base import Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.flag_engine import bucket, bucketing_key_of
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY
from offline_learner.dataset import Dataset
from runtime.processes import ServiceProcess
from runtime.processes import run_learnloop as learnloop
from schemas.events import JoinedExample

pytestmark = pytest.mark.integration

ADMIN_KEY = "flags-admin-key"
ADMIN = {"X-API-Key": ADMIN_KEY}
FRESH = {"Connection": "close"}  # a new connection per request: any worker answers
LAYOUT: dict[str, Any] = {
    "description": "Checkout page layout",
    "type": "string",
    "variants": {"classic": "classic", "one_page": "one-page", "wizard": "wizard"},
    "default_variant": "classic",
}
BULK: dict[str, Any] = {
    "description": "The bulk order form on product pages",
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "default_variant": "off",
    "rules": [{"name": "shop owners", "personas": ["shop_owner"], "variant": "on"}],
}
CONSULTANTS = {
    "name": "consultants",
    "personas": ["consultant"],
    "personalized": ["one_page", "wizard"],
}
DIRECT = {
    "name": "direct customers",
    "personas": ["direct_customer"],
    "rollout": [{"variant": "wizard", "weight": 20}],
}
USERS = 2000


def in_rollout(user: str) -> bool:
    """Whether the engine buckets ``user`` into the 20 % of the rollout rule (rule 1)."""
    pseudonym = pseudonymize(user, DEVELOPMENT_PSEUDONYM_KEY.encode())
    return bucket("checkout_layout", 1, bucketing_key_of(pseudonym, None) or "") < 20


# A direct customer in the 20 %: the first evaluation that says SPLIT proves that the
# rollout version is served.
WIZARD_USER = next(f"direct-{i}" for i in range(1000) if in_rollout(f"direct-{i}"))

Joined = Callable[[str], Awaitable[JoinedExample | None]]


@dataclass
class Deployment:
    """Where a scenario runs: the client changes go through, the clients evaluations are
    read from (other workers or replicas), how to find an exposure's joined example."""

    admin: httpx.AsyncClient
    readers: list[httpx.AsyncClient]
    joined: Joined
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    seconds: float = 0.0

    def at(self, later: float = 0.01) -> str:
        """The next event time: the scenario keeps its own clock, an hour ago onwards."""
        self.seconds += later
        return (self.start + timedelta(seconds=self.seconds)).isoformat()

    async def change(self, method: str, path: str, actor: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.admin.request(
            method, path, headers={**ADMIN, "X-Actor": actor}, **kwargs
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def evaluate(
        self,
        key: str,
        reader: int = 0,
        user: str | None = None,
        missing_ok: bool = False,
        **body: Any,
    ) -> dict[str, Any]:
        """One evaluation; ``missing_ok``: a 404 (a worker not caught up yet) is answered."""
        if user is not None:
            body["context"] = {"user_id": user, **body.get("context", {})}
        body.setdefault("timestamp", self.at())
        response = await self.readers[reader % len(self.readers)].post(
            f"/v1/flags/{key}/evaluate", json=body, headers=FRESH
        )
        assert response.status_code in (200, 404), response.text
        answer: dict[str, Any] = response.json()
        assert response.status_code == 200 or (missing_ok and answer["error"] == "flag_not_found")
        return answer

    async def everywhere(
        self, key: str, expected: dict[str, Any], timeout: float = 1.0, **body: Any
    ) -> None:
        """Within ``timeout`` of a change, ten evaluations in a row through every reader
        answer ``expected`` (a subset of the evaluation's fields)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < 10 * len(self.readers):
            answer = await self.evaluate(key, reader=streak, missing_ok=True, **body)
            if {k: answer.get(k) for k in expected} == expected:
                streak += 1
                continue
            assert time.monotonic() < deadline, f"not seen within {timeout} s: {answer}"
            streak = 0


async def feature_team_scenario(d: Deployment) -> dict[str, str]:
    """Steps 1-6 of the module docstring; returns the rollout's variant per user (step 4)."""
    # 1. Create checkout_layout with three variants: everyone gets the default.
    created = await d.change("PUT", "/v1/flags/checkout_layout", "ana", json=LAYOUT)
    assert (created["version"], created["updated_by"]) == (1, "ana")
    await d.everywhere(
        "checkout_layout", {"value": "classic", "reason": "STATIC", "flag_version": 1}
    )

    # 2. The bulk order form for shop owners: a user the shop labelled, an explicit persona.
    await d.change("PUT", "/v1/flags/bulk_order_form", "ana", json=BULK)
    labelled = await d.admin.post(
        "/v1/users/owner-1/label", json={"persona": "shop_owner"}, headers=ADMIN
    )
    assert labelled.status_code in (200, 202), labelled.text
    owner = {"value": True, "variant": "on", "reason": "TARGETING_MATCH", "persona": "shop_owner"}
    await d.everywhere("bulk_order_form", owner, timeout=3.0, user="owner-1")
    await d.everywhere("bulk_order_form", owner, user="owner-2", persona="shop_owner")
    await d.everywhere(
        "bulk_order_form", {"value": False, "reason": "DEFAULT", "persona": "visitor"}
    )

    # 3. Personalize checkout_layout for consultants between one_page and wizard.
    personalized = {**LAYOUT, "rules": [CONSULTANTS], "window_seconds": 5}
    await d.change("PUT", "/v1/flags/checkout_layout", "ben", json=personalized)
    await d.everywhere(
        "checkout_layout",
        {"reason": "PERSONALIZED", "persona": "consultant", "flag_version": 2},
        persona="consultant",
    )
    await d.everywhere("checkout_layout", {"value": "classic", "reason": "DEFAULT"}, user="u-x")
    d.seconds += 60  # past the windows of the exposures above
    exposure = await d.evaluate(
        "checkout_layout", user="consultant-1", persona="consultant", event_id="exposure-1"
    )
    assert exposure["reason"] == "PERSONALIZED"
    assert exposure["event_id"] == "exposure-1"
    assert exposure["variant"] in {"one_page", "wizard"}
    assert exposure["value"] == LAYOUT["variants"][exposure["variant"]]
    again = await d.evaluate(
        "checkout_layout",
        reader=1,
        user="consultant-1",
        persona="consultant",
        event_id="exposure-1",
    )
    assert {k: again[k] for k in ("variant", "event_id")} == {
        k: exposure[k] for k in ("variant", "event_id")
    }  # a retry is the logged exposure, through any worker
    outcome = await d.readers[0].post(
        "/v1/outcomes",
        json={"event_id": "exposure-1", "type": "basket_add", "timestamp": d.at(1.0)},
    )
    assert outcome.status_code == 202, outcome.text
    d.seconds += 30  # a later exposure moves event time past the window
    await d.evaluate("checkout_layout", user="consultant-2", persona="consultant")
    example = await _eventually(lambda: d.joined("exposure-1"), timeout=30)
    assert example.decision.decision_point == "flag.checkout_layout"
    assert example.decision.chosen_action == exposure["variant"]
    assert [a.id for a in example.decision.actions] == ["one_page", "wizard"]
    assert (example.decision.persona, example.reward) == ("consultant", 3.0)

    # 4. Roll out wizard to 20 % of direct customers, sticky.
    rollout = {**personalized, "rules": [CONSULTANTS, DIRECT]}
    await d.change("PUT", "/v1/flags/checkout_layout", "ben", json=rollout)
    await d.everywhere(
        "checkout_layout",
        {"reason": "SPLIT", "flag_version": 3},
        user=WIZARD_USER,
        persona="direct_customer",
    )
    variants = await rollout_variants(d, [f"direct-{i}" for i in range(USERS)])
    share = sum(v == "wizard" for v in variants.values()) / USERS
    assert 0.17 < share < 0.23, share
    assert all((v == "wizard") == in_rollout(u) for u, v in variants.items())
    sample = dict(list(variants.items())[:200])
    assert await rollout_variants(d, list(sample), reader=1) == sample

    # 5. The kill switch: off for everyone, the other flag untouched; then on again.
    off = await d.change("POST", "/v1/flags/checkout_layout/disable", "oncall")
    assert (off["enabled"], off["version"]) == (False, 4)
    disabled = {"value": "classic", "variant": "classic", "reason": "DISABLED", "flag_version": 4}
    await d.everywhere("checkout_layout", disabled, persona="consultant")
    await d.everywhere("checkout_layout", disabled, user="direct-1", persona="direct_customer")
    await d.everywhere("checkout_layout", disabled)
    await d.everywhere("bulk_order_form", owner, user="owner-1")
    on = await d.change("POST", "/v1/flags/checkout_layout/enable", "oncall")
    assert (on["enabled"], on["version"]) == (True, 5)
    await d.everywhere(
        "checkout_layout", {"reason": "PERSONALIZED", "flag_version": 5}, persona="consultant"
    )
    assert await rollout_variants(d, list(sample)) == sample

    # 6. The audit history: who changed what, newest first.
    history = (await d.admin.get("/v1/flags/checkout_layout/history", headers=ADMIN)).json()
    assert [(c["action"], c["version"], c["by"]) for c in history] == [
        ("enable", 5, "oncall"),
        ("disable", 4, "oncall"),
        ("update", 3, "ben"),
        ("update", 2, "ben"),
        ("create", 1, "ana"),
    ]
    assert history[0]["diff"] == [{"path": "enabled", "before": False, "after": True}]
    assert history[1]["diff"] == [{"path": "enabled", "before": True, "after": False}]
    assert [c["path"] for c in history[2]["diff"]] == ["rules"]
    assert history[2]["diff"][0]["after"][1]["rollout"] == DIRECT["rollout"]
    assert {c["path"] for c in history[3]["diff"]} == {"rules", "window_seconds"}
    assert history[4]["flag"]["variants"] == LAYOUT["variants"]
    assert [c["action"] for c in (await d.admin.get(
        "/v1/flags/bulk_order_form/history", headers=ADMIN)).json()] == ["create"]  # fmt: skip
    return variants


async def rollout_variants(d: Deployment, users: list[str], reader: int = 0) -> dict[str, str]:
    """Each direct customer's variant of ``checkout_layout`` (SPLIT or DEFAULT only)."""
    answers: dict[str, str] = {}
    for batch in range(0, len(users), 50):
        chunk = users[batch : batch + 50]
        results = await asyncio.gather(
            *(
                d.evaluate("checkout_layout", reader=reader, user=u, persona="direct_customer")
                for u in chunk
            )
        )
        for user, answer in zip(chunk, results, strict=True):
            expected = "SPLIT" if answer["variant"] == "wizard" else "DEFAULT"
            assert answer["reason"] == expected, answer
            answers[user] = answer["variant"]
    return answers


async def _eventually(
    find: Callable[[], Awaitable[JoinedExample | None]], timeout: float
) -> JoinedExample:
    deadline = time.monotonic() + timeout
    while True:
        found = await find()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "the exposure was never joined"
        await asyncio.sleep(0.2)


def embedded_joined(data_dir: Path) -> Joined:
    """Finds a joined example in the embedded event log (read beside the running service)."""

    async def find(event_id: str) -> JoinedExample | None:
        log = SqliteEventLog(data_dir / "log", checkpoints=False)
        try:
            offset = -1
            while records := await log.read([Streams.JOINED], offset, 5000):
                for record in records:
                    example = JoinedExample.model_validate_json(record.value)
                    if example.event_id == event_id:
                        return example
                offset = records[-1].offset
        finally:
            await log.close()
        return None

    return find


async def test_a_feature_team_session_embedded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"LEARNLOOP_ADMIN_API_KEY": ADMIN_KEY, "LEARNLOOP_PERSONA_REFRESH_SECONDS": "0.1"}
    service = ServiceProcess(data, workers=2, env=env, log_file=tmp_path / "serve.log").start()
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            deployment = Deployment(admin=http, readers=[http], joined=embedded_joined(data))
            variants = await feature_team_scenario(deployment)
            metrics = (await http.get("/metrics")).text
    finally:
        assert service.stop() == 0, service.log_tail()
    assert 'learnloop_flag_exposures_total{flag="checkout_layout"' in metrics
    assert 'learnloop_flag_evaluations_total{flag="checkout_layout",reason="SPLIT"' in metrics

    # The joined exposure as a data scientist finds it.
    exported = tmp_path / "dataset"
    learnloop("dataset", "export", exported, "--data-dir", data, "--decision-point",
              "flag.checkout_layout")  # fmt: skip
    rows = list(Dataset.from_parquet(exported))
    assert [(r.event_id, r.reward) for r in rows if r.event_id == "exposure-1"] == [
        ("exposure-1", 3.0)
    ]

    # Sticky across a restart: the flags come back from data/flags.sqlite, the buckets
    # from the same pseudonyms.
    service = ServiceProcess(data, workers=1, env=env, log_file=tmp_path / "again.log").start()
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            deployment = Deployment(admin=http, readers=[http], joined=embedded_joined(data))
            sample = dict(list(variants.items())[:300])
            assert await rollout_variants(deployment, list(sample)) == sample
    finally:
        assert service.stop() == 0, service.log_tail()
