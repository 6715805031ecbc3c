"""``learnloop models ...`` commands (registered on the group in :mod:`runtime.cli_common`):
the release history, the audit trail, and rollback, in either mode."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from learnloop.errors import LearnloopError
from runtime.cli_common import BackendOpt, ConfigOpt, DataOpt, console, load_settings, models_app
from runtime.cli_promote import ByOpt, exit_for
from schemas.api import StoredRelease
from schemas.audit import ModelAuditRecord

DecisionPointArg = Annotated[str, typer.Argument(help="The decision point")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="Newest entries to show")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


@models_app.command("list")
def list_command(
    decision_point: DecisionPointArg,
    limit: LimitOpt = 20,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The decision point's releases, newest first: version, time, who made it, examples,
    recent reward, VW arguments, and whether its model is still stored (rollback targets)."""
    from runtime.releases import release_history

    settings = load_settings(data_dir=data_dir, config=config, backend=backend)
    try:
        history, audit = asyncio.run(release_history(settings, decision_point, limit))
    except LearnloopError as exc:
        raise exit_for(exc) from exc
    if json_output:
        out = {
            "decision_point": decision_point,
            "releases": [h.model_dump(mode="json") for h in history],
            "audit": [r.model_dump(mode="json") for r in audit],
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    if not history:
        console.print(f"{decision_point} has no model releases yet")
        return
    console.print(releases_table(decision_point, history, audit))


def releases_table(
    decision_point: str, history: list[StoredRelease], audit: list[ModelAuditRecord]
) -> object:
    """A rich table of the history, with who promoted or rolled back each release."""
    from rich.table import Table

    by = {r.audit_id: r.by for r in audit}
    table = Table(title=f"{decision_point}: model releases, newest first")
    for column in ("version", "released", "source", "by", "examples", "reward_recent"):
        table.add_column(column, justify="right" if column in {"version", "examples"} else "left")
    table.add_column("vw_args", overflow="fold")
    table.add_column("model kept")
    for index, entry in enumerate(history):
        r = entry.release
        source = r.source + (f" of v{r.restores_version}" if r.restores_version else "")
        reward = r.metrics.get("reward_recent")
        table.add_row(
            f"v{r.version}" + (" (current)" if index == 0 else ""),
            r.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            source,
            by.get(r.audit_id or "", ""),
            f"{r.examples_learned:,}",
            "" if reward is None else f"{reward:.4f}",
            r.vw_args,
            "yes" if entry.model_kept else "no",
        )
    return table


@models_app.command("audit")
def audit_command(
    decision_point: DecisionPointArg,
    limit: LimitOpt = 20,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The audit trail of the decision point's promotions and rollbacks, newest first."""
    from rich.table import Table

    from runtime.releases import release_history

    settings = load_settings(data_dir=data_dir, config=config, backend=backend)
    try:
        _, audit = asyncio.run(release_history(settings, decision_point, limit))
    except LearnloopError as exc:
        raise exit_for(exc) from exc
    if json_output:
        sys.stdout.write(json.dumps([r.model_dump(mode="json") for r in audit], indent=2) + "\n")
        return
    table = Table(title=f"{decision_point}: promotions and rollbacks, newest first")
    for column in ("when", "action", "by", "version", "vw_args", "data", "estimate"):
        table.add_column(column, overflow="fold")
    for r in audit:
        what = f"v{r.version}" + (f" = v{r.restores_version}" if r.restores_version else "")
        data = ""
        if r.dataset is not None:
            data = f"{r.dataset.path} ({r.dataset.examples_learned:,} examples)"
        table.add_row(
            r.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            r.action,
            r.by,
            what,
            f"{r.vw_args_before} -> {r.vw_args_after}",
            data,
            _estimate_text(r.estimate),
        )
    console.print(table)


def _estimate_text(estimate: Mapping[str, Any] | None) -> str:
    if not estimate:
        return ""
    inner = estimate.get("estimate", estimate)
    if not isinstance(inner, dict) or "value" not in inner:
        return ""
    text = f"{inner.get('estimator', '')} {inner['value']:.4f}"
    if inner.get("lower") is not None and inner.get("upper") is not None:
        text += f" [{inner['lower']:.4f}, {inner['upper']:.4f}]"
    return text


@models_app.command("rollback")
def rollback_command(
    decision_point: DecisionPointArg,
    to: Annotated[
        int | None,
        typer.Option("--to", min=1, help="Version to restore [the release before the current]"),
    ] = None,
    by: ByOpt = None,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Serve an earlier release again: its model is republished as the next version and its
    vw_args restored on the decision point; the online learner continues from it."""
    from runtime.releases import rollback_release

    settings = load_settings(data_dir=data_dir, config=config, backend=backend)
    try:
        release, record = asyncio.run(
            rollback_release(settings, decision_point, to_version=to, by=by)
        )
    except LearnloopError as exc:
        raise exit_for(exc) from exc
    if json_output:
        out = {"release": release.model_dump(mode="json"), "audit": record.model_dump(mode="json")}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    console.print(
        f"rolled [bold]{decision_point}[/bold] back to v{release.restores_version}: "
        f"now v{release.version} (was v{record.previous_version}); vw_args {release.vw_args!r}"
    )
