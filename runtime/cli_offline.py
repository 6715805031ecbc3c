"""``learnloop offline evaluate|optimize`` (registered on the group in :mod:`runtime.cli_common`).

``evaluate`` replays a dataset through candidate policies side by side
(:mod:`offline_learner.replay`); ``optimize`` searches VW settings on a temporal split
(:mod:`offline_learner.search`). Both print rich tables, write the HTML report with
``--report`` and print the payload with ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from learnloop.errors import InvalidInput, LearnloopError
from runtime.cli_common import (
    ConfigOpt,
    DataOpt,
    configured_vw_args,
    console,
    decision_point_configs,
    load_settings,
    offline_app,
)

if TYPE_CHECKING:
    from offline_learner.dataset import Dataset

DatasetArg = Annotated[
    Path, typer.Argument(help="Parquet dataset directory, DSJson file or learnloop data directory")
]
DecisionPointOpt = Annotated[str | None, typer.Option(help="Only this decision point's rows")]
ReportOpt = Annotated[Path | None, typer.Option(help="Write the self-contained HTML report here")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the payload as JSON on stdout")]
PrimaryOpt = Annotated[str, typer.Option(help="Estimator: SNIPS, IPS, DM, DR, SwitchDR or SNDR")]


@contextmanager
def _bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A transient rich progress bar; yields its ``advance``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(
            "{task.completed:,.0f}" if total is None else "{task.completed:,.0f}/{task.total:,.0f}"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _open(path: Path, decision_point: str | None) -> tuple[Dataset, dict[str, Any]]:
    """The dataset and its summary (one counting pass, with a bar)."""
    from offline_learner.dataset import Dataset

    dataset = Dataset.open(path, decision_point)
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    ) as bar:
        task = bar.add_task("reading the dataset", total=None)
        summary = dataset.describe(lambda rows: bar.update(task, description=f"{rows:,} rows"))
    if summary.rows == 0:
        raise InvalidInput(
            f"the dataset at {path} has no rows"
            + (f" for decision point {decision_point!r}" if decision_point else "")
        )
    return dataset, summary.to_dict()


def _show(payload: dict[str, Any], report: Path | None, as_json: bool) -> None:
    from offline_learner.report import render_tables, write_report

    for table in render_tables(payload):
        console.print(table)
    if report is not None:
        console.print(f"report: {write_report(payload, report)}")
    if as_json:
        typer.echo(json.dumps(payload, indent=2))


@offline_app.command("evaluate")
def evaluate_command(
    dataset: DatasetArg,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            "-c",
            help="logged, uniform, baseline[:ACTION], constant:ACTION or 'vw:VW ARGS', "
            "optionally NAME=SPEC; repeat for several [default: logged, baseline, uniform]",
        ),
    ] = None,
    decision_point: DecisionPointOpt = None,
    estimator: Annotated[
        list[str] | None,
        typer.Option("--estimator", "-e", help="Repeat for several [IPS SNIPS DM DR SNDR]"),
    ] = None,
    primary: PrimaryOpt = "SNIPS",
    reference: Annotated[
        str, typer.Option(help="Candidate the differences are taken against")
    ] = "logged",
    reward_range: Annotated[
        tuple[float, float] | None,
        typer.Option(help="LOW HIGH: clip the reward model's predictions into this range"),
    ] = None,
    report: ReportOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Estimate candidate policies side by side on a logged dataset: VW candidates learn
    progressively in event order and are scored before learning each example."""
    from offline_learner.candidates import parse_candidates
    from offline_learner.dataset import Dataset
    from offline_learner.replay import DEFAULT_ESTIMATORS, evaluate

    try:
        candidates = parse_candidates(candidate or ["logged", "baseline", "uniform"])
        rows = Dataset.open(dataset, decision_point)
        with _bar("replaying", None) as advance:
            # The summary is folded into the replay's own pass (no extra read); passing
            # the Dataset itself lets the replay read it in a reader process.
            result = evaluate(
                rows,
                candidates,
                estimators=tuple(estimator or DEFAULT_ESTIMATORS),
                primary=primary,
                reference=reference,
                reward_range=reward_range,
                progress=advance,
                describe=True,
            )
        payload = result.to_dict()
        _show(payload, report, as_json)
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@offline_app.command("optimize")
def optimize_command(
    dataset: DatasetArg,
    decision_point: DecisionPointOpt = None,
    current_vw_args: Annotated[
        str | None,
        typer.Option(help="The VW arguments to beat [default: the decision point's current]"),
    ] = None,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    trials: Annotated[int, typer.Option(min=1, help="How many settings to try")] = 30,
    split: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of the rows (earliest) to fit on")
    ] = 0.7,
    confirm: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.9,
            help="Fraction of the rows (latest) the search never sees, to estimate the "
            "best again without the winner's curse",
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampler seed (same data and seed, same trials)")] = 0,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds")
    ] = None,
    primary: PrimaryOpt = "SNIPS",
    report: ReportOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search VW settings (exploration, interactions, -l, power_t, cb_type) with Optuna:
    fit on the earlier part, estimate on the later part, rank by the lower bound of the
    paired difference to the current arguments."""
    from offline_learner.search import optimize

    try:
        if current_vw_args is None:
            if decision_point is None:
                raise InvalidInput(
                    "give --current-vw-args, or --decision-point to use its current VW arguments"
                )
            current_vw_args = configured_vw_args(
                decision_point,
                decision_point_configs(load_settings(data_dir=data_dir, config=config), config),
            )
        if not 0.0 < split < 1.0:
            raise InvalidInput(f"--split is {split}: give the fitting fraction in (0, 1)")
        rows, summary = _open(dataset, decision_point)
        searched = round(summary["rows"] * (1.0 - confirm))
        boundary = round(searched * split)
        with _bar(f"{trials} trials", trials) as advance:
            result = optimize(
                rows.take(boundary),
                rows.skip(boundary).take(searched - boundary),
                confirm_examples=rows.skip(searched) if confirm > 0 else None,
                current_vw_args=current_vw_args,
                trials=trials,
                seed=seed,
                primary=primary,
                timeout=timeout,
                progress=advance,
                dataset=summary,
            )
        _show(result.to_dict(), report, as_json)
        verdict = "is" if result.significantly_better else "is not"
        best = result.best
        if best is not None:
            difference = best.difference
            where = "the later part"
            if result.confirmation is not None:
                difference = result.confirmation.candidate("best").difference
                where = f"the {result.confirm_rows:,} confirmation rows"
            console.print(
                f"best: {best.vw_args}\nit {verdict} significantly better than the current "
                f"arguments ({primary} difference lower bound on {where} "
                f"{difference.lower if difference else float('nan'):.4f})"
            )
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
