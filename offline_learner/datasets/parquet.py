"""Joined examples as a Parquet dataset directory that pandas, polars and DuckDB read directly.

Layout (hive partitioning, by decision point and the decision's UTC day)::

    <dir>/decision_point=<name>/date=YYYY-MM-DD/part-<seq>-<writer>.parquet

Columns are flat enough for SQL (``event_id``, ``timestamp`` = decision time,
``persona``, ``chosen_action``, ``probability`` = logging propensity of the chosen
action, ``reward``, ...) plus JSON columns that keep the rest (``context_json``,
``actions_json``, ``outcomes_json``), so reading a row back gives exactly the
:class:`JoinedExample` that was written.

Event order on reading: partitions in (decision point, day) order, files in the order
they were written, rows in stored order. Writing keeps memory bounded: at most
``row_group_size`` rows are buffered over all partitions; when the buffer is full the
largest partition's rows are written as one row group.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from learnloop.errors import InvalidInput
from schemas.events import JoinedExample
from schemas.features import NAME_PATTERN, Action

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

ROW_GROUP_SIZE = 20_000
READ_BATCH_SIZE = 4_096
_PARTITION = re.compile(r"^decision_point=(?P<point>[^/]+)$")
_DAY = re.compile(r"^date=(?P<day>\d{4}-\d{2}-\d{2})$")
_NAME = re.compile(NAME_PATTERN)


def arrow_schema() -> pa.Schema:
    """The columns of every part file (``decision_point`` and ``date`` are the partition
    directories, not columns of the files)."""
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("event_id", pa.string()),
            ("timestamp", utc),
            ("persona", pa.string()),
            ("user_id", pa.string()),
            ("session_id", pa.string()),
            ("chosen_action", pa.string()),
            ("chosen_index", pa.int32()),
            ("probability", pa.float64()),
            ("reward", pa.float64()),
            ("close_reason", pa.string()),
            ("late_outcomes", pa.int32()),
            ("model_version", pa.string()),
            ("arm", pa.string()),
            ("activated", pa.bool_()),
            ("action_ids", pa.list_(pa.string())),
            ("probabilities", pa.list_(pa.float64())),
            ("context_json", pa.string()),
            ("actions_json", pa.string()),
            ("outcomes_json", pa.string()),
            ("closed_at", utc),
            ("decision_event_id", pa.string()),  # null when equal to event_id (always, today)
            ("traceparent", pa.string()),
            ("decision_traceparent", pa.string()),
            ("schema_version", pa.int32()),
        ]
    )


def to_row(example: JoinedExample) -> dict[str, Any]:
    """One example as a row of :func:`arrow_schema`."""
    decision = example.decision
    context = decision.context
    return {
        "event_id": example.event_id,
        "timestamp": decision.timestamp,
        "persona": decision.persona,
        "user_id": context.user_id,
        "session_id": context.session_id,
        "chosen_action": decision.chosen_action,
        "chosen_index": decision.chosen_index,
        "probability": decision.chosen_probability,
        "reward": example.reward,
        "close_reason": example.close_reason,
        "late_outcomes": example.late_outcomes,
        "model_version": decision.model_version,
        "arm": decision.arm,
        "activated": decision.activated,
        "action_ids": [action.id for action in decision.actions],
        "probabilities": list(decision.probabilities),
        "context_json": orjson.dumps(context.features).decode(),
        "actions_json": orjson.dumps([a.model_dump() for a in decision.actions]).decode(),
        "outcomes_json": orjson.dumps(
            [o.model_dump(mode="json") for o in example.outcomes]
        ).decode(),
        "closed_at": example.timestamp,
        "decision_event_id": None if decision.event_id == example.event_id else decision.event_id,
        "traceparent": example.traceparent,
        "decision_traceparent": decision.traceparent,
        "schema_version": example.schema_version,
    }


@functools.lru_cache(maxsize=4096)
def _actions(text: str) -> tuple[Action, ...]:
    """A stored actions list, validated once per distinct list: most decisions offer one
    of a few lists, and validating it was a third of the decode. The models are frozen,
    so examples can share them (pydantic keeps model instances as they are)."""
    return tuple(Action.model_validate(a) for a in orjson.loads(text))


def from_row(row: dict[str, Any], decision_point: str) -> JoinedExample:
    """The example a row of :func:`arrow_schema` was made from."""
    decision = {
        "event_id": row["decision_event_id"] or row["event_id"],
        "timestamp": row["timestamp"],
        "decision_point": decision_point,
        "context": {
            "user_id": row["user_id"],
            "session_id": row["session_id"],
            "features": orjson.loads(row["context_json"]),
        },
        "persona": row["persona"],
        "actions": list(_actions(row["actions_json"])),
        "chosen_index": row["chosen_index"],
        "probabilities": row["probabilities"],
        "model_version": row["model_version"],
        "arm": row["arm"],
        "activated": row["activated"],
        "traceparent": row["decision_traceparent"],
        "schema_version": row["schema_version"],
    }
    return JoinedExample.model_validate(
        {
            "event_id": row["event_id"],
            "timestamp": row["closed_at"],
            "decision": decision,
            "outcomes": orjson.loads(row["outcomes_json"]),
            "reward": row["reward"],
            "close_reason": row["close_reason"],
            "late_outcomes": row["late_outcomes"],
            "traceparent": row["traceparent"],
            "schema_version": row["schema_version"],
        }
    )


def part_files(
    directory: Path, decision_point: str | None = None, days: tuple[str, str] | None = None
) -> list[tuple[str, Path]]:
    """(decision point, file) of every part file, in (decision point, day, file) order;
    only one decision point's and days in ``days`` (first, last; ISO dates) when given,
    so a filtered read skips the other partitions' files altogether."""
    if not directory.is_dir():
        raise InvalidInput(
            f"no Parquet dataset at {directory}: expected a directory written by "
            "`learnloop dataset export` or Dataset.write_parquet"
        )
    found: list[tuple[str, str, str, Path]] = []
    for point_dir in directory.iterdir():
        match = _PARTITION.match(point_dir.name)
        if not match or not point_dir.is_dir():
            continue
        if decision_point is not None and match["point"] != decision_point:
            continue
        for day_dir in point_dir.iterdir():
            day = _DAY.match(day_dir.name)
            if not day or not day_dir.is_dir():
                continue
            if days is not None and not days[0] <= day["day"] <= days[1]:
                continue
            for file in day_dir.glob("*.parquet"):
                found.append((match["point"], day["day"], file.name, file))
    found.sort(key=lambda item: item[:3])
    return [(point, file) for point, _, _, file in found]


def read_examples(
    directory: Path,
    batch_size: int = READ_BATCH_SIZE,
    decision_point: str | None = None,
    days: tuple[str, str] | None = None,
) -> Iterator[JoinedExample]:
    """Stream the examples of a dataset directory, one record batch in memory at a time
    (only the partitions :func:`part_files` selects)."""
    import pyarrow.parquet as pq

    for point, file in part_files(directory, decision_point, days):
        parquet = pq.ParquetFile(file)
        missing = set(arrow_schema().names) - set(parquet.schema_arrow.names)
        if missing:
            raise InvalidInput(
                f"{file} lacks the columns {', '.join(sorted(missing))}: it was not written "
                "by learnloop; import it as a table instead (`learnloop dataset import`)"
            )
        for batch in parquet.iter_batches(batch_size=batch_size):
            for row in _rows(batch):
                yield from_row(row, point)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    """The batch's rows as dicts, converted column by column (``RecordBatch.to_pylist``
    row by row was most of the decode; its tz-aware timestamps alone cost ~4 µs each,
    microseconds since the epoch plus a timedelta give the same instant far cheaper;
    zone-less timestamps are left to pyarrow, so validation sees them as before)."""
    import pyarrow as pa

    names = batch.schema.names
    columns: list[list[Any]] = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz is not None:
            micros = column.cast(pa.int64()).to_pylist()
            columns.append([None if v is None else _EPOCH + v * _MICROSECOND for v in micros])
        else:
            columns.append(column.to_pylist())
    for values in zip(*columns, strict=True):
        yield dict(zip(names, values, strict=True))


class ParquetDatasetWriter:
    """Writes examples into a dataset directory, one rolling file per partition.

    Rows are buffered per partition, at most ``row_group_size`` in all; a full buffer
    writes its largest partition as one row group. :meth:`close` flushes the rest.
    Use as a context manager.
    """

    def __init__(self, directory: Path, row_group_size: int = ROW_GROUP_SIZE) -> None:
        if row_group_size < 1:
            raise InvalidInput(f"row_group_size must be at least 1, got {row_group_size}")
        if directory.exists() and any(directory.rglob("*.parquet")):
            raise InvalidInput(
                f"{directory} already holds Parquet files: write a dataset into a new or "
                "empty directory"
            )
        self.directory = directory
        self.row_group_size = row_group_size
        self._tag = uuid.uuid4().hex[:8]
        self._sequence = 0
        self._buffers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self._buffered = 0
        self.rows = 0

    def write(self, example: JoinedExample) -> None:
        point = example.decision.decision_point
        if not _NAME.match(point):
            raise InvalidInput(
                f"decision point {point!r} of example {example.event_id} cannot name a "
                "partition directory: use letters, digits, '_', '.' or '-'"
            )
        day = example.decision.timestamp.astimezone(UTC).date().isoformat()
        key = (point, day)
        buffer = self._buffers.setdefault(key, [])
        buffer.append(to_row(example))
        self.rows += 1
        self._buffered += 1
        if self._buffered >= self.row_group_size:
            self._flush(max(self._buffers, key=lambda k: len(self._buffers[k])))

    def _flush(self, key: tuple[str, str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._buffers.pop(key, [])
        if not rows:
            return
        self._buffered -= len(rows)
        writer = self._writers.get(key)
        if writer is None:
            point, day = key
            folder = self.directory / f"decision_point={point}" / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{self._sequence:05d}-{self._tag}.parquet"
            self._sequence += 1
            writer = self._writers[key] = pq.ParquetWriter(path, arrow_schema())
        writer.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()))

    def close(self) -> None:
        """Write what is buffered and close every file."""
        for key in list(self._buffers):
            self._flush(key)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> ParquetDatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_examples(
    examples: Iterable[JoinedExample],
    directory: Path,
    *,
    row_group_size: int = ROW_GROUP_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``examples`` as a dataset directory; returns the number of rows.

    ``progress`` is called with the number of rows written so far every 1,000 rows.
    """
    with ParquetDatasetWriter(directory, row_group_size) as writer:
        for example in examples:
            writer.write(example)
            if progress is not None and writer.rows % 1000 == 0:
                progress(writer.rows)
    if progress is not None:
        progress(writer.rows)
    return writer.rows
