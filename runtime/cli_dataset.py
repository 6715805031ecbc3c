"""``learnloop dataset export|import|describe`` (on the group in :mod:`runtime.cli_common`).

``export`` writes the joined examples of the running loop (embedded log or Kafka) as a
Parquet dataset directory or DSJson; ``import`` turns DSJson logs and flat CSV/Parquet
tables into a Parquet dataset directory; ``describe`` prints what a dataset holds. Each
shows a progress bar while it streams and ends with the summary table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from learnloop.errors import InvalidInput, LearnloopError
from runtime.cli_common import BackendOpt, DataOpt, console, dataset_app, load_settings

if TYPE_CHECKING:
    from offline_learner.dataset import Dataset
    from offline_learner.datasets.summary import DatasetSummary, SummaryAccumulator
    from offline_learner.datasets.table_mapping import ColumnMapping

PointOpt = Annotated[str | None, typer.Option(help="Only this decision point's rows")]
TimeHelp = "ISO 8601 decision time or date; no zone means UTC"


@contextmanager
def _failures() -> Iterator[None]:
    """Bad input and unreachable backends: the message, then exit status 2."""
    try:
        yield
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@contextmanager
def _rows_bar(label: str) -> Iterator[Callable[[int], None]]:
    """A transient rich progress line counting rows (the total is not known up front:
    counting first would cost a second pass); yields ``update(rows_so_far)``."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda rows: bar.update(task, completed=rows)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{option} {value!r} is not an ISO 8601 time or date") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _watched(dataset: Dataset, summary: SummaryAccumulator) -> Dataset:
    """``dataset`` with every row also added to ``summary`` (summary while writing,
    not in a second pass)."""
    from offline_learner.dataset import Dataset

    def rows() -> Iterator[Any]:
        for example in dataset:
            summary.add(example)
            yield example

    return Dataset(rows, dataset.source)


def _write(dataset: Dataset, out: Path, format: str, label: str) -> DatasetSummary:
    from offline_learner.datasets.summary import SummaryAccumulator

    if format not in ("parquet", "dsjson"):
        raise InvalidInput(f"--format {format!r}: expected parquet or dsjson")
    summary = SummaryAccumulator(str(out))
    watched = _watched(dataset, summary)
    with _rows_bar(label) as progress:
        if format == "parquet":
            watched.write_parquet(out, progress)
        else:
            watched.write_dsjson(out, progress)
    return summary.result()


def summary_table(summary: DatasetSummary) -> Any:
    """The rich table of a dataset summary (rows, time span, actions, reward, propensity)."""
    from rich.table import Table

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    table = Table(title=f"dataset {summary.source}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("rows", f"{summary.rows:,}")
    span = (
        f"{summary.first.isoformat()} .. {summary.last.isoformat()}"
        if summary.first and summary.last
        else "-"
    )
    table.add_row("decision time", span)
    table.add_row(
        "decision points", ", ".join(f"{k} ({v:,})" for k, v in summary.decision_points.items())
    )
    shown = list(summary.actions.items())[:10]
    more = f" and {len(summary.actions) - 10} more" if len(summary.actions) > 10 else ""
    table.add_row(
        f"chosen actions ({len(summary.actions)})",
        ", ".join(f"{k} ({v:,})" for k, v in shown) + more,
    )
    table.add_row(
        "reward mean (min .. max)",
        f"{number(summary.reward_mean)} ({number(summary.reward_min)} .. "
        f"{number(summary.reward_max)})",
    )
    table.add_row(
        "logging propensity",
        f"{number(summary.propensity_min)} .. {number(summary.propensity_max)}",
    )
    table.add_row(
        "close reasons", ", ".join(f"{k} ({v:,})" for k, v in summary.close_reasons.items())
    )
    if summary.not_activated:
        table.add_row("not activated", f"{summary.not_activated:,}")
    return table


def _show(summary: DatasetSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        console.print(summary_table(summary))


@dataset_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="Dataset directory (parquet) or file (dsjson)")],
    data_dir: DataOpt = None,
    decision_point: PointOpt = None,
    start: Annotated[str | None, typer.Option(help=f"From this {TimeHelp} (inclusive)")] = None,
    end: Annotated[str | None, typer.Option(help=f"Up to this {TimeHelp} (exclusive)")] = None,
    format: Annotated[str, typer.Option(help="parquet (a directory) or dsjson (a file)")] = (
        "parquet"
    ),
    backend: BackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Export the loop's joined examples (embedded log, or the Kafka joined topic)."""
    from learnloop.kafka.topics import TopicNames
    from offline_learner.dataset import Dataset

    settings = load_settings(data_dir=data_dir, backend=backend)
    with _failures():
        first, last = _time(start, "--start"), _time(end, "--end")
        if settings.backend == "kafka":
            topic = TopicNames(settings.topic_prefix).topic("joined")
            dataset = Dataset.from_kafka(
                settings.kafka_bootstrap,
                topic,
                decision_point=decision_point,
                start=first,
                end=last,
                timeout_seconds=settings.connect_timeout_seconds,
            )
        else:
            dataset = Dataset.from_event_log(settings.data_dir, decision_point, first, last)
        summary = _write(dataset, out, format, f"exporting {dataset.source}")
    _show(summary, as_json)


def _mapping(
    mapping_file: Path | None, options: dict[str, str | None], context: str | None
) -> ColumnMapping:
    from offline_learner.datasets.table_mapping import ColumnMapping

    data: dict[str, Any] = {}
    if mapping_file is not None:
        loaded = ColumnMapping.load(mapping_file)
        data = {k: v for k, v in vars(loaded).items() if v is not None}
    data.update({k: v for k, v in options.items() if v is not None})
    if context is not None:
        data["context"] = [c.strip() for c in context.split(",") if c.strip()]
    if not {"action", "propensity", "reward"} <= data.keys():
        raise InvalidInput(
            "a table needs a column mapping: give --mapping FILE (TOML or JSON) or at least "
            "--action, --propensity and --reward"
        )
    return ColumnMapping.from_dict(data)


@dataset_app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="DSJson file, or a CSV/Parquet table")],
    out: Annotated[Path, typer.Argument(help="Dataset directory to write (Parquet)")],
    format: Annotated[
        str | None, typer.Option(help="dsjson, csv or parquet (default: from the file name)")
    ] = None,
    decision_point: Annotated[
        str, typer.Option(help="Decision point the imported rows belong to")
    ] = "imported",
    mapping: Annotated[
        Path | None, typer.Option(help="Column mapping of a table (TOML or JSON file)")
    ] = None,
    action: Annotated[str | None, typer.Option(help="Column of the chosen action")] = None,
    propensity: Annotated[
        str | None, typer.Option(help="Column of the chosen action's logging probability")
    ] = None,
    reward: Annotated[str | None, typer.Option(help="Column of the reward")] = None,
    timestamp: Annotated[str | None, typer.Option(help="Column of the decision time")] = None,
    event_id: Annotated[str | None, typer.Option(help="Column of the event id")] = None,
    persona: Annotated[str | None, typer.Option(help="Column of the persona")] = None,
    context: Annotated[
        str | None,
        typer.Option(help="Context feature columns, comma-separated (default: the rest)"),
    ] = None,
    include_skipped: Annotated[
        bool, typer.Option(help="Keep DSJson events marked _skipLearn (never activated)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Import foreign logged data (VW/Personalizer DSJson, CSV, Parquet) as a dataset."""
    from offline_learner.dataset import DSJSON_SUFFIXES, Dataset
    from offline_learner.datasets.table import table_format

    with _failures():
        if not source.is_file():
            raise InvalidInput(f"no file at {source}")
        kind = format or ("dsjson" if source.suffix.lower() in DSJSON_SUFFIXES else None)
        if kind == "dsjson":
            dataset = Dataset.from_dsjson(source, decision_point, include_skipped=include_skipped)
        else:
            kind = table_format(source, kind)
            options = {
                "action": action,
                "propensity": propensity,
                "reward": reward,
                "timestamp": timestamp,
                "event_id": event_id,
                "persona": persona,
            }
            columns = _mapping(mapping, options, context)
            dataset = Dataset.from_table(source, columns, decision_point, format=kind)
        summary = _write(dataset, out, "parquet", f"importing {source}")
    _show(summary, as_json)


@dataset_app.command("describe")
def describe(
    path: Annotated[
        Path,
        typer.Argument(help="Parquet dataset directory, DSJson file or learnloop data directory"),
    ],
    decision_point: PointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Rows, time span, decision points, actions, reward and propensity range of a dataset."""
    from offline_learner.dataset import Dataset

    with _failures():
        dataset = Dataset.open(path, decision_point)
        with _rows_bar(f"reading {dataset.source}") as progress:
            summary = dataset.describe(progress)
    _show(summary, as_json)
