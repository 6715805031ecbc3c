"""Profiles in the distributed mode: ``learnloop serve --backend kafka`` and ``learnloop join``
(which also runs the profile consumer) on tansu and redis-server; a kill -9 of the join
worker mid-stream, a new one, and every interaction counted once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from learnloop.settings import Settings
from runtime.processes import LearnloopProcess, ServiceProcess, settings_env
from tests.integration.profile_traffic import ProfileTraffic, observed
from tests.integration.test_profiles_embedded import START, profiles, wait_for

pytestmark = pytest.mark.integration


async def test_kill_9_of_the_join_worker_counts_every_interaction_once(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(
        kafka_settings.model_copy(
            update={"kafka_session_timeout_ms": 1000, "kafka_heartbeat_interval_ms": 200}
        )
    )
    api = ServiceProcess(env=env, log_file=tmp_path / "api.log", workers=1)
    workers = [LearnloopProcess("join", env=env, log_file=tmp_path / "join.log")]
    try:
        api.start()  # creates the topics
        workers[0].start()
        traffic = ProfileTraffic(api.url, START)
        await traffic.run(0, 120)
        await asyncio.to_thread(wait_for, api.url, traffic)

        load = asyncio.create_task(traffic.run(120, 400))
        while sum(traffic.views.values()) < 250:
            await asyncio.sleep(0.01)
        workers[0].kill()
        await load
        workers.append(LearnloopProcess("join", env=env, log_file=tmp_path / "join.log").start())
        final = await asyncio.to_thread(wait_for, api.url, traffic, 90.0)
        await asyncio.sleep(1.0)
        assert {u: observed(p) for u, p in profiles(api.url).items()} == final
        assert sum(f["detail_views"] for f in final.values()) == 400

        # bulk and forget go to the same Redis profiles
        with httpx.Client(base_url=api.url) as client:
            put = client.put("/v1/users/user1/profile", json={"recruits": 6})
            assert put.status_code == 200 and put.json()["recruits"] == 6
            assert put.json()["detail_views"] == final["user1"]["detail_views"]
            assert client.delete("/v1/users/user1").json()["deleted"] is True
            assert client.get("/v1/users/user1").json()["profile"] is None
    finally:
        codes = [p.stop() for p in (api, workers[-1])]
    assert codes == [0, 0], "\n\n".join(p.log_tail() for p in (api, workers[-1]))
