"""Personalizer evaluations, feature importances and applyFromEvaluation over a real log.

One module-wide app over a real embedded event log (SQLite) of a loop where one context
feature (``user.segment``) decides which action is rewarded. Jobs run in-process: the
test launcher awaits :func:`runtime.personalizer_job_run.run_job` inside ``launch``, so
a job is finished when its create call returns. One test starts the real
:class:`~runtime.personalizer_jobs.SubprocessJobLauncher` child over SQLite.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.personalizer import evaluation_views as views
from app.personalizer.loop import PERSONALIZER_VW_ARGS
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.kafka.codec import to_append
from learnloop.personalizer_store import MemoryPersonalizerStore, PersonalizerStore
from learnloop.personalizer_store_sqlite import SqlitePersonalizerStore
from learnloop.settings import Settings
from offline_learner.dataset import Dataset
from runtime import personalizer_job_run as job_run
from runtime.personalizer_job_compute import compute_evaluation
from runtime.personalizer_job_run import run_job
from runtime.personalizer_jobs import SubprocessJobLauncher
from schemas.events import DecisionEvent, JoinedExample
from schemas.features import Action, Context
from schemas.personalizer_evaluations import JobDocument, PolicyContract
from tests.unit.test_api_harness import Harness, running_app

LOOP = "personalizer"
ACTIONS = ("x0", "x1", "x2")
SEGMENTS = ("a", "b", "c")  # segment i is rewarded for action x_i, nothing else matters
LOG_START = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 600
RANGE = {"startTime": "2025-12-31T00:00:00Z", "endTime": "2026-01-02T00:00:00Z"}
CUSTOM = "--cb_explore_adf --epsilon 0.05 -l 0.5 --dsjson -q ::"
PV = {"api-version": "2022-09-01-preview"}


def synthetic(count: int, seed: int = 1) -> list[JoinedExample]:
    """Uniformly logged decisions, one every 30 s; reward 1 when the action matches the
    user's segment (plus two noise features that decide nothing)."""
    rng = random.Random(seed)
    actions = [Action(id=a) for a in ACTIONS]
    rows = []
    for i in range(count):
        segment = rng.randrange(3)
        chosen = rng.randrange(3)
        when = LOG_START + timedelta(seconds=30 * i)
        features = {
            "user": {"segment": SEGMENTS[segment], "noise": rng.choice(["p", "q"])},
            "device": rng.choice(["mobile", "desktop"]),
        }
        decision = DecisionEvent(
            event_id=f"e{i}",
            timestamp=when,
            decision_point=LOOP,
            context=Context(features=features),
            persona="visitor",
            actions=actions,
            chosen_index=chosen,
            probabilities=[1 / 3] * 3,
            model_version="0",
        )
        reward = 1.0 if chosen == segment else 0.0
        rows.append(
            JoinedExample(
                event_id=f"e{i}",
                timestamp=when + timedelta(seconds=20),
                decision=decision,
                reward=reward,
                close_reason="outcome" if reward else "default",
            )
        )
    return rows


def write_log(data_dir: Path, rows: list[JoinedExample]) -> None:
    async def fill() -> None:
        log = SqliteEventLog(data_dir / "log")
        try:
            await log.append([to_append(e) for e in rows])
        finally:
            await log.close()

    asyncio.run(fill())


class InlineLauncher:
    """Runs the job inside ``launch`` (the real job code, no process)."""

    def __init__(self, settings: Settings, store: PersonalizerStore) -> None:
        self.settings, self.store = settings, store
        self.launched: list[tuple[str, str, str]] = []

    async def launch(self, kind: Any, loop: str, job_id: str) -> None:
        self.launched.append((kind, loop, job_id))
        await run_job(kind, loop, job_id, self.settings, self.store)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("personalizer-log")
    write_log(where, synthetic(ROWS))
    return where


@pytest.fixture(scope="module")
def harness(data_dir: Path) -> Iterator[Harness]:
    with running_app(data_dir=data_dir) as h:
        h.app.state.personalizer_jobs = InlineLauncher(
            h.app.state.settings, h.app.state.personalizer
        )
        yield h


def preview_put(h: Harness, path: str, body: dict[str, Any]) -> Any:
    return h.client.put(f"/personalizer/{path}", params=PV, json=body)


def contract(name: str = "eval", **extra: Any) -> dict[str, Any]:
    return {"name": name, **RANGE, "policies": [{"name": "custom", "arguments": CUSTOM}], **extra}


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["x-ms-error-code"] == code


def stored(h: Harness, kind: str = "evaluation") -> list[str]:
    docs = h.client.portal.call(h.app.state.personalizer.list, LOOP, kind)  # type: ignore[union-attr]
    return [d["id"] for d in docs]


# -- preview ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preview_evaluation(harness: Harness) -> dict[str, Any]:
    response = preview_put(harness, "evaluations/ev-1", contract("first"))
    assert response.status_code == 200, response.text
    assert response.content == b""
    got = harness.client.get(
        "/personalizer/evaluations/ev-1",
        params={**PV, **RANGE, "intervalInMinutes": 60, "window": "Expanding"},
    )
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_preview_evaluation_succeeds_with_every_policy_and_its_series(
    preview_evaluation: dict[str, Any],
) -> None:
    body = preview_evaluation
    assert body["status"] == "Succeeded", body.get("description")
    assert body["evaluationType"] == "Manual"
    assert {"id", "name", "startTime", "endTime", "creationTime"} <= body.keys()
    results = {r["name"]: r for r in body["content"]["value"]}
    sources = {name: r["policySource"] for name, r in results.items()}
    assert sources == {
        "Online": "Online",
        "Baseline": "Baseline",
        "Random": "Random",
        "custom": "Custom",
    }
    assert results["custom"]["arguments"] == CUSTOM  # echoed as sent
    assert results["Online"]["arguments"] == PERSONALIZER_VW_ARGS
    for r in results.values():
        low, high = r["summary"]["confidenceInterval"]
        assert low <= r["summary"]["expectedReward"] <= high
    # uniform logging with a 1-in-3 match: the logged and random values are about 1/3
    assert abs(results["Online"]["summary"]["expectedReward"] - 1 / 3) < 0.08
    assert abs(results["Random"]["summary"]["expectedReward"] - 1 / 3) < 0.08
    # a learner that sees the segment does far better
    assert results["custom"]["summary"]["expectedReward"] > 0.55
    data = results["custom"]["timeseries"]["data"]
    stamps = [d["timeStamp"] for d in data]
    assert len(data) >= 4 and stamps == sorted(stamps)  # 5 hours of logs, hourly buckets
    assert all(len(d["confidenceInterval"]) == 2 for d in data)
    assert body["content"]["intervalInMinutes"] == 60
    assert body["optimalPolicy"] == "custom"


def test_rolling_window_and_a_narrower_range_change_the_series(
    harness: Harness, preview_evaluation: dict[str, Any]
) -> None:
    narrow = {"startTime": "2026-01-01T01:00:00Z", "endTime": "2026-01-01T03:00:00Z"}
    got = harness.client.get(
        "/personalizer/evaluations/ev-1",
        params={**PV, **narrow, "intervalInMinutes": 60, "window": "Rolling"},
    ).json()
    custom = next(r for r in got["content"]["value"] if r["name"] == "custom")
    stamps = [d["timeStamp"] for d in custom["timeseries"]["data"]]
    assert stamps and all("2026-01-01T01:00" <= s <= "2026-01-01T03:00:00Z" for s in stamps)
    bad = harness.client.get(
        "/personalizer/evaluations/ev-1", params={**PV, **RANGE, "intervalInMinutes": 7}
    )
    assert_error(bad, 400, "BadRequest")


def test_preview_create_refuses_a_bad_contract_and_stores_nothing(
    harness: Harness, preview_evaluation: dict[str, Any]
) -> None:
    before = stored(harness)
    twice = contract(policies=[{"name": "p", "arguments": CUSTOM}] * 2)
    assert_error(preview_put(harness, "evaluations/x1", twice), 400, "DuplicateCustomPolicyNames")
    builtin = contract(policies=[{"name": "Online", "arguments": CUSTOM}])
    assert_error(preview_put(harness, "evaluations/x2", builtin), 400, "DuplicateCustomPolicyNames")
    for arguments in ("--cb_adf", "--cb_explore_adf --no_such_option 3", "--cb_explore_adf -d f"):
        bad = contract(policies=[{"name": "p", "arguments": arguments}])
        assert_error(preview_put(harness, "evaluations/x3", bad), 400, "InvalidEvaluationContract")
    backwards = contract(startTime=RANGE["endTime"], endTime=RANGE["startTime"])
    assert_error(
        preview_put(harness, "evaluations/x4", backwards), 400, "InvalidEvaluationContract"
    )
    nameless = {k: v for k, v in contract().items() if k != "name"}
    assert_error(preview_put(harness, "evaluations/x5", nameless), 400, "InvalidEvaluationContract")
    again = preview_put(harness, "evaluations/ev-1", contract("again"))
    assert_error(again, 409, "EvaluationAlreadyExists")
    assert stored(harness) == before
    assert harness.client.get("/personalizer/v1.0/evaluations/ev-1").json()["name"] == "first"


def test_unknown_evaluations_are_evaluation_not_found(harness: Harness) -> None:
    assert_error(
        harness.client.get("/personalizer/evaluations/nope", params={**PV, **RANGE}),
        404,
        "EvaluationNotFound",
    )
    assert_error(
        harness.client.delete("/personalizer/v1.0/evaluations/nope"), 404, "EvaluationNotFound"
    )


def test_preview_list_pages_newest_first_and_filters(harness: Harness) -> None:
    for i in range(3):
        assert (
            preview_put(harness, f"evaluations/page-{i}", contract(f"page {i}")).status_code == 200
        )
        harness.clock.advance(1)
    first = harness.client.get("/personalizer/evaluations", params={**PV, "maxpagesize": 2}).json()
    names = [e["name"] for e in first["value"]]
    assert names[:2] == ["page 2", "page 1"]
    assert set(first["value"][0]) == {
        "id", "name", "startTime", "endTime", "creationTime", "status", "evaluationType",
    }  # fmt: skip
    link = urlsplit(first["nextLink"])
    assert link.scheme == "http" and link.path == "/personalizer/evaluations"
    assert "api-version=2022-09-01-preview" in link.query and "skip=2" in link.query
    rest = harness.client.get(first["nextLink"]).json()
    seen = names + [e["name"] for e in rest["value"]]
    assert len(seen) == len(set(seen)) and {"page 0", "page 1", "page 2"} <= set(seen)
    top = harness.client.get("/personalizer/evaluations", params={**PV, "top": 1}).json()
    assert len(top["value"]) == 1 and "nextLink" not in top
    manual = "metadata=evaluationType eq 'Manual'"
    everything = harness.client.get("/personalizer/evaluations", params={**PV, "filter": manual})
    assert len(everything.json()["value"]) == len(seen)
    auto = {**PV, "filter": "evaluationType eq 'Auto'"}
    assert harness.client.get("/personalizer/evaluations", params=auto).json()["value"] == []
    weird = {**PV, "filter": "startswith(name, 'p')"}
    assert_error(harness.client.get("/personalizer/evaluations", params=weird), 400, "BadRequest")
    for i in range(3):
        deleted = harness.client.delete(f"/personalizer/evaluations/page-{i}", params=PV)
        assert deleted.status_code == 204
    assert not any(k.startswith("page-") for k in stored(harness))


# -- v1.0 ---------------------------------------------------------------------------------


def test_v1_create_answers_201_with_location_then_completes(harness: Harness) -> None:
    body = {**contract("stable"), "enableOfflineExperimentation": False}
    created = harness.client.post("/personalizer/v1.0/evaluations", json=body)
    assert created.status_code == 201, created.text
    evaluation = created.json()
    assert evaluation["status"] == "pending"
    assert evaluation["policyResults"] == [{"name": "custom", "arguments": CUSTOM}]
    assert evaluation["featureImportance"] == [] and evaluation["jobId"]
    location = created.headers["Location"]
    assert location.endswith(f"/personalizer/v1.0/evaluations/{evaluation['id']}")
    got = harness.client.get(urlsplit(location).path).json()
    assert got["status"] == "completed"
    results = {r["name"]: r for r in got["policyResults"]}
    assert {"Online", "Baseline", "Random", "custom"} == set(results)
    total = results["custom"]["totalSummary"]
    snips = total["ipsEstimatorNumerator"] / total["snipsEstimatorDenominator"]
    assert snips > 0.55 and total["confidenceInterval"] > 0
    assert total["aggregateTimeWindow"] == "PT0S"
    assert results["custom"]["summary"] and "timeStamp" in results["custom"]["summary"][0]
    listed = harness.client.get("/personalizer/v1.0/evaluations").json()
    assert isinstance(listed, list) and evaluation["id"] in [e["id"] for e in listed]
    assert harness.client.delete(urlsplit(location).path).status_code == 204
    assert harness.client.get(urlsplit(location).path).status_code == 404


def test_v1_create_refuses_a_bad_contract(harness: Harness) -> None:
    before = stored(harness)
    bad = contract(policies=[{"name": "p", "arguments": "--cb_adf"}])
    response = harness.client.post("/personalizer/v1.0/evaluations", json=bad)
    assert_error(response, 400, "InvalidEvaluationContract")
    assert stored(harness) == before


def test_an_empty_range_fails_with_no_logs(harness: Harness) -> None:
    empty = contract("empty", startTime="2020-01-01T00:00:00Z", endTime="2020-01-02T00:00:00Z")
    assert preview_put(harness, "evaluations/empty", empty).status_code == 200
    got = harness.client.get("/personalizer/evaluations/empty", params={**PV, **RANGE}).json()
    assert got["status"] == "Failed"
    assert "fewer than 2" in got["description"]
    assert "content" not in got


def test_without_a_launcher_create_is_503_and_nothing_is_stored(harness: Harness) -> None:
    launcher = harness.app.state.personalizer_jobs
    harness.app.state.personalizer_jobs = None
    try:
        response = preview_put(harness, "evaluations/no-runner", contract())
        assert_error(response, 503, "InternalServerError")
        fi = preview_put(harness, "featureImportances/no-runner", {"name": "f", **RANGE})
        assert fi.status_code == 503
    finally:
        harness.app.state.personalizer_jobs = launcher
    assert "no-runner" not in stored(harness)
    assert "no-runner" not in stored(harness, "feature_importance")


def put(harness: Harness, store: PersonalizerStore, job: JobDocument) -> None:
    portal = harness.client.portal
    assert portal is not None
    portal.call(store.put, LOOP, "evaluation", job.id, job.model_dump(mode="json"))


def test_a_job_whose_process_vanished_or_overran_is_reported_so(harness: Harness) -> None:
    store = harness.app.state.personalizer
    now = harness.clock.now()
    base = dict(kind="evaluation", name="ghost", start_time=now, end_time=now, job_id="j")
    never = JobDocument(id="never", creation_time=now - timedelta(minutes=10), **base)
    silent = JobDocument(
        id="silent", creation_time=now, started=now, heartbeat=now - timedelta(minutes=5),
        pid=1, host="h", **base,
    )  # fmt: skip
    overran = JobDocument(id="overran", creation_time=now - timedelta(hours=2), **base)
    for job in (never, silent, overran):
        put(harness, store, job)
    status = {
        j: harness.client.get(f"/personalizer/evaluations/{j}", params={**PV, **RANGE}).json()
        for j in ("never", "silent", "overran")
    }
    assert (
        status["never"]["status"] == "Failed" and "never started" in status["never"]["description"]
    )
    assert status["silent"]["status"] == "Failed" and "pid 1" in status["silent"]["description"]
    assert status["overran"]["status"] == "Timeout"
    assert harness.client.get("/personalizer/v1.0/evaluations/overran").json()["status"] == "failed"
    for j in ("never", "silent", "overran"):
        harness.client.delete(f"/personalizer/evaluations/{j}", params=PV)


# -- applyFromEvaluation ------------------------------------------------------------------


def vw_args(harness: Harness) -> str:
    got = harness.client.get(f"/v1/decision-points/{LOOP}")
    assert got.status_code == 200, got.text
    return str(got.json()["vw_args"])


def test_apply_from_evaluation_adopts_the_policy_and_refuses_what_it_cannot(
    harness: Harness, preview_evaluation: dict[str, Any]
) -> None:
    apply = "/personalizer/configurations/applyFromEvaluation"
    before = vw_args(harness)
    missing = {"evaluationId": "nope", "policyName": "custom"}
    assert_error(harness.client.post(apply, params=PV, json=missing), 404, "EvaluationNotFound")
    unknown = {"evaluationId": "ev-1", "policyName": "not there"}
    assert_error(
        harness.client.post(apply, params=PV, json=unknown), 404, "LearningSettingsNotFound"
    )
    baseline = {"evaluationId": "ev-1", "policyName": "Baseline"}
    assert_error(
        harness.client.post(apply, params=PV, json=baseline), 404, "LearningSettingsNotFound"
    )
    assert vw_args(harness) == before
    chosen = {"evaluationId": "ev-1", "policyName": preview_evaluation["optimalPolicy"]}
    response = harness.client.post(apply, params=PV, json=chosen)
    assert response.status_code == 204, response.text
    assert vw_args(harness) == "--cb_explore_adf --epsilon 0.05 -l 0.5 -q ::"  # no --dsjson
    online = {"evaluationId": "ev-1", "policyName": "online"}  # as in Personalizer's example
    assert harness.client.post(apply, params=PV, json=online).status_code == 204
    assert vw_args(harness) == PERSONALIZER_VW_ARGS


# -- feature importance ---------------------------------------------------------------------


def test_feature_importance_ranks_the_feature_that_decides_the_reward_first(
    harness: Harness,
) -> None:
    body = {"name": "what matters", **RANGE}
    created = preview_put(harness, "featureImportances/fi-1", body)
    assert created.status_code == 200, created.text
    got = harness.client.get("/personalizer/featureImportances/fi-1", params=PV).json()
    assert got["status"] == "Succeeded", got.get("description")
    scores = got["featureScores"]
    assert scores[0] == {"namespace": "user", "featureName": "segment", "score": 1.0}
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    assert {(s["namespace"], s["featureName"]) for s in scores} == {
        ("user", "segment"), ("user", "noise"), ("", "device"),
    }  # fmt: skip
    assert all(s["score"] < 0.5 for s in scores[1:])
    assert_error(
        preview_put(harness, "featureImportances/fi-1", body), 409, "FeatureImportanceAlreadyExists"
    )
    backwards = {"name": "x", "startTime": RANGE["endTime"], "endTime": RANGE["startTime"]}
    assert_error(preview_put(harness, "featureImportances/fi-2", backwards), 400, "InvalidContract")
    listed = harness.client.get("/personalizer/featureImportances", params=PV).json()
    assert [f["id"] for f in listed["value"]] == ["fi-1"]
    assert listed["value"][0]["status"] == "Succeeded" and "featureScores" not in listed["value"][0]
    assert (
        harness.client.delete("/personalizer/featureImportances/fi-1", params=PV).status_code == 204
    )
    assert_error(
        harness.client.get("/personalizer/featureImportances/fi-1", params=PV),
        404,
        "FeatureImportanceNotFound",
    )


# -- the real job process ---------------------------------------------------------------------


def test_subprocess_launcher_runs_the_job_over_the_sqlite_log(data_dir: Path) -> None:
    job = asyncio.run(_launch_and_wait(Settings(data_dir=data_dir), _job("sub-1")))
    assert job.status == "succeeded", job.message
    assert job.pid and job.host and job.finished and job.n == ROWS
    assert [r.name for r in job.results] == ["Online", "Baseline", "Random"]
    assert job.optimal_policy == "Online"


def test_policy_optimization_finds_and_applies_better_settings(harness: Harness) -> None:
    body = contract("optimized", policies=[], enablePolicyOptimization=True)
    assert preview_put(harness, "evaluations/opt", body).status_code == 200
    got = harness.client.get("/personalizer/evaluations/opt", params={**PV, **RANGE}).json()
    assert got["status"] == "Succeeded", got.get("description")
    found = {r["policySource"]: r for r in got["content"]["value"]}
    assert set(found) == {"Online", "Baseline", "Random", "OfflineExperimentation"}
    best = found["OfflineExperimentation"]
    assert best["name"] == got["optimalPolicy"] == "Offline experimentation"
    assert best["summary"]["confidenceInterval"][0] > found["Online"]["summary"]["expectedReward"]
    apply = {"evaluationId": "opt", "policyName": got["optimalPolicy"]}
    response = harness.client.post(
        "/personalizer/configurations/applyFromEvaluation", params=PV, json=apply
    )
    assert response.status_code == 204, response.text
    assert vw_args(harness) == best["arguments"]
    reset = {"evaluationId": "opt", "policyName": "Online"}
    harness.client.post("/personalizer/configurations/applyFromEvaluation", params=PV, json=reset)
    assert vw_args(harness) == PERSONALIZER_VW_ARGS


def test_evaluation_routes_need_the_admin_key(data_dir: Path) -> None:
    with running_app(data_dir=data_dir, admin_api_key="admin-key") as h:
        anonymous = h.client.get("/personalizer/evaluations", params=PV)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "401"
        keyed = h.client.get(
            "/personalizer/evaluations",
            params=PV,
            headers={"Ocp-Apim-Subscription-Key": "admin-key"},
        )
        assert keyed.status_code == 200 and keyed.json() == {"value": []}
        v1 = h.client.post("/personalizer/v1.0/evaluations", json=contract())
        assert v1.status_code == 401


async def _launch_and_wait(settings: Settings, job: JobDocument, **launcher: Any) -> JobDocument:
    store = SqlitePersonalizerStore.open(settings.data_dir)
    try:
        await store.put(LOOP, "evaluation", job.id, job.model_dump(mode="json"))
        jobs = SubprocessJobLauncher(settings, store, **launcher)
        await jobs.launch("evaluation", LOOP, job.id)
        deadline = time.monotonic() + 60
        while jobs.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await jobs.aclose()
        return JobDocument.model_validate(await store.get(LOOP, "evaluation", job.id))
    finally:
        await store.close()


def _job(job_id: str) -> JobDocument:
    return JobDocument(
        id=job_id, kind="evaluation", name=job_id, start_time=LOG_START,
        end_time=LOG_START + timedelta(days=1), creation_time=datetime.now(UTC),
        job_id="j", online_arguments=PERSONALIZER_VW_ARGS,
    )  # fmt: skip


def test_a_child_that_dies_before_writing_leaves_its_job_failed(data_dir: Path) -> None:
    job = asyncio.run(_launch_and_wait(Settings(data_dir=data_dir), _job("dead"), python="false"))
    assert job.status == "failed"
    assert job.message == "the job process exited with code 1"


def test_a_job_past_its_time_out_records_timeout_and_its_process_exits(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, personalizer_job_timeout_seconds=0.001)
    job = asyncio.run(_launch_and_wait(settings, _job("slow")))
    assert job.status == "timeout" and job.error_code == "RequestTimeout"
    assert "0.001 s" in (job.message or "")


def test_a_multislot_loop_gets_each_slots_results_beside_the_overall_ones() -> None:
    rows = []
    for i, example in enumerate(synthetic(300, seed=5)):
        features = {**example.decision.context.features, "slot_id": f"slot {i % 2}"}
        decision = example.decision.model_copy(update={"context": Context(features=features)})
        rows.append(example.model_copy(update={"decision": decision}))
    job = _job("slots").model_copy(
        update={"policies": [PolicyContract(name="c", arguments=CUSTOM)]}
    )
    done = compute_evaluation(job, Dataset.from_examples(rows))
    by_slot: dict[str | None, list[str]] = {}
    for result in done.results:
        by_slot.setdefault(result.slot_id, []).append(result.name)
    assert by_slot == {s: ["Online", "Baseline", "Random", "c"] for s in (None, "slot 0", "slot 1")}
    assert {r.n for r in done.results if r.slot_id} == {150}
    preview = views.preview_evaluation(done, LOG_START, LOG_START + timedelta(days=1))
    slots = [r.get("slotId") for r in preview["content"]["value"]]
    assert slots == [None] * 4 + ["slot 0"] * 4 + ["slot 1"] * 4
    assert len(views.v1_evaluation(done)["policyResults"]) == 4
    assert done.optimal_policy == "c"


def test_a_job_deleted_while_running_stops_and_is_not_written_back(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setattr(job_run, "HEARTBEAT_SECONDS", 0.05)

    def slow(settings: Settings, loop: str, start: datetime, end: datetime) -> Dataset:
        def rows() -> Iterator[JoinedExample]:
            for example in synthetic(40):
                time.sleep(0.02)
                yield example

        return Dataset.from_examples(rows)

    async def scenario() -> None:
        store = MemoryPersonalizerStore()
        job = _job("deleted")
        await store.put(LOOP, "evaluation", job.id, job.model_dump(mode="json"))
        running = asyncio.create_task(
            run_job("evaluation", LOOP, job.id, Settings(data_dir=data_dir), store, dataset=slow)
        )
        await asyncio.sleep(0.3)
        assert (await store.get(LOOP, "evaluation", job.id) or {})["pid"] == os.getpid()
        await store.delete(LOOP, "evaluation", job.id)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, 5)
        assert await store.get(LOOP, "evaluation", job.id) is None

    asyncio.run(scenario())
