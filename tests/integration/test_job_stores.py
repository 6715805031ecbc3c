"""The stores a Personalizer job process opens, on both backends: what one run writes the
next one reads, and each store is closed with its run (a real redis-server for the
kafka backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnloop.settings import Settings
from runtime.job_stores import open_decision_points, open_personalizer_store
from schemas.config import DecisionPointConfig

pytestmark = pytest.mark.integration


async def _round_trip(settings: Settings) -> None:
    config = DecisionPointConfig.model_validate(
        {"name": "jobs", "actions": [{"id": "x"}, {"id": "y"}]}
    )
    async with open_decision_points(settings) as points:
        await points.put(config)
    async with open_decision_points(settings) as points:
        assert await points.get("jobs") == config
    async with open_personalizer_store(settings) as store:
        await store.put("jobs", "state", "probe", {"n": 1})
    async with open_personalizer_store(settings) as store:
        assert await store.get("jobs", "state", "probe") == {"n": 1}


async def test_embedded_job_stores_are_the_files_under_the_data_dir(tmp_path: Path) -> None:
    await _round_trip(Settings(data_dir=tmp_path))


async def test_kafka_backend_job_stores_are_in_redis(kafka_settings: Settings) -> None:
    await _round_trip(kafka_settings)
