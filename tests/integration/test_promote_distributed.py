"""Promotion and rollback in the distributed mode, on tansu and redis-server: the commands
run as their own processes with ``--backend kafka``; an API replica swaps to the promoted
model on the Redis notification, the Kafka learner worker continues from it, every
promotion and rollback is announced on the releases topic, and the Redis store keeps the
release history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from learnloop.modelstore.redis import RedisModelStore
from learnloop.settings import Settings
from runtime.distributed import running_api
from runtime.processes import settings_env
from schemas.dsjson import to_dsjson
from schemas.events import ModelRelease
from tests.integration import test_kafka_learner as kafka_learner
from tests.integration.test_kafka_learner import (
    HOME,
    VW_ARGS,
    eventually,
    joined,
    learner_worker,
    produce,
    read_releases,
)

pytestmark = pytest.mark.integration

# The Kafka learner tests' fixtures: settings with one config file, a producer, the store.
settings = kafka_learner.settings
producer = kafka_learner.producer
models = kafka_learner.models

NEW_ARGS = "--cb_explore_adf --squarecb -q ca"


def learnloop(settings: Settings, *args: str) -> dict[str, Any]:
    """Run ``learnloop ... --backend kafka --json`` in its own process; its JSON output."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args, "--backend", "kafka", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | settings_env(settings),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def current_with(models: RedisModelStore, check: Any) -> Any:
    async def probe() -> ModelRelease | None:
        release = await models.current(HOME)
        return release if release is not None and check(release) else None

    return probe


def served(client: httpx.AsyncClient, check: Any) -> Any:
    async def probe() -> dict[str, Any] | None:
        model = (await client.get(f"/v1/models/{HOME}")).json()
        return model if check(model) else None

    return probe


async def test_promote_swap_continue_and_roll_back_on_kafka_and_redis(
    settings: Settings, producer: AIOKafkaProducer, models: RedisModelStore, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"release_every_seconds": 0.2})
    async with (
        running_api(settings) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
        learner_worker(settings) as learner,
    ):
        await produce(producer, settings, [joined(HOME, n) for n in range(40)])
        before = await eventually(current_with(models, lambda r: r.examples_learned == 40), "v1")
        await eventually(served(api, lambda m: m["version"] == before.version), "API on it")

        dataset = tmp_path / "home.dsjson"
        dataset.write_text("".join(to_dsjson(joined(HOME, n)) + "\n" for n in range(100, 160)))
        promoted = learnloop(
            settings, "offline", "promote", str(dataset), "--decision-point", HOME,
            "--vw-args", NEW_ARGS, "--by", "ana",
        )  # fmt: skip
        release = ModelRelease.model_validate(promoted["release"])
        assert (release.source, release.version) == ("promotion", before.version + 1)
        assert release.examples_learned == 60 and release.last_offset == before.last_offset

        model = await eventually(served(api, lambda m: m["version"] == release.version), "swap")
        assert model["vw_args"] == NEW_ARGS and model["examples_learned"] == 60

        # The learner continues from the promoted model with the examples that follow. It
        # adopts the promotion when it sees the new vw_args (a second at most); examples it
        # learned before that are dropped with its old model, by design, so wait for it.
        async def adopted() -> int | None:
            version = learner.learner.version(HOME)
            return version if version >= release.version else None

        await eventually(adopted, "the learner adopting the promotion")
        await produce(producer, settings, [joined(HOME, n) for n in range(40, 70)])
        after = await eventually(
            current_with(models, lambda r: r.source == "online" and r.examples_learned == 90),
            "the learner's release after the promotion",
        )
        assert after.version > release.version and after.vw_args == NEW_ARGS
        assert after.metrics["fresh_models"] == 0

        rolled = ModelRelease.model_validate(
            learnloop(settings, "models", "rollback", HOME, "--to", str(before.version))["release"]
        )
        assert (rolled.source, rolled.restores_version) == ("rollback", before.version)
        back = await eventually(served(api, lambda m: m["version"] == rolled.version), "back")
        assert back["vw_args"] == VW_ARGS and back["examples_learned"] == 40
        assert await models.load(rolled) == await models.load(before)

    listing = learnloop(settings, "models", "list", HOME)
    versions = [r["release"]["version"] for r in listing["releases"]]
    assert versions[0] >= rolled.version and versions == sorted(versions, reverse=True)
    assert [a["action"] for a in listing["audit"]] == ["rollback", "promote"]
    assert listing["audit"][1]["by"] == "ana" and listing["audit"][1]["dataset"]["rows"] == 60

    announced = {(r.version, r.source) for r in await read_releases(settings)}
    assert {(release.version, "promotion"), (rolled.version, "rollback")} <= announced


async def test_redis_history_is_newest_first_and_keeps_pinned_models(
    redis_url: str, redis_prefix: str
) -> None:
    from datetime import UTC, datetime

    store = RedisModelStore(redis_url, redis_prefix, keep=2, history_keep=6)
    sources = {2: "promotion", 4: "rollback"}

    def release(version: int) -> ModelRelease:
        return ModelRelease(
            event_id=f"{HOME}-v{version}",
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            decision_point=HOME,
            version=version,
            vw_args=VW_ARGS,
            model_location="",
            source=sources.get(version, "online"),  # type: ignore[arg-type]
        )

    try:
        assert await store.history(HOME) == []
        for version in range(1, 6):
            await store.publish(release(version), bytes([version]))
        assert await store.pin(HOME, 5) is True
        assert await store.pin(HOME, 1) is False  # pruned already
        for version in range(6, 9):
            await store.publish(release(version), bytes([version]))
        history = await store.history(HOME)
        kept = {h.release.version: h.model_kept for h in history}
        assert list(kept) == [8, 7, 6, 5, 4, 3]  # newest first, trimmed to history_keep
        assert [v for v, k in kept.items() if k] == [8, 7, 5, 4]
        assert [h.release.version for h in await store.history(HOME, limit=2)] == [8, 7]
        assert await store.load(history[3].release) == bytes([5])
        assert await store.load(release(2)) == bytes([2])  # pinned, out of the listed history
    finally:
        await store.close()
