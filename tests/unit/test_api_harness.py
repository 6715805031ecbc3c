"""Shared fixtures of the API tests: the app over in-memory stores and a fake clock.

Imported by the ``test_api_*`` modules (``from tests.unit.test_api_harness import ...``);
the one test here checks the harness itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog, Streams
from learnloop.modelstore import MemoryModelStore
from learnloop.policy import VWPolicy
from learnloop.settings import Settings
from schemas.config import DecisionPointConfig
from schemas.events import DecisionEvent, ModelRelease

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DP = "home_products"
DEFAULT_ACTIONS = ["category1", "category2", "bestsellers", "trending"]


@dataclass
class Harness:
    """A running app (lifespan started) and the stores behind it."""

    client: TestClient
    app: FastAPI
    events: MemoryEventLog
    decision_points: MemoryDecisionPointStore
    models: MemoryModelStore
    clock: FakeClock

    def end_offset(self) -> int:
        return int(self.client.portal.call(self.events.end_offset))  # type: ignore[union-attr]

    def stream(self, name: str) -> list[bytes]:
        records = self.client.portal.call(self.events.read, [name], -1)  # type: ignore[union-attr]
        return [r.value for r in records]

    def decisions(self) -> list[DecisionEvent]:
        return [DecisionEvent.model_validate_json(v) for v in self.stream(Streams.DECISIONS)]

    def decide(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/v1/decisions", json={"decision_point": DP, **body})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        stored: ModelRelease = self.client.portal.call(  # type: ignore[union-attr]
            self.models.publish, release, model
        )
        return stored


HarnessFactory = Callable[..., Harness]


@contextmanager
def running_app(
    configs: list[DecisionPointConfig] | None = None, **settings: Any
) -> Iterator[Harness]:
    """The app over fresh in-memory stores (shipped decision points unless ``configs``),
    its lifespan running; ``settings`` override the test defaults."""
    clock = FakeClock(START)
    events = MemoryEventLog()
    store = MemoryDecisionPointStore(configs if configs is not None else load_config_file(None))
    models = MemoryModelStore()
    app = create_app(
        Settings(**{"model_poll_seconds": 0.05, "model_swap_min_seconds": 0.0, **settings}),
        events=events,
        decision_points=store,
        models=models,
        clock=clock,
    )
    with TestClient(app) as client:
        yield Harness(client, app, events, store, models, clock)


@contextmanager
def harness_factory() -> Iterator[HarnessFactory]:
    """Build several harnesses (settings overrides, optional decision points); closes them all.

    Test modules wrap this and :func:`running_app` in their own small fixtures.
    """
    with ExitStack() as stack:
        yield lambda configs=None, **settings: stack.enter_context(running_app(configs, **settings))


def trained_model(vw_args: str, favourite: int, n_actions: int = 4) -> bytes:
    """Model bytes that strongly prefer action ``favourite`` of the default actions."""
    from learnloop import featurizer
    from schemas.features import Action, Context

    policy = VWPolicy(vw_args)
    actions = [Action(id=a) for a in DEFAULT_ACTIONS[:n_actions]]
    for persona in ("visitor", "unclassified"):
        lines = featurizer.example(Context(), persona, actions)
        for _ in range(60):
            for index in range(n_actions):
                reward = 3.0 if index == favourite else 0.0
                policy.learn_lines(featurizer.labelled(lines, index, reward, 1.0 / n_actions))
    blob = policy.to_bytes()
    policy.close()
    return blob


def release(version: int, vw_args: str, **extra: Any) -> ModelRelease:
    return ModelRelease(
        event_id=f"release-{version}",
        timestamp=START,
        decision_point=DP,
        version=version,
        vw_args=vw_args,
        model_location="",
        **extra,
    )


def test_harness_starts_ready_with_the_shipped_decision_point() -> None:
    with harness_factory() as build:
        harness = build()
        assert harness.client.get("/readyz").status_code == 200
        assert harness.end_offset() == -1
        assert harness.app.state.registry.get(DP).version == 0
