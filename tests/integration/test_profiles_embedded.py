"""Profiles in a real ``learnloop serve``: real-time updates from decisions and outcomes,
exactly once across a kill -9 of the loop process; bulk PUT, GET and DELETE."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.processes import ServiceProcess
from tests.integration.profile_traffic import USERS, ProfileTraffic, observed

pytestmark = pytest.mark.integration

START = datetime.now(UTC) - timedelta(hours=2)


def profiles(url: str) -> dict[str, dict[str, Any] | None]:
    with httpx.Client(base_url=url) as client:
        return {
            f"user{u}": client.get(f"/v1/users/user{u}").json()["profile"] for u in range(USERS)
        }


def wait_for(url: str, traffic: ProfileTraffic, timeout: float = 60.0) -> dict[str, Any]:
    """Poll until every user's profile shows what the traffic implies; fail on a count
    beyond it (an outcome applied twice) at once."""
    deadline = time.monotonic() + timeout
    want = {f"user{u}": traffic.expected(f"user{u}") for u in range(USERS)}
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = {u: observed(p) for u, p in profiles(url).items()}
        for user, fields in got.items():
            if fields is not None:
                assert all(fields[k] <= want[user][k] for k in fields), (user, fields, want[user])
        if got == want:
            return got
        time.sleep(0.1)
    raise AssertionError(f"profiles never caught up: {got} != {want}")


async def test_kill_9_of_the_loop_mid_stream_counts_every_interaction_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    service = ServiceProcess(data, workers=1, log_file=tmp_path / "serve.log").start()
    traffic = ProfileTraffic(service.url, START)
    try:
        await traffic.run(0, 200)
        await asyncio.to_thread(wait_for, service.url, traffic)
        load = asyncio.create_task(traffic.run(200, 700))
        while sum(traffic.views.values()) < 400:
            await asyncio.sleep(0.01)
        killed = service.kill_child("loop")
        await load  # the API keeps answering while the loop is down
        await asyncio.to_thread(service.wait_restarted, "loop", killed)
        final = await asyncio.to_thread(wait_for, service.url, traffic)
        await asyncio.sleep(1.0)  # nothing more arrives after it caught up
        assert {u: observed(p) for u, p in profiles(service.url).items()} == final
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()
    assert sum(f["detail_views"] for f in final.values()) == 700


async def test_put_get_delete_through_a_real_service(tmp_path: Path) -> None:
    serve = ServiceProcess(tmp_path / "data", workers=2, log_file=tmp_path / "serve.log")
    with serve, httpx.Client(base_url=serve.url) as client:
        put = client.put(
            "/v1/users/shop-42/profile",
            json={"orders": 12, "monetary": 1800.0, "recruits": 4, "orders_for_others": 9},
        )
        assert put.status_code == 200, put.text
        # any worker reads it (one SQLite file)
        for _ in range(6):
            view = client.get("/v1/users/shop-42", headers={"Connection": "close"}).json()
            assert view["profile"]["orders"] == 12 and view["profile"]["recruits"] == 4
        assert client.delete("/v1/users/shop-42").json()["deleted"] is True
        assert client.get("/v1/users/shop-42").json()["profile"] is None
