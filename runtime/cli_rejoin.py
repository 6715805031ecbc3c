"""``learnloop offline rejoin`` (registered on the group in :mod:`runtime.cli_common`):
replay the embedded log through the join under other settings, into a new dataset.

Production is left alone: the log and the decision points are opened read-only and
the output may not lie inside the data directory.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from learnloop.errors import InvalidInput, LearnloopError
from offline_learner.rejoin import EventLogReader, Rejoin, rejoin, what_if
from runtime.cli_common import (
    ConfigOpt,
    DataOpt,
    console,
    decision_point_configs,
    load_settings,
    offline_app,
)
from schemas import DecisionPointConfig, JoinedExample

JOIN_SETTINGS = {"reward_map", "window_seconds", "aggregation", "default_reward"}


@dataclass
class RewardTally:
    """Count, mean reward and close reasons of a stream of joined examples."""

    n: int = 0
    total: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, example: JoinedExample) -> None:
        self.n += 1
        self.total += example.reward
        self.reasons[example.close_reason] += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "reward_mean": self.mean, "close_reasons": dict(self.reasons)}


def parse_rewards(items: list[str]) -> dict[str, float | None]:
    """``TYPE=VALUE`` pairs (``TYPE=none`` stops a type counting) as a reward-map change."""
    changes: dict[str, float | None] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"--reward {item!r}: write TYPE=VALUE, e.g. detail_view=0.5")
        if value.strip().lower() == "none":
            changes[name.strip()] = None
            continue
        try:
            changes[name.strip()] = float(value)
        except ValueError as exc:
            raise InvalidInput(
                f"--reward {item!r}: {value!r} is not a number (or 'none' to stop counting it)"
            ) from exc
    return changes


def changed_configs(
    configs: dict[str, DecisionPointConfig],
    decision_point: str | None,
    **changes: Any,
) -> dict[str, DecisionPointConfig]:
    """``configs`` with the what-if applied to one decision point, or to all of them."""
    if decision_point is not None and decision_point not in configs:
        known = ", ".join(sorted(configs)) or "none"
        raise InvalidInput(f"unknown decision point {decision_point!r}; known: {known}")
    names = [decision_point] if decision_point is not None else list(configs)
    return {
        name: what_if(config, **changes) if name in names else config
        for name, config in configs.items()
    }


def run_rejoin(
    data_dir: Path,
    out: Path,
    configs: dict[str, DecisionPointConfig],
    *,
    decision_point: str | None = None,
    output_format: str = "parquet",
) -> dict[str, Any]:
    """Re-join the log under ``configs`` into ``out``; return the summary payload."""
    from offline_learner.dataset import Dataset

    if output_format not in ("parquet", "dsjson"):
        raise InvalidInput(f"--format {output_format!r}: use parquet or dsjson")
    if out.resolve().is_relative_to(data_dir.resolve()):
        raise InvalidInput(
            f"{out} is inside the data directory {data_dir}: write the what-if dataset "
            "elsewhere, production data stays untouched"
        )
    reader = EventLogReader(data_dir)
    end = reader.end_offset()
    points = None if decision_point is None else [decision_point]
    before = RewardTally()
    for example in reader.joined(until=end):
        if decision_point is None or example.decision.decision_point == decision_point:
            before.add(example)
    after = RewardTally()
    run = rejoin(reader.join_inputs(until=end), configs, decision_points=points)

    def tallied(examples: Rejoin) -> Iterator[JoinedExample]:
        for example in examples:
            after.add(example)
            yield example

    dataset = Dataset.from_examples(tallied(run), source=f"rejoin of {data_dir}")
    with console.status("re-joining the log ...") as status:

        def progress(rows: int) -> None:
            status.update(f"re-joining the log ... {rows:,} examples")

        if output_format == "parquet":
            dataset.write_parquet(out, progress)
        else:
            dataset.write_dsjson(out, progress)
    stats = run.stats
    return {
        "kind": "rejoin",
        "data_dir": str(data_dir),
        "out": str(out),
        "format": output_format,
        "end_offset": end,
        "decision_point": decision_point,
        "configs": {name: c.model_dump(include=JOIN_SETTINGS) for name, c in configs.items()},
        "online": before.to_dict(),
        "rejoined": after.to_dict(),
        "dropped": dict(run.dropped),
        "duplicates": stats.duplicates,
        "unknown_type": stats.unknown_type,
        "undecodable": reader.undecodable,
    }


def _print_summary(payload: dict[str, Any]) -> None:
    table = Table(title=f"re-join of {payload['data_dir']} -> {payload['out']}")
    table.add_column("")
    table.add_column("online", justify="right")
    table.add_column("re-joined", justify="right")
    online, rejoined = payload["online"], payload["rejoined"]

    def mean(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    table.add_row("examples", f"{online['n']:,}", f"{rejoined['n']:,}")
    table.add_row("reward mean", mean(online["reward_mean"]), mean(rejoined["reward_mean"]))
    for reason in ("outcome", "direct", "default"):
        table.add_row(
            f"closed by {reason}",
            f"{online['close_reasons'].get(reason, 0):,}",
            f"{rejoined['close_reasons'].get(reason, 0):,}",
        )
    console.print(table)
    dropped = payload["dropped"]
    console.print(
        "not applied (whole log, every decision point): "
        + ", ".join(
            f"{reason} {dropped.get(reason, 0):,}"
            for reason in ("late", "orphaned", "not_activated", "stale")
        )
        + f", duplicates {payload['duplicates']:,}, undecodable {payload['undecodable']:,}"
    )


@offline_app.command("rejoin")
def rejoin_command(
    out: Annotated[Path, typer.Argument(help="Where to write the new dataset")],
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    decision_point: Annotated[
        str | None,
        typer.Option(help="Change and keep only this decision point (default: all)"),
    ] = None,
    reward: Annotated[
        list[str] | None,
        typer.Option(help="TYPE=VALUE: what an outcome type is worth (repeat; VALUE none drops)"),
    ] = None,
    window: Annotated[float | None, typer.Option(help="Window length in seconds")] = None,
    aggregation: Annotated[str | None, typer.Option(help="max, sum or first")] = None,
    default_reward: Annotated[
        float | None, typer.Option(help="Reward of a window with nothing counted")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="parquet (a directory) or dsjson (a file)")
    ] = "parquet",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Replay the logged decisions and outcomes through the join under another reward
    map, window or aggregation, into a new dataset. Without changes it reproduces the
    online join's examples. Decision points come from the data directory (what the
    service uses), or from --config."""
    settings = load_settings(data_dir=data_dir, config=config)
    try:
        configs = changed_configs(
            decision_point_configs(settings, config),
            decision_point,
            reward_map=parse_rewards(reward) if reward else None,
            window_seconds=window,
            aggregation=aggregation,
            default_reward=default_reward,
        )
        payload = run_rejoin(
            settings.data_dir, out, configs, decision_point=decision_point,
            output_format=output_format,
        )  # fmt: skip
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_summary(payload)
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
