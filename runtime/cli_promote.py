"""``learnloop offline promote`` (registered on the group in :mod:`runtime.cli_common`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from learnloop.errors import LearnloopError, Unavailable
from runtime.cli_common import BackendOpt, ConfigOpt, DataOpt, console, load_settings, offline_app

ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who does it, for the audit record [the OS user]"),
]


def exit_for(exc: LearnloopError) -> typer.Exit:
    """Print ``exc``; exit 1 for an unreachable backend, 2 for what the caller must change."""
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1 if isinstance(exc, Unavailable) else 2)


@offline_app.command("promote")
def promote_command(
    dataset: Annotated[
        Path, typer.Argument(help="Parquet dataset directory (`learnloop dataset`) or DSJson file")
    ],
    decision_point: Annotated[
        str, typer.Option("--decision-point", help="The decision point to promote the model to")
    ],
    vw_args: Annotated[
        str, typer.Option("--vw-args", help='VW arguments, e.g. "--cb_explore_adf --squarecb"')
    ],
    estimate_json: Annotated[
        Path | None,
        typer.Option(
            "--estimate-json",
            help="`learnloop offline optimize --json` or `evaluate --json` output, recorded "
            "in the audit record",
        ),
    ] = None,
    by: ByOpt = None,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Warm-start a model on DATASET with --vw-args and publish it as the decision point's
    next release; the decision point's vw_args become --vw-args, so the online learner
    continues from this model. Writes an audit record (who, what, which data, which estimate)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from runtime.releases import estimate_from_file, promote_dataset

    settings = load_settings(data_dir=data_dir, config=config, backend=backend)
    try:
        estimate = estimate_from_file(estimate_json, vw_args) if estimate_json else None
        with Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            TextColumn("{task.completed:,.0f} examples"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=json_output or not console.is_terminal,
        ) as bar:
            task = bar.add_task(f"training {decision_point}", total=None)
            release, record = asyncio.run(
                promote_dataset(
                    settings,
                    dataset,
                    decision_point=decision_point,
                    vw_args=vw_args,
                    estimate=estimate,
                    by=by,
                    progress=lambda n: bar.advance(task, n),
                )
            )
    except LearnloopError as exc:
        raise exit_for(exc) from exc
    if json_output:
        out = {"release": release.model_dump(mode="json"), "audit": record.model_dump(mode="json")}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    assert record.dataset is not None
    console.print(
        f"promoted [bold]{decision_point}[/bold] v{release.version} "
        f"({record.dataset.examples_learned:,} examples of {record.dataset.rows:,} rows, "
        f"replacing v{record.previous_version or 0}); vw_args now {release.vw_args!r}"
    )
