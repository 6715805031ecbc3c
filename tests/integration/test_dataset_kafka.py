"""Dataset.from_kafka against the real tansu broker: the joined topic read to its end."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnloop.errors import InvalidInput
from learnloop.kafka.codec import to_record
from learnloop.kafka.connect import start_producer_for
from learnloop.kafka.topics import TopicNames, ensure_kafka_topics
from learnloop.settings import Settings
from offline_learner.dataset import Dataset
from tests.unit.dataset_examples import examples

pytestmark = pytest.mark.integration


async def _produce(settings: Settings, n: int) -> None:
    await ensure_kafka_topics(settings)
    producer = await start_producer_for(settings)
    try:
        for example in examples(n):
            record = to_record(example, TopicNames(settings.topic_prefix))
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
    finally:
        await producer.stop()


async def test_reads_the_joined_topic_to_its_end(kafka_settings: Settings) -> None:
    await _produce(kafka_settings, 25)
    topic = TopicNames(kafka_settings.topic_prefix).topic("joined")
    ds = Dataset.from_kafka(kafka_settings.kafka_bootstrap, topic, timeout_seconds=10)
    rows = list(ds)
    assert sorted(r.event_id for r in rows) == sorted(e.event_id for e in examples(25))
    by_id = {r.event_id: r for r in rows}
    assert all(by_id[e.event_id] == e for e in examples(25))
    # keyed by decision point: each point's rows come in produced order
    home = [r.event_id for r in rows if r.decision.decision_point == "home"]
    assert home == [e.event_id for e in examples(25) if e.decision.decision_point == "home"]
    # re-iterable, and filtered by decision point
    checkout = Dataset.from_kafka(
        kafka_settings.kafka_bootstrap, topic, decision_point="checkout", timeout_seconds=10
    )
    assert checkout.count() == 9 and ds.count() == 25
    # stopping early releases the reader
    assert len(list(ds.take(3))) == 3


async def test_a_missing_topic_is_named(kafka_settings: Settings) -> None:
    ds = Dataset.from_kafka(kafka_settings.kafka_bootstrap, "no-such-topic", timeout_seconds=5)
    with pytest.raises(InvalidInput, match="no topic 'no-such-topic'"):
        list(ds)


async def test_cli_export_from_kafka(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from runtime.cli import cli

    await _produce(kafka_settings, 12)
    monkeypatch.setenv("LEARNLOOP_KAFKA_BOOTSTRAP", kafka_settings.kafka_bootstrap)
    monkeypatch.setenv("LEARNLOOP_TOPIC_PREFIX", kafka_settings.topic_prefix)
    monkeypatch.setenv("LEARNLOOP_CONNECT_TIMEOUT_SECONDS", "10")
    out = tmp_path / "ds"
    args = ["dataset", "export", str(out), "--backend", "kafka", "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 12
    assert Dataset.from_parquet(out).count() == 12
