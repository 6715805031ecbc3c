"""Read a flat CSV or Parquet table of logged decisions as joined examples, through a
:class:`~offline_learner.datasets.table_mapping.ColumnMapping`.

Streams record batches (``pyarrow.csv.open_csv``, ``ParquetFile.iter_batches``), so the
table is never in memory whole. The mapping is checked against the table's columns when
the source is opened: a missing column, or a propensity/reward column that is not
numeric, is an :class:`InvalidInput` naming the column.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from learnloop.errors import InvalidInput
from offline_learner.datasets.dsjson import (
    MISSING_TIME,
    UNCLASSIFIED,
    safe_action_id,
    safe_event_id,
)
from offline_learner.datasets.table_mapping import ColumnMapping
from schemas.events import DecisionEvent, JoinedExample

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 4_096
_STRING_COLUMNS = ("action", "event_id", "user_id", "session_id", "persona")


def table_format(path: Path, format: str | None) -> str:
    """``csv`` or ``parquet``: as given, else from the file name."""
    name = path.name.lower()
    chosen = format or (
        "csv" if name.endswith((".csv", ".csv.gz", ".csv.bz2")) else
        "parquet" if name.endswith((".parquet", ".pq")) else None
    )  # fmt: skip
    if chosen not in ("csv", "parquet"):
        raise InvalidInput(
            f"cannot tell the table format of {path}: pass format='csv' or 'parquet' "
            "(--format on the command line)"
        )
    return chosen


class TableSource:
    """One table file plus its mapping; :meth:`examples` opens a fresh pass each call."""

    def __init__(
        self, path: Path, mapping: ColumnMapping, decision_point: str, format: str | None = None
    ) -> None:
        if not path.is_file():
            raise InvalidInput(f"no table at {path}")
        self.path = path
        self.mapping = mapping
        self.decision_point = decision_point
        self.format = table_format(path, format)
        schema = self._schema()
        columns = list(schema.names)
        for name in mapping.named_columns() + list(mapping.context or []):
            if name not in columns:
                raise InvalidInput(
                    f"{path} has no column {name!r} (named in the column mapping); "
                    f"its columns are {', '.join(columns)}"
                )
        self._check_numeric(schema, mapping.propensity, "propensity")
        self._check_numeric(schema, mapping.reward, "reward")
        named = set(mapping.named_columns())
        self.context = (
            list(mapping.context)
            if mapping.context is not None
            else [c for c in columns if c not in named]
        )
        self._candidates: list[str] | None = (
            [safe_action_id(a, f"action-{i + 1}") for i, a in enumerate(mapping.actions)]
            if isinstance(mapping.actions, list)
            else None
        )

    def _schema(self) -> pa.Schema:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.format == "parquet":
                return pq.ParquetFile(self.path).schema_arrow
            reader = self._open_csv()
            schema = reader.schema
            reader.close()
            return schema
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"cannot read {self.format} table {self.path}: {exc}") from exc

    def _open_csv(self) -> Any:
        import pyarrow as pa
        import pyarrow.csv as csv

        m = self.mapping
        types = {getattr(m, key): pa.string() for key in _STRING_COLUMNS if getattr(m, key)}
        types.update({m.propensity: pa.float64(), m.reward: pa.float64()})
        if isinstance(m.action_features, str):
            types[m.action_features] = pa.string()
        return csv.open_csv(self.path, convert_options=csv.ConvertOptions(column_types=types))

    def _check_numeric(self, schema: pa.Schema, column: str, role: str) -> None:
        import pyarrow as pa

        kind = schema.field(column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise InvalidInput(
                f"{self.path}: the {role} column {column!r} holds {kind}, not numbers"
            )

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The table's record batches (only ``columns`` when given)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.format == "parquet":
                yield from pq.ParquetFile(self.path).iter_batches(BATCH_ROWS, columns=columns)
                return
            reader = self._open_csv()
            try:
                for batch in reader:
                    yield batch.select(columns) if columns else batch
            finally:
                reader.close()
        except pa.ArrowException as exc:
            raise InvalidInput(
                f"cannot read {self.path}: {exc}; check that each mapped column holds one "
                "type (propensity and reward numbers)"
            ) from exc

    def candidates(self) -> list[str]:
        """The fixed candidate set: given in the mapping, or every distinct action of the
        table in order of first appearance (one pass over the action column, once)."""
        if self._candidates is None:
            seen: dict[str, None] = {}
            for batch in self.batches([self.mapping.action]):
                for value in batch.column(0).to_pylist():
                    if value is not None:
                        seen.setdefault(safe_action_id(value, ""), None)
            self._candidates = list(seen)
        return self._candidates

    def examples(self) -> Iterator[JoinedExample]:
        """Stream the rows as joined examples."""
        fixed = None if isinstance(self.mapping.actions, str) else self.candidates()
        number = 0
        for batch in self.batches():
            for row in batch.to_pylist():
                number += 1
                try:
                    yield self._example(row, number, fixed)
                except ValidationError as exc:
                    error = exc.errors()[0]
                    field = ".".join(str(p) for p in error["loc"])
                    raise InvalidInput(
                        f"{self.path} row {number}: {field}: {error['msg']}"
                    ) from exc
                except (ValueError, TypeError) as exc:
                    raise InvalidInput(f"{self.path} row {number}: {exc}") from exc

    def _example(self, row: dict[str, Any], number: int, fixed: list[str] | None) -> JoinedExample:
        m = self.mapping
        if row[m.action] is None:
            raise ValueError(f"no action in column {m.action!r}")
        chosen_id = safe_action_id(row[m.action], "")
        if fixed is None:
            listed = row[m.actions] if isinstance(m.actions, str) else None
            if not isinstance(listed, list) or not listed:
                raise ValueError(f"the actions column {m.actions!r} must hold a non-empty list")
            candidates = [safe_action_id(a, f"action-{i + 1}") for i, a in enumerate(listed)]
        else:
            candidates = fixed
        if chosen_id not in candidates:
            raise ValueError(
                f"chosen action {chosen_id!r} is not among the candidates {candidates[:10]}"
            )
        chosen = candidates.index(chosen_id)
        propensity, reward = row[m.propensity], row[m.reward]
        if propensity is None or reward is None:
            raise ValueError(f"empty {m.propensity!r} or {m.reward!r}")
        if not 0.0 < propensity <= 1.0:
            raise ValueError(f"propensity {propensity} in {m.propensity!r} is not in (0, 1]")
        rest = (1.0 - propensity) / (len(candidates) - 1) if len(candidates) > 1 else 0.0
        probabilities = [propensity if i == chosen else rest for i in range(len(candidates))]
        when = self._timestamp(row, number)
        event_id = safe_event_id(
            row[m.event_id] if m.event_id else None, f"{self.path.stem}-{number}"
        )
        decision = DecisionEvent(
            event_id=event_id,
            timestamp=when,
            decision_point=self.decision_point,
            context={
                "user_id": _text(row, m.user_id),
                "session_id": _text(row, m.session_id),
                "features": {c: _feature(row[c]) for c in self.context if row[c] is not None},
            },
            persona=_text(row, m.persona) or UNCLASSIFIED,
            actions=[{"id": a, "features": self._action_features(row, a)} for a in candidates],
            chosen_index=chosen,
            probabilities=probabilities,
            model_version="imported",
        )
        return JoinedExample(
            event_id=event_id,
            timestamp=when,
            decision=decision,
            reward=float(reward),
            close_reason="direct",
        )

    def _timestamp(self, row: dict[str, Any], number: int) -> datetime:
        column = self.mapping.timestamp
        value = row[column] if column else None
        if value is None:
            return MISSING_TIME + timedelta(seconds=number)
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"timestamp {value!r} in {column!r} is not an ISO 8601 time") from exc
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when

    def _action_features(self, row: dict[str, Any], action: str) -> dict[str, Any]:
        spec = self.mapping.action_features
        if spec is None:
            return {}
        if isinstance(spec, dict):
            return dict(spec.get(action, {}))
        text = row[spec]
        if text is None:
            return {}
        try:
            table = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the action-features column {spec!r} is not JSON: {exc}") from exc
        if not isinstance(table, dict):
            raise ValueError(f"the action-features column {spec!r} must hold a JSON object")
        return dict(table.get(action) or {})


def _text(row: dict[str, Any], column: str | None) -> str | None:
    value = row[column] if column else None
    return None if value is None else str(value)


def _feature(value: Any) -> Any:
    """A cell as a feature value: dates and times as ISO text, the rest as they are."""
    return value.isoformat() if hasattr(value, "isoformat") else value
