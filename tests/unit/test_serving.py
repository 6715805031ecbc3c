"""Model serving: hot swap while requests run, vw_args guard, broken releases, readiness."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving import ModelRegistry, ServedModel
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.errors import Unavailable
from learnloop.eventlog import MemoryEventLog
from learnloop.modelstore import MemoryModelStore
from learnloop.settings import Settings
from schemas.events import ModelRelease
from tests.unit.test_api_harness import (
    DEFAULT_ACTIONS,
    DP,
    Harness,
    HarnessFactory,
    harness_factory,
    release,
    running_app,
    trained_model,
)

VW_ARGS = load_config_file(None)[0].vw_args  # the shipped home_products arguments
OTHER_ARGS = "--cb_explore_adf --epsilon 0.2"


@pytest.fixture
def harness() -> Iterator[Harness]:
    with running_app() as h:
        yield h


@pytest.fixture
def make_harness() -> Iterator[HarnessFactory]:
    with harness_factory() as build:
        yield build


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    """Poll ``condition()`` (bounded): the watcher runs on its own schedule."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_release_is_hot_swapped_while_requests_run(harness: Harness) -> None:
    versions: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = harness.client.post("/v1/decisions", json={"decision_point": DP})
            if response.status_code != 200:
                failures.append(response.text)
            else:
                versions.append((time.monotonic(), response.json()["model_version"]))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        _wait_for(lambda: len(versions) >= 20)
        published_at = time.monotonic()
        harness.publish(release(1, VW_ARGS), trained_model(VW_ARGS, favourite=2))
        _wait_for(lambda: sum(v == "1" for _, v in versions) >= 20)
        stop.set()

    assert failures == []
    assert {v for t, v in versions if t < published_at} == {"0"}
    assert {v for _, v in versions} == {"0", "1"}
    # The new model really answers: it strongly prefers "bestsellers".
    chosen = Counter(harness.decide()["action_id"] for _ in range(40))
    assert chosen["bestsellers"] > 30


def test_release_with_other_vw_args_is_ignored(harness: Harness) -> None:
    registry: ModelRegistry = harness.app.state.registry
    harness.publish(release(7, OTHER_ARGS), trained_model(OTHER_ARGS, favourite=1))

    harness.client.portal.call(registry.refresh, DP)  # type: ignore[union-attr]
    time.sleep(0.2)  # a few watcher polls as well

    assert harness.decide()["model_version"] == "0"
    served = registry.get(DP)
    assert served is not None and served.release is None and served.vw_args == VW_ARGS


def test_new_vw_args_serve_an_untrained_model_until_a_matching_release(harness: Harness) -> None:
    registry: ModelRegistry = harness.app.state.registry
    harness.publish(release(3, VW_ARGS), trained_model(VW_ARGS, favourite=0))
    harness.client.portal.call(registry.refresh, DP)  # type: ignore[union-attr]
    assert harness.decide()["model_version"] == "3"

    put = harness.client.put(
        f"/v1/decision-points/{DP}",
        json={
            "actions": [{"id": a} for a in DEFAULT_ACTIONS],
            "vw_args": OTHER_ARGS,
        },
    )

    assert put.status_code == 200
    served = registry.get(DP)
    assert served is not None
    assert (served.version, served.release, served.vw_args) == (3, None, OTHER_ARGS)
    info = harness.client.get(f"/v1/models/{DP}").json()
    assert (info["version"], info["trained"], info["vw_args"]) == (3, False, OTHER_ARGS)

    harness.publish(release(4, OTHER_ARGS), trained_model(OTHER_ARGS, favourite=1))
    _wait_for(lambda: harness.decide()["model_version"] == "4")
    assert registry.get(DP).release.vw_args == OTHER_ARGS  # type: ignore[union-attr]


class _FlakyStore(MemoryModelStore):
    """A model store that is unreachable until ``healthy`` is set; counts loads."""

    def __init__(self, healthy: bool = False) -> None:
        super().__init__()
        self.healthy = healthy
        self.loads = 0

    async def load(self, release: ModelRelease) -> bytes:
        self.loads += 1
        return await super().load(release)

    async def current(self, decision_point: str) -> ModelRelease | None:
        if not self.healthy:
            raise Unavailable("model store down")
        return await super().current(decision_point)


def _app_over(store: MemoryModelStore) -> TestClient:
    app = create_app(
        Settings(model_poll_seconds=0.02),
        events=MemoryEventLog(),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
        models=store,
    )
    return TestClient(app)


async def test_broken_release_keeps_the_served_model_and_is_not_retried() -> None:
    store = _FlakyStore(healthy=True)
    registry = ModelRegistry(
        store, MemoryDecisionPointStore(load_config_file(None)), poll_seconds=0.01
    )
    await registry.load_all()
    await store.publish(release(2, VW_ARGS), b"not a vw model")

    for _ in range(3):
        await registry.refresh(DP)

    served = registry.get(DP)
    assert served is not None and served.version == 0 and not served.trained
    assert store.loads == 1


def test_readyz_is_503_until_the_first_load_succeeds() -> None:
    store = _FlakyStore()
    with _app_over(store) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
        store.healthy = True
        _wait_for(lambda: client.get("/readyz").status_code == 200)
        assert client.post("/v1/decisions", json={"decision_point": DP}).status_code == 200


async def test_registry_builds_models_off_the_loop_and_swaps_references() -> None:
    configs = load_config_file(None)
    models = MemoryModelStore()
    registry = ModelRegistry(models, MemoryDecisionPointStore(configs), poll_seconds=0.01)
    await registry.load_all()
    before = registry.get(DP)
    assert registry.ready and before is not None and before.version == 0

    await models.publish(release(1, VW_ARGS), trained_model(VW_ARGS, favourite=3))
    await registry.refresh(DP)
    after = registry.get(DP)

    assert after is not None and after is not before
    assert (after.version, after.trained) == (1, True)
    with pytest.raises(AttributeError):
        after.version = 2  # type: ignore[misc]
    assert isinstance(after, ServedModel)
    # Refreshing again with nothing new keeps the very same reference.
    await registry.refresh(DP)
    assert registry.get(DP) is after


def test_swaps_are_rate_limited_but_the_first_trained_model_is_served_at_once(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness(model_swap_min_seconds=5.0)
    registry: ModelRegistry = h.app.state.registry
    refresh = h.client.portal.call  # type: ignore[union-attr]
    h.publish(release(1, VW_ARGS), trained_model(VW_ARGS, favourite=0))
    refresh(registry.refresh, DP)
    assert h.decide()["model_version"] == "1"

    h.publish(release(2, VW_ARGS), trained_model(VW_ARGS, favourite=1))
    refresh(registry.refresh, DP)
    assert h.decide()["model_version"] == "1"

    h.clock.advance(5.0)
    refresh(registry.refresh, DP)
    assert h.decide()["model_version"] == "2"


def test_a_release_with_twice_the_examples_skips_the_swap_limit(
    make_harness: HarnessFactory,
) -> None:
    """Early on a model improves fastest: a release that learned from twice the served
    model's examples is served at once; smaller steps wait for the swap interval."""
    h = make_harness(model_swap_min_seconds=5.0)
    registry: ModelRegistry = h.app.state.registry
    refresh = h.client.portal.call  # type: ignore[union-attr]
    for version, examples, served in ((1, 50, "1"), (2, 99, "1"), (3, 100, "3"), (4, 150, "3")):
        h.publish(
            release(version, VW_ARGS, examples_learned=examples),
            trained_model(VW_ARGS, favourite=version % 2),
        )
        refresh(registry.refresh, DP)
        assert h.decide()["model_version"] == served, (version, examples)
