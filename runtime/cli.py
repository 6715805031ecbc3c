"""The ``learnloop`` command line: the composition root's front door.

Every option is also an environment variable (``LEARNLOOP_PORT`` …); flags win.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from learnloop.errors import LearnloopError
from runtime import (  # noqa: F401  (they register their commands)
    cli_dataset,
    cli_importance,
    cli_models,
    cli_offline,
    cli_personas,
    cli_personas_model,
    cli_promote,
    cli_rejoin,
)
from runtime.cli_common import (
    BackendOpt,
    ConfigOpt,
    DataOpt,
    HostOpt,
    PortOpt,
    console,
    dataset_app,
    load_settings,
    models_app,
    offline_app,
    personas_app,
    setup_logging,
)
from runtime.cli_common import run as _run
from runtime.processes import settings_env

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
cli.add_typer(dataset_app, name="dataset")
cli.add_typer(offline_app, name="offline")
cli.add_typer(models_app, name="models")
cli.add_typer(personas_app, name="personas")


WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="API worker processes [env LEARNLOOP_WORKERS; one per core, one fewer "
        "when the embedded loop process shares the machine]",
    ),
]


@cli.command()
def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Run the decision service: N API worker processes and, embedded, one loop process
    (join and online learner), supervised; SIGTERM drains them all."""
    from runtime.supervisor import Supervisor, bind_listener, stop_event_on_signals
    from runtime.topology import service_children

    settings = load_settings(
        host=host, port=port, data_dir=data_dir, config=config, backend=backend, workers=workers
    )
    setup_logging(settings.log_level)
    if settings.backend == "embedded":
        from runtime.embedded import prepare_data_dir

        _run(prepare_data_dir(settings), settings.log_level)
    else:
        from runtime.distributed import prepare_backends

        _run(prepare_backends(settings), settings.log_level)
    try:
        listener = bind_listener(settings.host, settings.port)
    except LearnloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    children = service_children(settings, listener.fileno())
    supervisor = Supervisor(
        children,
        env=settings_env(settings),
        pass_fds=[listener.fileno()],
        run_dir=settings.data_dir / "run",
    )
    logging.getLogger("learnloop").info(
        "learnloop serving on http://%s:%d with %d API worker(s)%s (data in %s)",
        settings.host,
        settings.port,
        settings.api_workers(),
        " and the loop process" if settings.backend == "embedded" else "",
        settings.data_dir.resolve(),
    )
    stop = stop_event_on_signals()
    code = supervisor.run(stop)
    listener.close()
    raise typer.Exit(code)


@cli.command(hidden=True)
def worker(
    role: Annotated[str, typer.Argument(help="api or loop")],
    listen_fd: Annotated[int | None, typer.Option(help="Inherited listening socket")] = None,
) -> None:
    """One process of ``learnloop serve`` (started by its supervisor, not by hand)."""
    settings = load_settings()
    if role == "loop":
        from runtime.embedded import run_loop

        _run(run_loop(settings), settings.log_level)
        return
    if role != "api":
        console.print(f"[red]error:[/red] unknown worker role {role!r}: use api or loop")
        raise typer.Exit(2)
    listener = socket.socket(fileno=listen_fd) if listen_fd is not None else None
    if settings.backend == "kafka":
        from runtime.distributed import serve_api

        _run(serve_api(settings, listener), settings.log_level)
    else:
        from runtime.embedded import serve_api_worker

        _run(serve_api_worker(settings, listener), settings.log_level)


@cli.command()
def join(config: ConfigOpt = None) -> None:
    """Run the join worker on Kafka (distributed mode)."""
    from runtime.distributed import run_join_worker

    settings = load_settings(config=config, backend="kafka")
    _run(run_join_worker(settings), settings.log_level)


@cli.command()
def learn(config: ConfigOpt = None) -> None:
    """Run the online-learner worker on Kafka (distributed mode)."""
    from runtime.distributed import run_learner_worker

    settings = load_settings(config=config, backend="kafka")
    _run(run_learner_worker(settings), settings.log_level)


@cli.command()
def simulate(
    url: Annotated[
        str, typer.Option(help="Base URL of a running service")
    ] = "http://127.0.0.1:8000",
    decisions: Annotated[int, typer.Option(help="How many decisions to simulate")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shoppers)")] = 7,
    concurrency: Annotated[int, typer.Option(help="Decisions in flight")] = 64,
    decision_point: Annotated[str, typer.Option(help="Decision point to drive")] = "home_products",
    client_key: Annotated[
        str | None, typer.Option(envvar="LEARNLOOP_CLIENT_KEY", help="X-API-Key, if keys are set")
    ] = None,
    shop: Annotated[
        str, typer.Option(help="Hidden reward rule: mlm, or seasons (held out)")
    ] = "mlm",
    context: Annotated[
        str,
        typer.Option(
            help="What the front end sends: full (every feature), or minimal (page, season, "
            "device, region, logged_in; the history lives in the profile store)"
        ),
    ] = "full",
    purchases: Annotated[
        bool, typer.Option(help="Send basket values and the purchases that follow basket adds")
    ] = True,
    export_profiles: Annotated[
        Path | None,
        typer.Option(
            help="Only write the shop's profile history (.csv or .parquet) for "
            "`learnloop personas import-profiles`, and the truth beside it; no run"
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="Where --export-profiles writes the truth [FILE.truth.csv]"),
    ] = None,
) -> None:
    """Drive a running service with the synthetic multi-level-marketing shop."""
    from devtools.simulator import render_report, run_simulation

    if export_profiles is not None:
        from devtools.simulator.history import export_history

        try:
            written = export_history(export_profiles, truth, seed=seed, rule=shop)
        except LearnloopError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        console.print(
            f"wrote {written.profiles:,} profiles (closing {written.closing:%Y-%m-%d %H:%M} UTC) "
            f"to {export_profiles} and their personas to {written.truth} (keep it apart)"
        )
        return

    async def go() -> None:
        report = await run_simulation(
            url,
            decisions=decisions,
            seed=seed,
            concurrency=concurrency,
            decision_point=decision_point,
            client_key=client_key,
            shop=shop,
            context=context,
            purchases=purchases,
        )
        Console().print(render_report(report))

    _run(go())


@cli.command("simulate-flag")
def simulate_flag(
    flag: Annotated[str, typer.Argument(help="Flag to drive: checkout_layout or bulk_order_form")],
    url: Annotated[
        str, typer.Option(help="Base URL of a running service")
    ] = "http://127.0.0.1:8000",
    decisions: Annotated[int, typer.Option(help="How many evaluations to simulate")] = 4000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shoppers)")] = 7,
    concurrency: Annotated[int, typer.Option(help="Evaluations in flight")] = 64,
    persona: Annotated[
        str,
        typer.Option(
            help="explicit: each evaluation names the shopper's persona; service: the "
            "service resolves it (profiles, persona model)"
        ),
    ] = "service",
    context: Annotated[
        str, typer.Option(help="What the front end sends: minimal (the page view) or full")
    ] = "minimal",
    create: Annotated[
        bool, typer.Option(help="First PUT the flag, personalized over all its variants")
    ] = False,
    holdout: Annotated[
        float, typer.Option(help="With --create: share of evaluations kept on the default")
    ] = 0.1,
    anchor: Annotated[
        bool,
        typer.Option(help="Also run raw VW in process on the same visits, with the true persona"),
    ] = True,
    client_key: Annotated[
        str | None, typer.Option(envvar="LEARNLOOP_CLIENT_KEY", help="X-API-Key, if keys are set")
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="LEARNLOOP_ADMIN_API_KEY", help="Admin key, to read or create the flag"
        ),
    ] = None,
) -> None:
    """Drive a personalized flag with the shop's visits: learned vs default, per persona."""
    from devtools.simulator import render_flag_report, run_flag_anchor, run_flag_simulation

    async def go() -> None:
        report = await run_flag_simulation(
            url,
            flag,
            decisions=decisions,
            seed=seed,
            context=context,
            persona=persona,
            create=create,
            holdout_share=holdout,
            concurrency=concurrency,
            client_key=client_key,
            admin_key=admin_key,
        )
        compared = None
        if anchor:
            compared = run_flag_anchor(
                flag, decisions, seed, holdout_share=report.holdout_share, context=context
            )
        Console().print(render_flag_report(report, compared))

    _run(go())


@cli.command("export")
def export_dsjson(
    output: Annotated[Path, typer.Argument(help="File to write (VW DSJson, one line per example)")],
    data_dir: DataOpt = None,
    decision_point: Annotated[str | None, typer.Option(help="Only this decision point")] = None,
) -> None:
    """Export joined examples from the embedded log as VW DSJson (``vw --dsjson``)."""
    from runtime.embedded import export_joined

    settings = load_settings(data_dir=data_dir)
    count = asyncio.run(export_joined(settings, output, decision_point))
    console.print(f"wrote {count} joined examples to {output}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
