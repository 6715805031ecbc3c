"""Bulk profile import: read a CSV or Parquet table of the shop's books and validate every row.

Columns are named like the fields of :class:`~schemas.profiles.ProfileUpdate`, plus
``user_id`` (the shop's *real* id, pseudonymized here with the service's key before
anything is stored). ``categories`` is a JSON object (``{"skincare": 4}``) in CSV; in
Parquet a JSON string, a map or a struct. Times are ISO 8601 with a zone in CSV,
``timestamp`` with a time zone in Parquet. An empty cell or null leaves that field as it
is stored.

:func:`validate_rows` checks *every* row before anything is written and returns one
:class:`RowError` per problem (row number, column, what is wrong), so a file is
imported whole or not at all.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from learnloop.errors import InvalidInput
from schemas.profiles import ProfileUpdate

FORMATS: Final = ("csv", "parquet")
USER_COLUMN: Final = "user_id"
COLUMNS: Final = frozenset(ProfileUpdate.model_fields) | {USER_COLUMN}
MAX_REPORTED: Final = 50


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one row: ``row`` counts data rows from 1 (a CSV's header is line 1,
    so row ``n`` is line ``n + 1``)."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.message}"


def format_of(path: Path, format: str | None) -> str:
    """``csv`` or ``parquet``: as given, else from the file name."""
    chosen = (format or path.suffix.lstrip(".")).lower()
    if chosen not in FORMATS:
        raise InvalidInput(
            f"cannot tell the format of {path}: pass --format csv or --format parquet, "
            "or name the file .csv or .parquet"
        )
    return chosen


def read_rows(path: Path, format: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """The column names and the rows of a CSV or Parquet file (CSV cells as text)."""
    chosen = format_of(path, format)
    import pyarrow as pa  # heavy: only the import command needs it

    try:
        if chosen == "csv":
            import pyarrow.csv as pacsv

            with path.open(newline="", encoding="utf-8") as source:
                header = next(csv.reader(source), [])
            # Every column as text: the row validation says what is wrong with a cell.
            types = {name: pa.string() for name in header}
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
                ),
            )
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise InvalidInput(f"cannot read {path} as {chosen}: {exc}") from exc
    return list(table.column_names), table.to_pylist()


def check_columns(columns: Iterable[str]) -> None:
    """Refuse a table without ``user_id`` or with a column no profile field is named like."""
    names = list(columns)
    unknown = sorted(set(names) - COLUMNS)
    if USER_COLUMN not in names:
        raise InvalidInput("the file has no user_id column: name the shop's user id column user_id")
    if unknown:
        raise InvalidInput(
            f"unknown columns {', '.join(unknown)}: rename or drop them; the profile columns "
            f"are {', '.join(sorted(COLUMNS))}"
        )


def validate_rows(
    rows: Iterable[Mapping[str, Any]],
    pseudonymize: Callable[[str], str],
    on_row: Callable[[], None] | None = None,
) -> tuple[list[tuple[str, ProfileUpdate]], list[RowError]]:
    """Every row as (pseudonym, update), and every problem found; no row is skipped silently.

    A user id that appears twice is an error (which row would win is a guess).
    """
    updates: list[tuple[str, ProfileUpdate]] = []
    errors: list[RowError] = []
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if on_row is not None:
            on_row()
        user = row.get(USER_COLUMN)
        if not isinstance(user, str) or not user.strip():
            errors.append(
                RowError(number, USER_COLUMN, "empty: every row needs the shop's user id")
            )
            continue
        if user in first_row:
            errors.append(
                RowError(number, USER_COLUMN, f"{user!r} is also in row {first_row[user]}")
            )
            continue
        first_row[user] = number
        fields, row_errors = _fields(number, row)  # the cells that cannot even be parsed
        try:
            update = ProfileUpdate.model_validate(fields)
        except ValidationError as exc:
            row_errors += [
                RowError(number, ".".join(str(p) for p in e["loc"]) or "?", e["msg"])
                for e in exc.errors()
            ]
        if row_errors:
            errors += row_errors
            continue
        updates.append((pseudonymize(user), update))
    return updates, errors


def _fields(number: int, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
    fields: dict[str, Any] = {}
    errors: list[RowError] = []
    for name, value in row.items():
        if name == USER_COLUMN or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if name == "categories":
            try:
                fields[name] = _categories(value)
            except ValueError as exc:
                errors.append(RowError(number, name, str(exc)))
            continue
        fields[name] = value.strip() if isinstance(value, str) else value
    return fields, errors


def _categories(value: Any) -> Any:
    """A JSON object text, a Parquet map (list of pairs) or struct (dict)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f'not a JSON object ({exc.msg}): write it like {{"skincare": 4}}'
            ) from exc
        if not isinstance(parsed, dict):
            raise ValueError('not a JSON object: write it like {"skincare": 4}')
        return parsed
    if isinstance(value, list):
        return dict(value)
    return value


def summarize(errors: list[RowError], limit: int = MAX_REPORTED) -> Iterator[str]:
    """The errors as lines, at most ``limit`` of them and a count of the rest."""
    for error in errors[:limit]:
        yield str(error)
    if len(errors) > limit:
        yield f"... and {len(errors) - limit} more"
