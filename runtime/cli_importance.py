"""``learnloop offline importance`` (registered on the group in :mod:`runtime.cli_common`).

Which context features a policy uses, by ablation (:mod:`offline_learner.importance`):
a rich table on the terminal, ``--report`` for the HTML page, ``--json`` for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    pass


@offline_app.command("importance")
def importance_command(
    dataset: Annotated[
        Path, typer.Argument(help="Parquet dataset directory, DSJson file or data directory")
    ],
    vw_args: Annotated[
        str | None,
        typer.Option(help="The policy's VW arguments [default: the decision point's current]"),
    ] = None,
    decision_point: Annotated[
        str | None,
        typer.Option(help="Only this decision point's rows; its VW arguments by default"),
    ] = None,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    primary: Annotated[
        str, typer.Option(help="Estimator: SNIPS, IPS, DM, DR, SwitchDR or SNDR")
    ] = "SNIPS",
    features: Annotated[
        str | None,
        typer.Option(help="Comma-separated context keys to ablate [default: the most frequent]"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most feature groups found to ablate")] = 30,
    no_namespaces: Annotated[
        bool, typer.Option("--no-namespaces", help="Do not ablate the c and u namespaces")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write the self-contained HTML report here")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the payload as JSON")] = False,
) -> None:
    """Which context features the policy uses: each namespace (c, u) and feature group is
    left out of its own copy of the policy, all replayed on the dataset beside the full
    policy; the drop in the estimate (paired, with an interval) is its importance."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from offline_learner.dataset import Dataset
    from offline_learner.importance import importance
    from offline_learner.report import render_tables, write_report

    try:
        if vw_args is None:
            if decision_point is None:
                raise InvalidInput(
                    "give --vw-args, or --decision-point to use its current VW arguments"
                )
            vw_args = configured_vw_args(
                decision_point,
                decision_point_configs(load_settings(data_dir=data_dir, config=config), config),
            )
        examples = Dataset.open(dataset, decision_point)
        chosen = "auto" if features is None else [f.strip() for f in features.split(",")]
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed:,.0f} examples"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            tasks: dict[str, int] = {}

            def progress(phase: str, advance: int) -> None:
                if phase not in tasks:
                    label = (
                        "finding feature groups"
                        if phase == "discover"
                        else "replaying the policy and its ablations"
                    )
                    tasks[phase] = bar.add_task(label, total=None)
                bar.advance(tasks[phase], advance)  # type: ignore[arg-type]

            result = importance(
                examples,
                vw_args,
                features=chosen,
                namespaces=() if no_namespaces else ("c", "u"),
                primary=primary,
                limit=limit,
                progress=progress,
            )
        payload = result.to_dict()
        for table in render_tables(payload):
            console.print(table)
        if report is not None:
            console.print(f"report: {write_report(payload, report)}")
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
