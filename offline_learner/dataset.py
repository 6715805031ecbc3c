"""One dataset type for logged bandit data: a re-iterable stream of :class:`JoinedExample`.

A :class:`Dataset` describes where rows come from (a factory of iterators), never holds
them: every ``iter(ds)`` opens the source again and streams it in bounded memory, and
two passes give the same rows in the same order. Sources: a learnloop Parquet dataset
directory, the embedded event log, the Kafka ``joined`` topic, DSJson files (learnloop's
own export, VW's CB DSJson, Azure Personalizer logs), flat CSV/Parquet tables with a
:class:`ColumnMapping`, or examples already in memory.

Event order is the source's order: log order (window close) for the event log and
Kafka (per partition, partitions in turn), file order for DSJson and tables, and
partition (decision point, day) then stored order for a Parquet directory.

>>> from datetime import UTC, datetime
>>> from schemas.events import DecisionEvent
>>> from schemas.features import Action, Context
>>> def example(i: int) -> JoinedExample:
...     when = datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC)
...     decision = DecisionEvent(event_id=f"e{i}", timestamp=when, decision_point="home",
...         context=Context(), persona="visitor", actions=[Action(id="a"), Action(id="b")],
...         chosen_index=i % 2, probabilities=[0.5, 0.5], model_version="1")
...     return JoinedExample(event_id=f"e{i}", timestamp=when, decision=decision,
...                          reward=float(i % 2), close_reason="default")
>>> ds = Dataset.from_examples([example(i) for i in range(10)])
>>> earlier, later = ds.split(0.8)
>>> earlier.count(), later.count(), ds.describe().reward_mean
(8, 2, 0.5)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from learnloop.errors import InvalidInput
from offline_learner.datasets.event_log import keep, read_joined
from offline_learner.datasets.parquet import (
    ROW_GROUP_SIZE,
    part_files,
    read_examples,
    write_examples,
)
from offline_learner.datasets.parquet_fast import ParquetSource
from offline_learner.datasets.summary import DatasetSummary, SummaryAccumulator
from offline_learner.datasets.table_mapping import ColumnMapping
from schemas.dsjson import to_dsjson
from schemas.events import JoinedExample

__all__ = ["ColumnMapping", "Dataset", "DatasetSummary"]

DSJSON_SUFFIXES = (".json", ".dsjson", ".jsonl")
Progress = Callable[[int], None]
"""Called with the number of rows done so far (for a progress bar)."""


class Dataset:
    """A re-iterable, streaming source of joined examples in event order.

    Build one with a ``from_*`` constructor; ``open`` is a zero-argument function that
    returns a fresh iterator each time it is called.
    """

    def __init__(
        self,
        open: Callable[[], Iterator[JoinedExample]],
        source: str,
        *,
        parquet: ParquetSource | None = None,
    ) -> None:
        self._open = open
        self.source = source
        self.parquet = parquet
        """What a plain Parquet directory dataset reads (the replay's fast reader reads it
        itself); ``None`` for other sources and for views (``take``, ``filter``...)."""

    def __iter__(self) -> Iterator[JoinedExample]:
        return self._open()

    def __repr__(self) -> str:
        return f"Dataset({self.source!r})"

    # -- sources ----------------------------------------------------------------------------

    @classmethod
    def from_examples(
        cls,
        examples: Iterable[JoinedExample] | Callable[[], Iterable[JoinedExample]],
        source: str = "examples",
    ) -> Dataset:
        """Examples from memory or from a generator function.

        A list (any iterable that can be iterated again) or a zero-argument function
        returning a fresh iterable each call are re-iterable; a one-shot iterator (a
        generator object) can be read once only, and a second pass raises.
        """
        if callable(examples):
            factory = examples
            return cls(lambda: iter(factory()), source)
        if iter(examples) is not examples:
            rows = examples
            return cls(lambda: iter(rows), source)
        used = False

        def once() -> Iterator[JoinedExample]:
            nonlocal used
            if used:
                raise InvalidInput(
                    f"dataset {source!r} came from a one-shot iterator and was already read: "
                    "pass a list or a generator function, or write it with write_parquet "
                    "and read it back"
                )
            used = True
            return iter(examples)

        return cls(once, source)

    @classmethod
    def open(cls, path: Path | str, decision_point: str | None = None) -> Dataset:
        """The dataset at ``path``, whichever kind it is: a Parquet dataset directory, a
        DSJson file (``.json``, ``.dsjson``, ``.jsonl``) or a ``learnloop serve`` data
        directory (its event log); only ``decision_point``'s rows when given (a DSJson
        file's rows are given that decision point, since DSJson does not record one)."""
        where = Path(path)
        if where.is_file() and where.suffix.lower() in DSJSON_SUFFIXES:
            return cls.from_dsjson(where, decision_point or "imported")
        if where.is_dir() and ((where / "log").is_dir() or (where / "events.sqlite").is_file()):
            return cls.from_event_log(where, decision_point=decision_point)
        if where.is_dir():
            return cls.from_parquet(where, decision_point=decision_point)
        raise InvalidInput(
            f"no dataset at {where}: give a Parquet dataset directory (learnloop dataset "
            "export), a DSJson file (.json/.dsjson/.jsonl) or a learnloop data directory; "
            "import CSV and other tables with `learnloop dataset import`"
        )

    @classmethod
    def from_parquet(
        cls,
        directory: Path | str,
        batch_size: int = 4_096,
        *,
        decision_point: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Dataset:
        """A dataset directory written by :meth:`write_parquet` or ``learnloop dataset``;
        optionally one decision point and a decision-time range (``end`` exclusive), which
        skip the other partitions' files without opening them."""
        path = Path(directory)
        _check_range(start, end)
        part_files(path)  # fail now on a missing directory, not at the first pass
        days = None
        if start is not None or end is not None:
            days = (
                start.astimezone(UTC).date().isoformat() if start else "0000-00-00",
                end.astimezone(UTC).date().isoformat() if end else "9999-99-99",
            )

        opener = partial(_parquet_rows, path, batch_size, decision_point, days, start, end)
        where = ParquetSource(path, batch_size, decision_point, days, start, end)
        return cls(opener, f"parquet:{path}", parquet=where)

    @classmethod
    def from_event_log(
        cls,
        data_dir: Path | str,
        decision_point: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Dataset:
        """The joined examples of the embedded log under ``data_dir`` (``learnloop serve``'s
        data directory), optionally one decision point and a decision-time range
        (``start`` inclusive, ``end`` exclusive)."""
        path = Path(data_dir)
        _check_range(start, end)
        opener = partial(read_joined, path, decision_point=decision_point, start=start, end=end)
        return cls(opener, f"event-log:{path}")

    @classmethod
    def from_kafka(
        cls,
        bootstrap: str,
        topic: str,
        *,
        decision_point: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        timeout_seconds: float = 30.0,
    ) -> Dataset:
        """The Kafka joined-examples topic from the beginning to the end offsets found
        when each pass starts (no consumer group, nothing committed)."""
        from offline_learner.datasets.kafka import read_topic

        _check_range(start, end)

        def open() -> Iterator[JoinedExample]:
            rows = read_topic(bootstrap, topic, timeout_seconds=timeout_seconds)
            return (ex for ex in rows if keep(ex, decision_point, start, end))

        return cls(open, f"kafka:{bootstrap}/{topic}")

    @classmethod
    def from_dsjson(
        cls,
        path: Path | str,
        decision_point: str = "imported",
        *,
        include_skipped: bool = False,
        default_reward: float = 0.0,
    ) -> Dataset:
        """A DSJson file: learnloop's export, VW's CB DSJson or an Azure Personalizer log.

        ``_skipLearn`` events (deferred, never activated) are left out unless
        ``include_skipped``; a line without ``_label_cost`` gets ``default_reward``.
        """
        from offline_learner.datasets.dsjson import read_dsjson

        file = Path(path)
        if not file.is_file():
            raise InvalidInput(f"no DSJson file at {file}")

        opener = partial(
            read_dsjson,
            file,
            decision_point,
            include_skipped=include_skipped,
            default_reward=default_reward,
        )
        return cls(opener, f"dsjson:{file}")

    @classmethod
    def from_table(
        cls,
        path: Path | str,
        mapping: ColumnMapping,
        decision_point: str = "imported",
        *,
        format: str | None = None,
    ) -> Dataset:
        """A flat CSV or Parquet table of logged decisions, read through ``mapping``.

        ``format`` is ``csv`` or ``parquet``; by default the file extension decides.
        """
        from offline_learner.datasets.table import TableSource

        table = TableSource(Path(path), mapping, decision_point, format=format)
        return cls(table.examples, f"table:{table.path}")

    # -- views ------------------------------------------------------------------------------

    def filter(
        self,
        decision_point: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Dataset:
        """The rows of one decision point and/or decision-time range (``end`` exclusive)."""
        _check_range(start, end)
        opener = partial(_filtered, self, decision_point, start, end)
        return Dataset(opener, f"{self.source} (filtered)")

    def take(self, n: int) -> Dataset:
        """The first ``n`` rows."""
        return Dataset(partial(itertools.islice, self, n), f"{self.source} [:{n}]")

    def skip(self, n: int) -> Dataset:
        """Every row after the first ``n``."""
        return Dataset(partial(itertools.islice, self, n, None), f"{self.source} [{n}:]")

    def split(self, fraction: float) -> tuple[Dataset, Dataset]:
        """(earlier, later): the first ``fraction`` of the rows in event order, and the rest.

        Counts the rows once (one pass), then each part skips or takes by position.
        """
        if not 0.0 < fraction < 1.0:
            raise InvalidInput(f"split fraction must be between 0 and 1, got {fraction}")
        boundary = round(self.count() * fraction)
        return self.take(boundary), self.skip(boundary)

    def batches(self, size: int) -> Iterator[list[JoinedExample]]:
        """The rows in lists of ``size`` (the last one may be shorter)."""
        if size < 1:
            raise InvalidInput(f"batch size must be at least 1, got {size}")
        rows = iter(self)
        while batch := list(itertools.islice(rows, size)):
            yield batch

    # -- passes -----------------------------------------------------------------------------

    def count(self) -> int:
        """The number of rows (one streaming pass)."""
        return sum(1 for _ in self)

    def describe(self, progress: Progress | None = None) -> DatasetSummary:
        """Rows, decision-time span, decision points, chosen actions, reward and
        logging-propensity ranges, close reasons: one streaming pass."""
        summary = SummaryAccumulator(self.source)
        for example in self:
            summary.add(example)
            if progress is not None and summary.rows % 1000 == 0:
                progress(summary.rows)
        return summary.result()

    def write_parquet(
        self,
        directory: Path | str,
        progress: Progress | None = None,
        *,
        row_group_size: int = ROW_GROUP_SIZE,
    ) -> int:
        """Write the rows as a hive-partitioned Parquet directory
        (``decision_point=<name>/date=YYYY-MM-DD/part-*.parquet``); returns the row count."""
        return write_examples(
            self, Path(directory), row_group_size=row_group_size, progress=progress
        )

    def write_dsjson(self, path: Path | str, progress: Progress | None = None) -> int:
        """Write the rows as DSJson lines (learnloop's export format); returns the count."""
        count = 0
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("w") as out:
            for example in self:
                out.write(to_dsjson(example) + "\n")
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress(count)
        if progress is not None:
            progress(count)
        return count


# Module-level openers (not closures) so that a Dataset pickles: the replay hands it to
# a reader process (offline_learner/replay_feed.py).


def _parquet_rows(
    path: Path,
    batch_size: int,
    decision_point: str | None,
    days: tuple[str, str] | None,
    start: datetime | None,
    end: datetime | None,
) -> Iterator[JoinedExample]:
    examples = read_examples(path, batch_size, decision_point, days)
    if start is None and end is None:
        return examples
    return (ex for ex in examples if keep(ex, None, start, end))


def _filtered(
    rows: Iterable[JoinedExample],
    decision_point: str | None,
    start: datetime | None,
    end: datetime | None,
) -> Iterator[JoinedExample]:
    return (ex for ex in rows if keep(ex, decision_point, start, end))


def _check_range(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} {value.isoformat()} has no time zone: give it in UTC")
    if start is not None and end is not None and end <= start:
        raise InvalidInput(f"end {end.isoformat()} is not after start {start.isoformat()}")
