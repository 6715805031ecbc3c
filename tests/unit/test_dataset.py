"""Dataset: Parquet round trip, DuckDB reading the directory, the event-log source,
views (filter, split, batches) and bounded memory."""

from __future__ import annotations

import asyncio
import tracemalloc
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from learnloop.errors import InvalidInput
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.kafka.codec import to_append
from offline_learner.dataset import Dataset
from tests.unit.dataset_examples import START, examples, joined


def by_id(rows: Dataset | list) -> list[dict]:
    return sorted((row.model_dump() for row in rows), key=lambda row: row["event_id"])


def test_parquet_round_trip_is_lossless(tmp_path: Path) -> None:
    source = Dataset.from_examples(examples(40))
    assert source.write_parquet(tmp_path / "ds", row_group_size=7) == 40
    back = Dataset.from_parquet(tmp_path / "ds")
    assert by_id(back) == by_id(source)
    assert [e.event_id for e in back] == [e.event_id for e in back]  # re-iterable, same order


def test_parquet_layout_is_hive_partitioned_by_point_and_day(tmp_path: Path) -> None:
    Dataset.from_examples(examples(30)).write_parquet(tmp_path / "ds")
    folders = {
        p.parent.relative_to(tmp_path / "ds").as_posix()
        for p in (tmp_path / "ds").rglob("*.parquet")
    }
    assert folders == {
        "decision_point=checkout/date=2026-03-01",
        "decision_point=checkout/date=2026-03-02",
        "decision_point=home/date=2026-03-01",
        "decision_point=home/date=2026-03-02",
    }
    # event order: partitions in (decision point, day) order, rows in stored order
    back = list(Dataset.from_parquet(tmp_path / "ds"))
    keys = [(e.decision.decision_point, e.decision.timestamp.date()) for e in back]
    assert keys == sorted(keys)


def test_duckdb_reads_the_directory_and_agrees_with_describe(tmp_path: Path) -> None:
    ds = Dataset.from_examples(examples(50))
    ds.write_parquet(tmp_path / "ds", row_group_size=9)
    summary = Dataset.from_parquet(tmp_path / "ds").describe()
    glob = str(tmp_path / "ds" / "**" / "*.parquet")
    con = duckdb.connect()
    rows, mean, pmin, pmax, first, last = con.execute(
        "SELECT count(*), avg(reward), min(probability), max(probability), "
        "min(timestamp), max(timestamp) FROM read_parquet(?, hive_partitioning = true)",
        [glob],
    ).fetchone()
    assert rows == summary.rows == 50
    assert mean == pytest.approx(summary.reward_mean)
    assert (pmin, pmax) == (summary.propensity_min, summary.propensity_max)
    assert first == summary.first and last == summary.last
    per_point = dict(
        con.execute(
            "SELECT decision_point, count(*) FROM read_parquet(?, hive_partitioning = true) "
            "GROUP BY 1",
            [glob],
        ).fetchall()
    )
    assert per_point == summary.decision_points == {"checkout": 17, "home": 33}
    chosen = dict(
        con.execute(
            "SELECT action_ids[chosen_index + 1], count(*) FROM read_parquet(?) GROUP BY 1", [glob]
        ).fetchall()
    )
    assert chosen == summary.actions
    # pyarrow's dataset reader (what pandas.read_parquet uses) sees the partition columns
    import pyarrow.dataset as pds

    table = pds.dataset(tmp_path / "ds", partitioning="hive").to_table()
    assert table.num_rows == 50
    assert sorted(set(table.column("decision_point").to_pylist())) == ["checkout", "home"]


def test_writing_into_a_used_directory_is_refused(tmp_path: Path) -> None:
    Dataset.from_examples(examples(3)).write_parquet(tmp_path / "ds")
    with pytest.raises(InvalidInput, match="already holds Parquet"):
        Dataset.from_examples(examples(3)).write_parquet(tmp_path / "ds")


def test_missing_parquet_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no Parquet dataset"):
        Dataset.from_parquet(tmp_path / "nothing")


def test_event_log_source_filters_point_and_decision_time(tmp_path: Path) -> None:
    async def fill() -> None:
        log = SqliteEventLog(tmp_path / "log")
        try:
            await log.append([to_append(e) for e in examples(30)])
        finally:
            await log.close()

    asyncio.run(fill())
    everything = Dataset.from_event_log(tmp_path)
    assert [e.event_id for e in everything] == [f"ev-{i}" for i in range(30)]
    assert by_id(everything) == by_id(examples(30))
    start, end = START + timedelta(minutes=50), START + timedelta(minutes=150)
    window = Dataset.from_event_log(tmp_path, decision_point="home", start=start, end=end)
    assert [e.event_id for e in window] == [f"ev-{i}" for i in range(5, 15) if i % 3]


def test_event_log_missing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no embedded event log"):
        list(Dataset.from_event_log(tmp_path))


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no time zone"):
        Dataset.from_event_log(tmp_path, start=START.replace(tzinfo=None))


def test_split_filter_and_batches() -> None:
    ds = Dataset.from_examples(examples(10))
    earlier, later = ds.split(0.7)
    assert [e.event_id for e in earlier] == [f"ev-{i}" for i in range(7)]
    assert [e.event_id for e in later] == [f"ev-{i}" for i in range(7, 10)]
    assert [len(b) for b in ds.batches(4)] == [4, 4, 2]
    assert ds.filter(decision_point="checkout").count() == 4
    assert ds.filter(end=START + timedelta(minutes=20)).count() == 2
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        ds.split(1.0)


def test_a_one_shot_iterator_is_read_once() -> None:
    ds = Dataset.from_examples(joined(i) for i in range(3))
    assert ds.count() == 3
    with pytest.raises(InvalidInput, match="one-shot"):
        ds.count()


def test_describe_on_an_empty_dataset() -> None:
    summary = Dataset.from_examples([]).describe()
    assert summary.rows == 0 and summary.reward_mean is None and summary.first is None
    assert summary.to_dict()["rows"] == 0


def _big_parquet(directory: Path, n: int) -> None:
    """``n`` rows of one example, written with pyarrow directly (fast to generate)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from offline_learner.datasets.parquet import arrow_schema, to_row

    one = pa.Table.from_pylist([to_row(joined(1))], schema=arrow_schema())
    table = one.take(pa.array([0] * n)).set_column(
        0, "event_id", pa.array([f"big-{i}" for i in range(n)])
    )
    folder = directory / "decision_point=home" / "date=2026-03-01"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=5_000)


def test_iterating_a_parquet_dataset_keeps_memory_bounded(tmp_path: Path) -> None:
    """Streaming 5k rows peaks below what holding a tenth of them takes: memory does not
    grow with the dataset. (5k, not 200k: tracemalloc slows row decoding about 9x.)"""
    import pyarrow as pa

    n = 5_000
    _big_parquet(tmp_path / "big", n)
    ds = Dataset.from_parquet(tmp_path / "big", batch_size=200)
    tracemalloc.start()
    try:
        held = list(ds.take(n // 10))
        holding_a_tenth, _ = tracemalloc.get_traced_memory()
        del held
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        count = sum(1 for _ in ds)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak {peak - baseline} B streaming {n} rows; a tenth held {holding_a_tenth} B")
    assert count == n
    assert peak - baseline < holding_a_tenth / 2
    # Arrow's own buffers (not traced by tracemalloc): at most a few row groups at a time
    assert pa.default_memory_pool().max_memory() < 64 * 1024 * 1024


def test_filtered_parquet_reads_only_the_wanted_partitions(tmp_path: Path) -> None:
    Dataset.from_examples(examples(30)).write_parquet(tmp_path / "ds")
    start, end = START + timedelta(minutes=100), START + timedelta(minutes=200)
    wanted = Dataset.from_examples(examples(30)).filter("home", start, end)
    read = Dataset.from_parquet(tmp_path / "ds", decision_point="home", start=start, end=end)
    assert [e.event_id for e in read] == [e.event_id for e in wanted]
    # a day outside the range is not opened: a broken file there goes unnoticed
    day_one = next((tmp_path / "ds" / "decision_point=home" / "date=2026-03-01").glob("*.parquet"))
    day_one.write_bytes(b"not parquet")
    late = Dataset.from_parquet(
        tmp_path / "ds", decision_point="home", start=START + timedelta(hours=3)
    )
    assert late.count() == len(
        [
            e
            for e in examples(30)
            if e.decision.decision_point == "home"
            and e.decision.timestamp >= START + timedelta(hours=3)
        ]
    )
    assert Dataset.open(tmp_path / "ds", "checkout").count() == 10
