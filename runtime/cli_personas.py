"""``learnloop personas import-profiles``: load the shop's books into the profile store.

The ``personas`` group itself lives in :mod:`runtime.cli_common`; the segmentation and
model commands are in :mod:`runtime.cli_personas_model`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from learnloop.errors import LearnloopError
from learnloop.profiles import ProfileStore
from learnloop.settings import Settings
from runtime.cli_common import BackendOpt, DataOpt, console, load_settings, personas_app
from schemas.profiles import ProfileUpdate

FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv or parquet [from the file name]")
]


def open_profile_store(settings: Settings) -> ProfileStore:
    """The profile store the service uses: ``<data_dir>/profiles.sqlite``, or Redis."""
    if settings.backend == "kafka":
        from learnloop.profile_store_redis import RedisProfileStore

        return RedisProfileStore(settings.redis_url, settings.redis_prefix)
    from learnloop.profile_store_sqlite import FILE_NAME, SqliteProfileStore

    return SqliteProfileStore(settings.data_dir / FILE_NAME)


@personas_app.command("import-profiles")
def import_profiles(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet table, one row per user")],
    format: FormatOpt = None,
    data_dir: DataOpt = None,
    backend: BackendOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate every row, write nothing")
    ] = False,
) -> None:
    """Import profiles in bulk (after a closing): every row is checked first; if any row
    is bad, each problem is listed and nothing is written; else all rows are written in
    one transaction. ``user_id`` is the shop's id: it is pseudonymized with the service's
    key (LEARNLOOP_PSEUDONYM_KEY) like the decisions' user ids are."""
    settings = load_settings(data_dir=data_dir, backend=backend)
    try:
        written = _import(settings, file, format, dry_run)
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if written is None:
        raise typer.Exit(2)


def _import(settings: Settings, file: Path, format: str | None, dry_run: bool) -> int | None:
    from app.pseudonyms import Pseudonyms
    from learnloop.profile_import import check_columns, read_rows, summarize, validate_rows

    with console.status(f"reading {file}"):
        columns, rows = read_rows(file, format)
    check_columns(columns)
    # max_size=0: a bulk import meets each user once, remembering them would only cost memory
    pseudonyms = Pseudonyms(settings.pseudonym_key.get_secret_value().encode(), max_size=0)
    progress = Progress(
        TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    )  # fmt: skip
    with progress:
        task = progress.add_task("rows", total=len(rows))
        updates, errors = validate_rows(rows, pseudonyms.of, lambda: progress.advance(task))
    if errors:
        bad_rows = len({e.row for e in errors})
        console.print(
            f"[red]{bad_rows} of {len(rows)} rows of {file} are invalid; nothing was written.[/red]"
        )
        for line in summarize(errors):
            console.print(f"  {line}", markup=False, highlight=False)
        console.print("Fix these rows (or drop them) and import the file again.")
        return None
    where = (
        f"Redis {settings.redis_prefix}profile:*"
        if settings.backend == "kafka"
        else str(settings.data_dir / "profiles.sqlite")
    )
    if not dry_run:
        with console.status(f"writing {len(updates):,} profiles in one transaction"):
            asyncio.run(_write(settings, updates))
    summary = Table(show_header=False, box=None)
    summary.add_row("file", str(file))
    summary.add_row("rows", f"{len(rows):,}")
    summary.add_row("columns", ", ".join(c for c in columns if c != "user_id"))
    summary.add_row("written to" if not dry_run else "would write to", where)
    console.print(summary)
    console.print(
        f"[green]{'validated' if dry_run else 'imported'} {len(updates):,} profiles[/green]"
    )
    return len(updates)


async def _write(settings: Settings, updates: list[tuple[str, ProfileUpdate]]) -> None:
    store = open_profile_store(settings)
    try:
        await store.update_many(updates)
    finally:
        await store.close()
