"""Promotion and rollback against a running ``learnloop serve``: the commands are other
processes, the API swaps to the promoted model within seconds, the online learner
continues from it, and a rollback serves the earlier model's bytes again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from learnloop.eventlog import Streams
from learnloop.modelstore import LocalModelStore
from runtime.processes import ServiceProcess
from schemas import JoinedExample
from schemas.dsjson import to_dsjson
from tests.integration.test_serve_crash import logged, wait_for_joined
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.integration

START = datetime.now(UTC) - timedelta(hours=2)
NEW_ARGS = "--cb_explore_adf --squarecb -q ca"
DP = "home_products"


def learnloop(*args: str) -> dict[str, Any]:
    """Run a ``learnloop`` command in its own process; its ``--json`` output."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def served_model(url: str, until: Any, timeout: float = 15.0) -> dict[str, Any]:
    """``GET /v1/models/home_products`` once ``until(model)`` holds (bounded)."""
    model: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(int(timeout / 0.1)):
            model = (await client.get(f"/v1/models/{DP}")).json()
            if until(model):
                return model
            await asyncio.sleep(0.1)
    raise AssertionError(f"the API never served the expected model; last {model}")


async def test_promote_serve_continue_and_roll_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"LEARNLOOP_RELEASE_EVERY_EXAMPLES": "50"}
    service = ServiceProcess(data, workers=1, env=env, log_file=tmp_path / "serve.log").start()
    traffic = Traffic(service.url, START)
    try:
        # 1. The online learner has released everything the join emitted so far.
        await traffic.run(0, 200, concurrency=16)
        await traffic.tick(traffic.sent)
        joined = await wait_for_joined(data, service.url, 200)
        before = await served_model(service.url, lambda m: m["examples_learned"] == len(joined))
        default_args = before["vw_args"]

        # 2. Promote a model trained on those examples (a DSJson export) with other args.
        dataset = tmp_path / "joined.dsjson"
        dataset.write_text("".join(to_dsjson(e) + "\n" for e in joined))
        promoted = learnloop(
            "offline", "promote", str(dataset), "--decision-point", DP,
            "--vw-args", NEW_ARGS, "--by", "ana", "--data-dir", str(data),
        )  # fmt: skip
        release = promoted["release"]
        assert release["source"] == "promotion" and release["version"] == before["version"] + 1
        assert release["examples_learned"] == len([e for e in joined if e.decision.activated])
        assert promoted["audit"]["by"] == "ana"
        assert promoted["audit"]["vw_args_before"] == default_args

        # 3. The API serves it within a few seconds.
        serving = await served_model(service.url, lambda m: m["version"] == release["version"])
        assert serving["vw_args"] == NEW_ARGS
        assert serving["examples_learned"] == release["examples_learned"]

        # 4. The online learner continues from it: promoted examples + the new ones.
        later = Traffic(service.url, START + timedelta(seconds=120))  # after the first tick
        await later.run(200, 400, concurrency=16)
        await later.tick(later.sent)
        everything = await wait_for_joined(data, service.url, 400)
        new = len(everything) - len(joined)
        assert new == 200
        after = await served_model(
            service.url,
            lambda m: m["examples_learned"] == release["examples_learned"] + new,
            timeout=30,
        )
        assert after["version"] > release["version"] and after["vw_args"] == NEW_ARGS
        assert after["metrics"]["fresh_models"] == 0

        # 5. Roll back to the online release before the promotion: its bytes are served.
        rolled = learnloop(
            "models", "rollback", DP, "--to", str(before["version"]), "--data-dir", str(data)
        )["release"]
        assert rolled["source"] == "rollback" and rolled["restores_version"] == before["version"]
        back = await served_model(service.url, lambda m: m["version"] == rolled["version"])
        assert back["vw_args"] == default_args
        assert back["examples_learned"] == before["examples_learned"]

        listing = learnloop("models", "list", DP, "--data-dir", str(data))
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()

    store = LocalModelStore(data / "models")
    history = {h.release.version: h.release for h in await store.history(DP)}
    assert await store.load(history[rolled["version"]]) == await store.load(
        history[before["version"]]
    )
    versions = [r["release"]["version"] for r in listing["releases"]]
    assert versions == sorted(versions, reverse=True) and versions[0] == rolled["version"]
    sources = {r["release"]["version"]: r["release"]["source"] for r in listing["releases"]}
    assert sources[release["version"]] == "promotion" and sources[after["version"]] == "online"
    assert [a["action"] for a in listing["audit"]] == ["rollback", "promote"]
    assert all(isinstance(JoinedExample.model_validate_json(v), JoinedExample)
               for v in (await logged(data, Streams.JOINED))[:1])  # fmt: skip
