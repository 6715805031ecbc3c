"""Automatic optimization: the scheduler that starts ``Auto`` evaluations and how they end.

The scheduler runs over the unit-test harness (in-memory stores, a FakeClock) with a
launcher that only records; two schedulers, and two whole apps, share one store to show a
period runs once. The outcome runs the real job (in-process) over a real SQLite log: one
where a segment feature decides the reward (the search finds far better settings: they
are applied) and one of pure noise (nothing is better: the online settings stay).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.personalizer.auto_optimize import AutoOptimizer
from app.personalizer.loop import PERSONALIZER_VW_ARGS, personalizer_defaults
from learnloop.clock import FakeClock
from learnloop.decision_point_store import FILE_NAME, SqliteDecisionPointStore
from learnloop.decision_points import MemoryDecisionPointStore
from learnloop.eventlog import MemoryEventLog
from learnloop.modelstore import MemoryModelStore
from learnloop.personalizer_store import MemoryPersonalizerStore, PersonalizerStore
from learnloop.settings import Settings
from runtime.personalizer_auto_apply import settle, settle_with
from runtime.personalizer_job_run import run_job
from schemas.personalizer_evaluations import JobDocument, PolicyOutcome
from tests.unit.test_api_harness import START, Harness, running_app
from tests.unit.test_personalizer_evaluations import LOG_START, synthetic, write_log

LOOP = "personalizer"
PV = {"api-version": "2022-09-01-preview"}
DAY = timedelta(days=1)


class RecordingLauncher:
    """Records launches; ``fail`` makes the next one raise (a process that cannot start)."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, str, str]] = []
        self.fail = False

    async def launch(self, kind: Any, loop: str, job_id: str) -> None:
        if self.fail:
            self.fail = False
            raise OSError("no processes left")
        self.launched.append((kind, loop, job_id))


def enable(client: TestClient, **auto: Any) -> None:
    """Switch auto-optimization on through the preview API (the loop is created first)."""
    current = client.get("/personalizer/configurations/service", params=PV)
    assert current.status_code == 200, current.text
    body = {**current.json(), "isAutoOptimizationEnabled": True, **auto}
    response = client.put("/personalizer/configurations/service", params=PV, json=body)
    assert response.status_code == 200, response.text


def optimizer(h: Harness, launcher: Any, store: PersonalizerStore | None = None) -> AutoOptimizer:
    return AutoOptimizer(
        decision_points=h.decision_points,
        store=store or h.app.state.personalizer,
        launcher=launcher,
        clock=h.clock,
        check_seconds=0.01,
    )


def check(h: Harness, auto: AutoOptimizer) -> list[tuple[str, str]]:
    started: list[tuple[str, str]] = h.client.portal.call(auto.check)  # type: ignore[union-attr]
    return started


def evaluation(h: Harness, job_id: str) -> JobDocument:
    store = h.app.state.personalizer
    found = h.client.portal.call(store.get, LOOP, "evaluation", job_id)  # type: ignore[union-attr]
    return JobDocument.model_validate(found)


@pytest.fixture()
def h() -> Iterator[Harness]:
    with running_app() as harness:
        yield harness


# -- the scheduler ---------------------------------------------------------------------------


def test_nothing_runs_while_auto_optimization_is_off(h: Harness) -> None:
    launcher = RecordingLauncher()
    assert h.client.get("/personalizer/configurations/service", params=PV).status_code == 200
    assert check(h, optimizer(h, launcher)) == []
    h.clock.advance(30 * 86400)
    assert check(h, optimizer(h, launcher)) == []
    assert launcher.launched == []
    assert h.client.get("/personalizer/evaluations", params=PV).json() == {"value": []}


def test_due_at_the_start_date_then_once_per_period(h: Harness) -> None:
    launcher = RecordingLauncher()
    auto = optimizer(h, launcher)
    starts = START + timedelta(hours=2)
    enable(h.client, autoOptimizationFrequency="P1D", autoOptimizationStartDate=starts.isoformat())
    assert check(h, auto) == []  # before the start date
    h.clock.advance(3600)
    assert check(h, auto) == []
    h.clock.advance(3600)  # exactly the start date
    [(loop, first)] = check(h, auto)
    assert loop == LOOP and launcher.launched == [("evaluation", LOOP, first)]
    h.clock.advance(23 * 3600)
    assert check(h, auto) == []  # the same period
    h.clock.advance(3600)
    [(_, second)] = check(h, auto)
    assert second != first and len(launcher.launched) == 2
    listed = h.client.get("/personalizer/evaluations", params=PV).json()["value"]
    assert {e["id"] for e in listed} == {first, second}
    assert {e["evaluationType"] for e in listed} == {"Auto"}
    assert listed[0]["id"] == second and listed[0]["status"] == "Running"
    assert listed[1]["status"] == "Timeout"  # a launch that never ran, a day later


def test_the_job_document_of_an_automatic_run(h: Harness) -> None:
    launcher = RecordingLauncher()
    enable(h.client, autoOptimizationFrequency="P7D", autoOptimizationStartDate=START.isoformat())
    [(_, job_id)] = check(h, optimizer(h, launcher))
    job = evaluation(h, job_id)
    assert job.evaluation_type == "Auto" and job.optimize and job.policies == []
    assert job.kind == "evaluation" and job.status == "running"
    assert job.name == f"auto-{LOOP}-{START:%Y-%m-%d}"
    assert (job.start_time, job.end_time) == (START - timedelta(days=7), START)
    assert job.online_arguments == PERSONALIZER_VW_ARGS
    got = h.client.get(f"/personalizer/evaluations/{job_id}", params=PV).json()
    assert got["evaluationType"] == "Auto" and got["status"] == "Running"
    v1 = h.client.get(f"/personalizer/v1.0/evaluations/{job_id}").json()
    assert v1["status"] == "pending"


def test_retrain_days_and_deleted_logs_bound_the_range(h: Harness) -> None:
    launcher = RecordingLauncher()
    enable(
        h.client, autoOptimizationFrequency="P7D", modelRetrainDays=2,
        autoOptimizationStartDate=START.isoformat(),
    )  # fmt: skip
    [(_, job_id)] = check(h, optimizer(h, launcher))
    job = evaluation(h, job_id)
    assert (job.start_time, job.end_time) == (START - 2 * DAY, START)
    h.clock.advance(6 * 86400)
    assert h.client.delete("/personalizer/logs", params=PV).status_code == 204
    cleared = h.clock.now()
    h.clock.advance(86400)
    [(_, next_id)] = check(h, optimizer(h, launcher))
    job = evaluation(h, next_id)
    assert (job.start_time, job.end_time) == (cleared, START + 7 * DAY)


def test_two_schedulers_over_one_store_start_a_period_once(h: Harness) -> None:
    first, second = RecordingLauncher(), RecordingLauncher()
    enable(h.client, autoOptimizationFrequency="P1D")  # no start date: periods from the epoch
    one, other = optimizer(h, first), optimizer(h, second)

    async def race() -> list[Any]:
        return list(await asyncio.gather(one.check(), other.check(), one.check()))

    for _ in range(3):
        h.client.portal.call(race)  # type: ignore[union-attr]
        h.client.portal.call(race)  # type: ignore[union-attr]
        h.clock.advance(86400)
    assert len(first.launched) + len(second.launched) == 3
    listed = h.client.get("/personalizer/evaluations", params=PV).json()["value"]
    assert len(listed) == 3


def test_a_run_that_cannot_start_is_tried_again(h: Harness) -> None:
    launcher = RecordingLauncher()
    auto = optimizer(h, launcher)
    enable(h.client, autoOptimizationFrequency="P1D")
    launcher.fail = True
    assert check(h, auto) == []
    assert h.client.get("/personalizer/evaluations", params=PV).json() == {"value": []}
    [(_, job_id)] = check(h, auto)
    assert launcher.launched == [("evaluation", LOOP, job_id)]


def test_two_apps_sharing_the_store_start_one_run_from_their_lifespans() -> None:
    """The watcher ``app/main.py`` starts: two API workers over one store and one clock."""
    clock = FakeClock(START)
    shared = MemoryPersonalizerStore()
    points = MemoryDecisionPointStore([])
    launchers = [RecordingLauncher(), RecordingLauncher()]
    settings = Settings(model_poll_seconds=0.05, personalizer_auto_check_seconds=0.01)
    common: dict[str, Any] = {"decision_points": points, "clock": clock, "personalizer": shared}
    made = {"events": MemoryEventLog, "models": MemoryModelStore}
    apps = [create_app(settings, **{k: f() for k, f in made.items()}, **common,
                       personalizer_jobs=launcher) for launcher in launchers]  # fmt: skip
    with TestClient(apps[0]) as one, TestClient(apps[1]):
        enable(one, autoOptimizationFrequency="P1D")
        deadline = time.monotonic() + 5
        while not any(x.launched for x in launchers) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # both watchers check several more times
        assert sum(len(x.launched) for x in launchers) == 1
    clock.advance(86400)  # the next period is due, but no worker here can run it
    without = create_app(settings, **{k: f() for k, f in made.items()}, **common)
    with TestClient(without) as client:  # no launcher: no watcher
        time.sleep(0.1)
        assert len(client.get("/personalizer/evaluations", params=PV).json()["value"]) == 1


# -- how an automatic evaluation ends ----------------------------------------------------------


def noise(count: int) -> list[Any]:
    """The same decisions with a coin-flip reward: no policy can beat the logged one."""
    rng = random.Random(7)
    return [e.model_copy(update={"reward": float(rng.random() < 0.5)}) for e in synthetic(count)]


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("auto-learnable")
    write_log(where, synthetic(600))
    return where


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("auto-noise")
    write_log(where, noise(600))
    return where


class JobLauncherInline:
    """Runs the real job inside ``launch``, over the app's own decision points."""

    def __init__(self, h: Harness) -> None:
        self.state = h.app.state

    async def launch(self, kind: Any, loop: str, job_id: str) -> None:
        async def over_app_points(job: JobDocument, name: str) -> JobDocument:
            return await settle(job, name, self.state.decision_points)

        state = self.state
        await run_job(kind, loop, job_id, state.settings, state.personalizer, auto=over_app_points)


def policy(h: Harness) -> str:
    return str(h.client.get("/personalizer/configurations/policy", params=PV).json()["arguments"])


def automatic_run(h: Harness) -> dict[str, Any]:
    """One automatic run (its range the last 60 days: the log's day is in it), its
    preview evaluation when it ended, with the v1.0 one under ``v1``."""
    assert START - timedelta(days=60) < LOG_START
    enable(h.client, autoOptimizationFrequency="P1D", modelRetrainDays=60)
    [(_, job_id)] = check(h, optimizer(h, JobLauncherInline(h)))
    got: dict[str, Any] = h.client.get(f"/personalizer/evaluations/{job_id}", params=PV).json()
    got["v1"] = h.client.get(f"/personalizer/v1.0/evaluations/{job_id}").json()
    return got


def test_clearly_better_settings_are_applied(learnable: Path) -> None:
    with running_app(data_dir=learnable) as h:
        got = automatic_run(h)
        assert got["status"] == "OptimalPolicyApplied", got.get("description")
        assert got["v1"]["status"] == "completed"
        assert got["optimalPolicy"] == "Offline experimentation"
        found = {r["policySource"]: r for r in got["content"]["value"]}
        assert policy(h) == found["OfflineExperimentation"]["arguments"] != PERSONALIZER_VW_ARGS
        assert "Optimal policy applied" in got["description"]
        only = {**PV, "filter": "status eq 'OptimalPolicyApplied'"}
        listed = h.client.get("/personalizer/evaluations", params=only).json()["value"]
        assert [e["id"] for e in listed] == [got["id"]]
        undo = {"evaluationId": got["id"], "policyName": "Online"}  # the undo: back to online
        response = h.client.post(
            "/personalizer/configurations/applyFromEvaluation", params=PV, json=undo
        )
        assert response.status_code == 204, response.text
        assert policy(h) == PERSONALIZER_VW_ARGS


def test_the_online_settings_are_retained_when_nothing_is_better(noisy: Path) -> None:
    with running_app(data_dir=noisy) as h:
        got = automatic_run(h)
        assert got["status"] == "OnlinePolicyRetained", got.get("description")
        assert got["v1"]["status"] == "completed"
        assert "Online policy retained" in got["description"]
        assert policy(h) == PERSONALIZER_VW_ARGS


def test_a_manual_evaluation_with_optimization_applies_nothing(learnable: Path) -> None:
    with running_app(data_dir=learnable) as h:
        h.app.state.personalizer_jobs = JobLauncherInline(h)
        body = {
            "name": "manual", "startTime": LOG_START.isoformat(),
            "endTime": (LOG_START + DAY).isoformat(), "policies": [],
            "enablePolicyOptimization": True,
        }  # fmt: skip
        response = h.client.put("/personalizer/evaluations/manual", params=PV, json=body)
        assert response.status_code == 200, response.text
        got = h.client.get("/personalizer/evaluations/manual", params=PV).json()
        assert got["status"] == "Succeeded" and got["evaluationType"] == "Manual"
        assert got["optimalPolicy"] == "Offline experimentation"
        assert policy(h) == PERSONALIZER_VW_ARGS


# -- the apply rules on their own -----------------------------------------------------------


def _finished(online: str, optimized: str | None, optimal: str) -> JobDocument:
    results = [PolicyOutcome(name="Online", arguments=online, source="Online", value=0.3,
                             lower=0.25, upper=0.35)]  # fmt: skip
    if optimized is not None:
        results.append(
            PolicyOutcome(name="Offline experimentation", arguments=optimized,
                          source="OfflineExperimentation", value=0.9, lower=0.85, upper=0.95)
        )  # fmt: skip
    return JobDocument(
        id="a", kind="evaluation", name="a", start_time=LOG_START, end_time=LOG_START + DAY,
        creation_time=LOG_START + DAY, job_id="j", online_arguments=online, optimize=True,
        evaluation_type="Auto", status="succeeded", results=results, optimal_policy=optimal,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("loop_args", "optimized", "optimal", "why"),
    [
        (PERSONALIZER_VW_ARGS, None, "Online", "no settings significantly better"),
        (PERSONALIZER_VW_ARGS, "--cb_explore_adf --epsilon 0.1", "Online", "best policy was"),
        (
            "--cb_explore_adf --epsilon 0.3",
            "--cb_explore_adf --epsilon 0.1",
            "Offline experimentation",
            "changed while the evaluation ran",
        ),
        (
            PERSONALIZER_VW_ARGS,
            "--cb_explore_adf --bogus_option 3",
            "Offline experimentation",
            "cannot be used",
        ),
    ],
)
def test_the_online_settings_stay_unless_every_rule_holds(
    loop_args: str, optimized: str | None, optimal: str, why: str
) -> None:
    config = personalizer_defaults(LOOP).model_copy(update={"vw_args": loop_args})
    points = MemoryDecisionPointStore([config])
    job = asyncio.run(settle(_finished(PERSONALIZER_VW_ARGS, optimized, optimal), LOOP, points))
    assert job.status == "online_policy_retained"
    assert why in (job.message or "")
    assert asyncio.run(points.get(LOOP)) == config


def test_the_rules_apply_what_they_found() -> None:
    config = personalizer_defaults(LOOP).model_copy(update={"vw_args": PERSONALIZER_VW_ARGS})
    points = MemoryDecisionPointStore([config])
    better = "--cb_explore_adf --epsilon 0.1 --dsjson"
    done = _finished(PERSONALIZER_VW_ARGS, better, "Offline experimentation")
    job = asyncio.run(settle(done, LOOP, points))
    assert job.status == "optimal_policy_applied"
    stored = asyncio.run(points.get(LOOP))
    assert stored is not None and stored.vw_args == "--cb_explore_adf --epsilon 0.1"
    assert stored.model_copy(update={"vw_args": config.vw_args}) == config


def test_the_job_process_applies_through_the_embedded_decision_point_store(
    tmp_path: Path,
) -> None:
    """What ``run_job`` uses by default: the SQLite decision points under the data dir."""

    async def scenario() -> str:
        points = SqliteDecisionPointStore(tmp_path / FILE_NAME)
        await points.put(personalizer_defaults(LOOP))
        await points.close()
        done = _finished(personalizer_defaults(LOOP).vw_args, "--cb_explore_adf --epsilon 0.1",
                         "Offline experimentation")  # fmt: skip
        job = await settle_with(Settings(data_dir=tmp_path))(done, LOOP)
        assert job.status == "optimal_policy_applied"
        reopened = SqliteDecisionPointStore(tmp_path / FILE_NAME)
        try:
            stored = await reopened.get(LOOP)
        finally:
            await reopened.close()
        assert stored is not None
        return stored.vw_args

    assert asyncio.run(scenario()) == "--cb_explore_adf --epsilon 0.1"
