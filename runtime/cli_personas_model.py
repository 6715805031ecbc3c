"""``learnloop personas segment | train | retrain | models | rollback``: the data
scientist's persona pipeline (on the ``personas`` group of :mod:`runtime.cli_common`).

segment -> name the segments in the segments file -> train (evaluates, publishes a
persona model) -> models / rollback; ``retrain`` repeats label, fit, evaluate and a
gated publish in one command, for a schedule. Profiles come from a profile export
(``--profiles FILE``) or from the profile store of ``--data-dir``/``--backend``.
Exit codes: 0 done, 1 a backend is unreachable or a retrain was refused, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from learnloop.errors import InvalidInput, LearnloopError, Unavailable
from learnloop.settings import Settings
from runtime.cli_common import BackendOpt, DataOpt, console, load_settings, personas_app

if TYPE_CHECKING:
    from offline_learner.personas.profiles_source import ProfileTable
    from schemas.personas import PersonaModelRelease

ProfilesOpt = Annotated[
    Path | None,
    typer.Option(
        "--profiles", help="A profile export (.csv or .parquet) [the profile store of the data dir]"
    ),
]
SegmentsOpt = Annotated[
    Path | None,
    typer.Option(
        "--segments",
        help="The named segments file [DATA_DIR/personas/segments.toml: the last one trained]",
    ),
]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="Write the HTML report here")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the payload as JSON on stdout")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds the clustering / the split and fit")]
TestShareOpt = Annotated[
    float, typer.Option("--test-share", min=0.05, max=0.9, help="Share of users held out")
]
IterationsOpt = Annotated[int, typer.Option("--iterations", min=1, help="CatBoost trees")]
DepthOpt = Annotated[int, typer.Option("--depth", min=1, max=10, help="CatBoost tree depth")]

CURRENT_SEGMENTS = "segments.toml"
"""The copy of the segments file the published model was trained with, under the
persona-model directory: what ``retrain`` labels new profiles with by default."""


def _fail(exc: LearnloopError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1 if isinstance(exc, Unavailable) else 2)


def _now() -> datetime:
    return datetime.now(UTC)


def _load_profiles(settings: Settings, profiles: Path | None) -> ProfileTable:
    from offline_learner.personas.profiles_source import read_profile_file, read_profile_store

    if profiles is not None:
        with console.status(f"reading {profiles}"):
            return read_profile_file(profiles)
    from runtime.cli_personas import open_profile_store

    async def read() -> ProfileTable:
        store = open_profile_store(settings)
        try:
            where = "Redis" if settings.backend == "kafka" else str(settings.data_dir)
            return await read_profile_store(store, f"the profile store of {where}")
        finally:
            await store.close()

    with console.status("reading the profile store"):
        return asyncio.run(read())


def _show(payload: Mapping[str, Any], report: Path | None, as_json: bool) -> None:
    from offline_learner.report import render_tables, write_report

    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        for table in render_tables(payload):
            console.print(table)
    if report is not None:
        console.print(f"report: {write_report(payload, report)}")


def _k_range(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        return int(low), int(high or low)
    except ValueError:
        raise InvalidInput(f"--k-range {text!r}: give two numbers like 2-8") from None


def _store_root(settings: Settings) -> Path:
    from learnloop.persona_models import DIRECTORY

    return Path(settings.data_dir) / DIRECTORY


@personas_app.command("segment")
def segment_command(
    profiles: ProfilesOpt = None,
    method: Annotated[
        str, typer.Option("--method", help="kmeans (k by silhouette) or gmm (k by BIC)")
    ] = "kmeans",
    k: Annotated[int | None, typer.Option("--k", min=2, help="Number of segments")] = None,
    k_range: Annotated[
        str, typer.Option("--k-range", help="Range of k to choose from when --k is not given")
    ] = "2-8",
    report: ReportOpt = None,
    segments_out: Annotated[
        Path, typer.Option("--segments-out", help="The editable segments file to write")
    ] = Path("segments.toml"),
    seed: SeedOpt = 0,
    data_dir: DataOpt = None,
    backend: BackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cluster the profiles and write the report a data scientist reads to name the
    segments, and the segments file to name them in."""
    from offline_learner.personas.segment import fit_segments, segmentation_payload
    from offline_learner.personas.segments_file import write_segments

    settings = load_settings(data_dir=data_dir, backend=backend)
    try:
        if method not in {"kmeans", "gmm"}:
            raise InvalidInput(f"--method {method!r}: use kmeans or gmm")
        table = _load_profiles(settings, profiles)
        rows = table.features()
        with console.status(f"clustering {len(rows):,} profiles"):
            segmentation = fit_segments(
                rows,
                method="gmm" if method == "gmm" else "kmeans",
                k=k,
                k_range=_k_range(k_range),
                seed=seed,
            )
            payload = segmentation_payload(
                segmentation, rows, table.user_ids, source=table.source, now=_now()
            )
        path, model_path = write_segments(segments_out, segmentation.model, payload, _now())
    except LearnloopError as exc:
        raise _fail(exc) from exc
    _show(payload, report, as_json)
    console.print(
        f"segments: {path} (name each segment there, then: learnloop personas train "
        f"--segments {path}); segment model: {model_path}"
    )


def _publish(settings: Settings, release: PersonaModelRelease, model: bytes) -> PersonaModelRelease:
    from learnloop.persona_models import open_persona_model_store

    async def publish() -> PersonaModelRelease:
        store = open_persona_model_store(settings)
        try:
            return await store.publish(release, model)
        finally:
            await store.close()

    return asyncio.run(publish())


def _keep_segments(settings: Settings, segments: Path) -> None:
    """Copy the segments file and its model where ``retrain`` looks by default."""
    from offline_learner.personas.segments_file import model_path_for

    root = _store_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    target = root / CURRENT_SEGMENTS
    if segments.resolve() != target.resolve():
        text = segments.read_text(encoding="utf-8")
        source_model = model_path_for(segments)
        target_model = model_path_for(target)
        shutil.copyfile(source_model, target_model)
        target.write_text(text.replace(source_model.name, target_model.name), encoding="utf-8")


@personas_app.command("train")
def train_command(
    segments: Annotated[Path, typer.Option("--segments", help="The named segments file")],
    profiles: ProfilesOpt = None,
    test_share: TestShareOpt = 0.25,
    seed: SeedOpt = 0,
    iterations: IterationsOpt = 300,
    depth: DepthOpt = 6,
    report: ReportOpt = None,
    publish: Annotated[
        bool, typer.Option(help="Publish the model to the persona-model store")
    ] = True,
    data_dir: DataOpt = None,
    backend: BackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Label the profiles with the named segments, fit CatBoost, evaluate it on held-out
    users and publish it as the next persona-model version."""
    from offline_learner.personas.segments_file import read_segments, segment_names
    from offline_learner.personas.train import TrainSettings, fit_persona_model, label_rows

    settings = load_settings(data_dir=data_dir, backend=backend)
    try:
        segment_file, segment_model, reference = read_segments(segments)
        names = segment_names(segment_file, segments)
        table = _load_profiles(settings, profiles)
        rows = table.features()
        with console.status(f"training on {len(rows):,} profiles"):
            trained = fit_persona_model(
                rows,
                label_rows(segment_model, names, rows),
                settings=TrainSettings(
                    test_share=test_share, seed=seed, iterations=iterations, depth=depth
                ),
                now=_now(),
                segments=reference,
                data_source=table.source,
            )
        payload = dict(trained.payload)
        if publish:
            release = _publish(settings, trained.release, trained.model.to_bytes())
            _keep_segments(settings, segments)
            payload["release"] = {"version": release.version, "source": release.source}
    except LearnloopError as exc:
        raise _fail(exc) from exc
    _show(payload, report, as_json)
    if publish:
        console.print(f"published persona model v{payload['release']['version']}")


@personas_app.command("retrain")
def retrain_command(
    segments: SegmentsOpt = None,
    profiles: ProfilesOpt = None,
    margin: Annotated[
        float,
        typer.Option("--margin", min=0.0, help="Publish unless macro-F1 drops by more than this"),
    ] = 0.02,
    test_share: TestShareOpt = 0.25,
    seed: SeedOpt = 0,
    iterations: IterationsOpt = 300,
    depth: DepthOpt = 6,
    report: ReportOpt = None,
    data_dir: DataOpt = None,
    backend: BackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One schedulable step: read the profiles, label them with the current segments, fit,
    evaluate the new and the current model on the same held-out users, and publish only
    if the new one is not worse by more than --margin (else exit 1 saying both)."""
    from learnloop.persona_models import open_persona_model_store
    from offline_learner.personas.retrain import RetrainOutcome, RetrainRefused, retrain
    from offline_learner.personas.train import TrainSettings

    settings = load_settings(data_dir=data_dir, backend=backend)
    segments_path = segments or _store_root(settings) / CURRENT_SEGMENTS

    async def run(rows: Any, source: str) -> RetrainOutcome:
        store = open_persona_model_store(settings)
        try:
            return await retrain(
                store,
                rows,
                segments_path,
                now=_now(),
                margin=margin,
                settings=TrainSettings(
                    test_share=test_share, seed=seed, iterations=iterations, depth=depth
                ),
                data_source=source,
            )
        finally:
            await store.close()

    try:
        table = _load_profiles(settings, profiles)
        with console.status("retraining"):
            outcome = asyncio.run(run(table.features(), table.source))
    except RetrainRefused as exc:
        _show(exc.payload, report, as_json)
        console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from exc
    except LearnloopError as exc:
        raise _fail(exc) from exc
    _show(outcome.payload, report, as_json)
    if outcome.release is not None:
        console.print(f"published persona model v{outcome.release.version}")


@personas_app.command("models")
def models_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest versions to show")] = 20,
    data_dir: DataOpt = None,
    backend: BackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The persona-model versions, newest first: when, who made it, held-out macro-F1,
    personas, the segments it was trained on."""
    from rich.table import Table

    from learnloop.persona_models import open_persona_model_store
    from schemas.personas import StoredPersonaRelease

    settings = load_settings(data_dir=data_dir, backend=backend)

    async def read() -> list[StoredPersonaRelease]:
        store = open_persona_model_store(settings)
        try:
            return await store.history(limit)
        finally:
            await store.close()

    try:
        history = asyncio.run(read())
    except LearnloopError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps([h.model_dump(mode="json") for h in history], indent=2) + "\n")
        return
    if not history:
        console.print("no persona model yet: learnloop personas train --segments FILE")
        return
    table = Table(title="persona models, newest first")
    for column in ("version", "created", "source", "macro-F1", "held out", "personas", "segments"):
        table.add_column(column, overflow="fold")
    for index, entry in enumerate(history):
        r = entry.release
        source = r.source + (f" of v{r.restores_version}" if r.restores_version else "")
        f1 = r.metrics.get("macro_f1")
        table.add_row(
            f"v{r.version}" + (" (current)" if index == 0 else ""),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            source,
            "" if f1 is None else f"{f1:.4f}",
            f"{r.test_size:,}",
            ", ".join(r.classes),
            f"{r.segments.name} {r.segments.digest}" if r.segments else "",
        )
    console.print(table)


@personas_app.command("rollback")
def rollback_command(
    to: Annotated[
        int | None,
        typer.Option("--to", min=1, help="Version to serve again [the one before the current]"),
    ] = None,
    data_dir: DataOpt = None,
    backend: BackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve an earlier persona model again: its bytes are republished as the next
    version; every API process swaps to it."""
    from learnloop.persona_models import open_persona_model_store, rollback

    settings = load_settings(data_dir=data_dir, backend=backend)

    async def run() -> PersonaModelRelease:
        store = open_persona_model_store(settings)
        try:
            return await rollback(store, _now(), to_version=to)
        finally:
            await store.close()

    try:
        release = asyncio.run(run())
    except LearnloopError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(release.model_dump_json(indent=2) + "\n")
        return
    console.print(f"persona model v{release.restores_version} serves again, as v{release.version}")
