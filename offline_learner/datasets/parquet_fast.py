"""A trusted fast reader of learnloop's own Parquet datasets, for the replay.

Decoding a row into a :class:`~schemas.events.JoinedExample` is mostly pydantic
validating the context features and outcomes again, yet a dataset directory's rows were
validated when they were written (:func:`~offline_learner.datasets.parquet.write_examples`
goes through ``JoinedExample``). So the replay reads only the columns it needs, column
by column, and builds the VW lines straight from the stored ``context_json`` and
``actions_json`` with the decision service's own dict-level featurizer
(:func:`~learnloop.featurizer.shared_line_of`, :func:`~learnloop.featurizer.action_line_of`),
never building a model. What it trusts is checked: every file's columns must have
exactly the types learnloop writes (a file changed by another tool is refused), and a
JSON column parses with ``orjson``, which keeps ``true`` and ``1`` apart as the models do.

Lines are remembered per distinct actions JSON (most decisions offer one of a few lists)
and per distinct (persona, context JSON); both memories are bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from learnloop.errors import InvalidInput
from learnloop.featurizer import action_line_of, shared_line_of
from offline_learner.datasets.parquet import arrow_schema, part_files
from offline_learner.datasets.summary import SummaryAccumulator

if TYPE_CHECKING:
    import pyarrow as pa

COLUMNS = (
    "event_id",
    "timestamp",
    "persona",
    "chosen_index",
    "reward",
    "close_reason",
    "activated",
    "probabilities",
    "context_json",
    "actions_json",
)
"""What the replay and its dataset summary read of a row (the chosen action's id and the
action ids come from ``actions_json``, which they were written from)."""

MAX_CACHED = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ParquetSource:
    """Which rows of a dataset directory: what ``Dataset.from_parquet`` was given."""

    directory: Path
    batch_size: int
    decision_point: str | None = None
    days: tuple[str, str] | None = None
    start: datetime | None = None
    end: datetime | None = None


def source_of(examples: object) -> ParquetSource | None:
    """The :class:`ParquetSource` when ``examples`` is exactly a ``Dataset.from_parquet``
    (no views on top of it: those keep the validated path), else ``None``."""
    from offline_learner.dataset import Dataset  # the dataset module imports this one

    return examples.parquet if isinstance(examples, Dataset) else None


@dataclass(slots=True)
class Rows:
    """One record batch of a dataset, the columns as Python lists, in stored order.

    ``lines`` are the unlabelled ADF lines (``None`` for a row that was not activated,
    which is never featurized); ``action_ids`` and ``probabilities`` are tuples shared
    between rows that have equal ones.
    """

    decision_point: str
    micros: list[int]
    chosen: list[int]
    rewards: list[float]
    close_reasons: list[str]
    activated: list[bool]
    probabilities: list[tuple[float, ...]]
    action_ids: list[tuple[str, ...]]
    lines: list[list[str] | None]
    event_ids: pa.Array

    def event_id(self, row: int) -> str:
        """A row's event id (read only when an error names it)."""
        return str(self.event_ids[row].as_py())


class SummaryFold:
    """Folds :class:`~offline_learner.datasets.parquet_fast.Rows` into a summary exactly
    as :meth:`SummaryAccumulator.add` folds their examples one by one."""

    def __init__(self, summary: SummaryAccumulator) -> None:
        self.summary = summary
        self._first: int | None = None
        self._last: int | None = None

    def add(self, rows: Rows) -> None:
        acc = self.summary
        n = len(rows.micros)
        acc.rows += n
        acc.decision_points[rows.decision_point] += n
        reward_sum, reward_min, reward_max = acc.reward_sum, acc.reward_min, acc.reward_max
        low, high = acc.propensity_min, acc.propensity_max
        actions, reasons = acc.actions, acc.close_reasons
        for reward, chosen, pmf, ids, reason in zip(
            rows.rewards,
            rows.chosen,
            rows.probabilities,
            rows.action_ids,
            rows.close_reasons,
            strict=True,
        ):
            reward_sum += reward  # in row order, so the float sum is the same
            reward_min = min(reward_min, reward)
            reward_max = max(reward_max, reward)
            mu = pmf[chosen]
            low = min(low, mu)
            high = max(high, mu)
            actions[ids[chosen]] += 1
            reasons[reason] += 1
        acc.reward_sum, acc.reward_min, acc.reward_max = reward_sum, reward_min, reward_max
        acc.propensity_min, acc.propensity_max = low, high
        acc.not_activated += n - sum(rows.activated)
        first, last = min(rows.micros), max(rows.micros)
        self._first = first if self._first is None else min(first, self._first)
        self._last = last if self._last is None else max(last, self._last)
        self.flush()

    def flush(self) -> None:
        """Put the decision-time span into the summary (as aware datetimes)."""
        acc = self.summary
        if self._first is not None and self._last is not None:
            first = _EPOCH + self._first * _MICROSECOND
            last = _EPOCH + self._last * _MICROSECOND
            acc.first = first if acc.first is None or first < acc.first else acc.first
            acc.last = last if acc.last is None or last > acc.last else acc.last


class JsonFeaturizer:
    """VW lines from stored feature JSON, remembered per distinct JSON string."""

    def __init__(self, max_size: int = MAX_CACHED) -> None:
        self.max_size = max_size
        self._shared: dict[tuple[str, str], str] = {}
        self._actions: dict[str, tuple[tuple[str, ...], list[str]]] = {}

    def actions(self, actions_json: str) -> tuple[tuple[str, ...], list[str]]:
        """(action ids, action lines) of a stored actions list."""
        known = self._actions.get(actions_json)
        if known is None:
            if len(self._actions) >= self.max_size:
                self._actions.clear()  # many distinct lists: start over rather than grow
            parsed = orjson.loads(actions_json)
            ids = tuple(str(a["id"]) for a in parsed)
            lines = [action_line_of(a["id"], a.get("features", {})) for a in parsed]
            known = self._actions[actions_json] = (ids, lines)
        return known

    def shared(self, persona: str, context_json: str) -> str:
        """The shared line of a persona and a stored context features object."""
        key = (persona, context_json)
        line = self._shared.get(key)
        if line is None:
            if len(self._shared) >= self.max_size:
                self._shared.clear()
            line = self._shared[key] = shared_line_of(orjson.loads(context_json), persona)
        return line


def check_schema(file: Path, schema: pa.Schema) -> None:
    """Refuse a part file whose :data:`COLUMNS` are missing or typed otherwise than
    learnloop writes them: the fast path trusts those types."""
    expected = arrow_schema()
    for name in COLUMNS:
        want = expected.field(name).type
        index = schema.get_field_index(name)
        if index < 0:
            raise InvalidInput(
                f"{file} lacks the column {name}: it was not written by learnloop; import it "
                "as a table instead (`learnloop dataset import`)"
            )
        got = schema.field(index).type
        if not _same_type(got, want):
            raise InvalidInput(
                f"{file}: column {name} is {got}, learnloop writes {want}; the file was "
                "changed after learnloop wrote it: write it again with "
                "`learnloop dataset export`, or import it as a table (`learnloop dataset import`)"
            )


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    """Whether a stored column reads as learnloop's: the same type, where a list's item
    may have another name (``element``, as other writers call it) and an instant's
    zone another spelling of UTC (the stored values are UTC microseconds either way)."""
    import pyarrow as pa

    if pa.types.is_list(got) and pa.types.is_list(want):
        return bool(got.value_type.equals(want.value_type))
    if pa.types.is_timestamp(got) and pa.types.is_timestamp(want):
        return bool(got.unit == want.unit and got.tz in {"UTC", "utc", "Etc/UTC", "+00:00", "Z"})
    return bool(got.equals(want))


def read_rows(source: ParquetSource, featurizer: JsonFeaturizer | None = None) -> Iterator[Rows]:
    """The rows of ``source``, one record batch at a time, featurized on the way."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache = featurizer or JsonFeaturizer()
    low = None if source.start is None else (source.start - _EPOCH) // _MICROSECOND
    high = None if source.end is None else (source.end - _EPOCH) // _MICROSECOND
    for point, file in part_files(source.directory, source.decision_point, source.days):
        parquet = pq.ParquetFile(file)
        check_schema(file, parquet.schema_arrow)
        for batch in parquet.iter_batches(batch_size=source.batch_size, columns=list(COLUMNS)):
            if low is not None or high is not None:
                batch = _in_range(batch, low, high)
                if batch.num_rows == 0:
                    continue
            yield _decode(point, batch, cache, pa)


def _in_range(batch: pa.RecordBatch, low: int | None, high: int | None) -> pa.RecordBatch:
    """The rows decided in [low, high) microseconds since the epoch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = batch.column("timestamp").cast(pa.int64())
    keep = pa.array([True] * len(micros))
    if low is not None:
        keep = pc.and_(keep, pc.greater_equal(micros, low))
    if high is not None:
        keep = pc.and_(keep, pc.less(micros, high))
    return batch.filter(keep)


def _decode(point: str, batch: pa.RecordBatch, cache: JsonFeaturizer, pa: Any) -> Rows:
    column = batch.column
    personas = column("persona").to_pylist()
    chosen = column("chosen_index").to_pylist()
    activated = column("activated").to_pylist()
    contexts = column("context_json").to_pylist()
    actions = column("actions_json").to_pylist()
    # A list column row by row is slow in pyarrow; its flat values and offsets are not.
    pmf_column = column("probabilities")
    flat = pmf_column.values.to_pylist()
    offsets = pmf_column.offsets.to_pylist()
    pmfs: dict[tuple[float, ...], tuple[float, ...]] = {}
    probabilities = []
    ids_of = []
    lines: list[list[str] | None] = []
    for i, actions_json in enumerate(actions):
        pmf = tuple(flat[offsets[i] : offsets[i + 1]])
        probabilities.append(pmfs.setdefault(pmf, pmf))
        ids, action_lines = cache.actions(actions_json)
        ids_of.append(ids)
        if activated[i]:
            lines.append([cache.shared(personas[i], contexts[i]), *action_lines])
        else:
            lines.append(None)
    return Rows(
        decision_point=point,
        micros=column("timestamp").cast(pa.int64()).to_pylist(),
        chosen=chosen,
        rewards=column("reward").to_pylist(),
        close_reasons=column("close_reason").to_pylist(),
        activated=activated,
        probabilities=probabilities,
        action_ids=ids_of,
        lines=lines,
        event_ids=column("event_id"),
    )
