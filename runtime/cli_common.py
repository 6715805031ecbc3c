"""What every ``learnloop`` command shares: the console, settings from flags and the
environment, the common options, the service runner, and the command groups that
topic modules (``runtime/cli_*.py``) add their commands to.

Command modules import heavy libraries inside their commands, never at module
level: every service process starts through this CLI.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from learnloop.errors import InvalidInput, LearnloopError
from learnloop.settings import Settings

if TYPE_CHECKING:
    from schemas import DecisionPointConfig

console = Console(stderr=True)

HostOpt = Annotated[
    str | None, typer.Option(help="Interface to bind [env LEARNLOOP_HOST; 127.0.0.1]")
]
PortOpt = Annotated[int | None, typer.Option(help="Port [env LEARNLOOP_PORT; 8000]")]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Event log and models [env LEARNLOOP_DATA_DIR; ./data]"),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML file of decision points [env LEARNLOOP_CONFIG; shipped defaults]"
    ),
]
BackendOpt = Annotated[
    str | None, typer.Option(help="embedded (one process) or kafka [env LEARNLOOP_BACKEND]")
]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def setup_logging(log_level: str) -> None:
    """Log lines go to stderr at ``log_level`` (services: ``LEARNLOOP_LOG_LEVEL``), each
    with the pid, since several processes of one service share the terminal."""
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )


def run(coro: Any, log_level: str = "WARNING") -> None:
    """Run a service coroutine on uvloop when it is installed (about half the event-loop
    cost of asyncio's own loop for an HTTP server), else on asyncio's loop."""
    setup_logging(log_level)
    try:
        import uvloop
    except ImportError:
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(coro)
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


dataset_app = typer.Typer(
    no_args_is_help=True, help="Logged datasets: export, import, describe (Parquet, DSJson, CSV)."
)
offline_app = typer.Typer(
    no_args_is_help=True,
    help="The offline learner: evaluate, optimize, importance, re-join, promote.",
)
models_app = typer.Typer(no_args_is_help=True, help="Model releases: list the history, roll back.")
personas_app = typer.Typer(
    no_args_is_help=True,
    help="Personas: import profiles, segment, train, publish and roll back the persona model.",
)


def decision_point_configs(
    settings: Settings, config: Path | None
) -> dict[str, DecisionPointConfig]:
    """The decision points as the service sees them: the data directory's store (read
    only), else the ``--config`` file or the shipped defaults."""
    from learnloop.decision_points import load_config_file
    from offline_learner.rejoin import stored_configs

    stored = stored_configs(settings.data_dir) if config is None else None
    return stored if stored is not None else {c.name: c for c in load_config_file(settings.config)}


def configured_vw_args(decision_point: str, configs: dict[str, DecisionPointConfig]) -> str:
    """The decision point's configured VW arguments (what the service learns with)."""
    try:
        return configs[decision_point].vw_args
    except KeyError:
        raise InvalidInput(
            f"unknown decision point {decision_point!r}; known: {sorted(configs)}; "
            "or give the VW arguments"
        ) from None
