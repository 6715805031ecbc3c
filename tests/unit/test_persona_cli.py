"""The persona pipeline through the CLI, on a simulated shop's books: segment (report,
segments file) -> name -> train (report, publish v1) -> models -> retrain (the kept
segments) -> rollback; unnamed segments and bad profile rows exit 2 saying what to fix.
The reports are self-contained pages with their plots inline as SVG."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import runtime.cli_personas_model  # noqa: F401  (registers the commands)
from devtools.simulator.history import export_history
from offline_learner.personas.segments_file import read_segments, rename_segments
from runtime.cli import cli

CLOSING = datetime(2026, 11, 30, tzinfo=UTC)
FAST = ["--iterations", "60", "--depth", "4"]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in {"href", "src"}]


def parsed(path: Path) -> Tags:
    page = Tags()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("LEARNLOOP_DATA_DIR", "LEARNLOOP_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_segment_name_train_retrain_rollback(runner: CliRunner, tmp_path: Path) -> None:
    books = tmp_path / "books.csv"
    export_history(books, seed=7, closing=CLOSING)
    data = ["--data-dir", str(tmp_path / "data")]
    segments = tmp_path / "segments.toml"
    result = runner.invoke(
        cli,
        ["personas", "segment", "--profiles", str(books), "--k-range", "4-6",
         "--segments-out", str(segments), "--report", str(tmp_path / "seg.html"), "--json", *data],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["kind"] == "segmentation" and payload["criterion"] == "silhouette"
    page = parsed(tmp_path / "seg.html")
    assert page.tags.count("svg") == 4 and not page.urls  # sizes, z-scores, PCA, criterion

    result = runner.invoke(
        cli, ["personas", "train", "--segments", str(segments), "--profiles", str(books), *data]
    )
    assert result.exit_code == 2
    assert "have no name" in " ".join(result.output.split())  # rich wraps long paths

    file, _, _ = read_segments(segments)
    rename_segments(segments, {s.cluster: f"persona_{s.cluster % 3}" for s in file.segments})
    result = runner.invoke(
        cli,
        ["personas", "train", "--segments", str(segments), "--profiles", str(books),
         "--report", str(tmp_path / "train.html"), "--json", *FAST, *data],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["kind"] == "persona_training" and trained["release"]["version"] == 1
    assert (
        parsed(tmp_path / "train.html").tags.count("svg") == 3
    )  # per class, confusion, importances

    result = runner.invoke(
        cli, ["personas", "retrain", "--profiles", str(books), "--json", *FAST, *data]
    )  # the segments kept by train
    assert result.exit_code == 0, result.output
    gate = json.loads(result.stdout)["gate"]
    assert gate["passed"] and gate["current_version"] == 1

    result = runner.invoke(cli, ["personas", "rollback", "--to", "1", *data])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["personas", "models", "--json", *data])
    history = [h["release"] for h in json.loads(result.stdout)]
    assert [(r["version"], r["source"], r["restores_version"]) for r in history] == [
        (3, "rollback", 1), (2, "retrain", None), (1, "train", None),
    ]  # fmt: skip
    assert history[0]["metrics"]["macro_f1"] == trained["macro_f1"]
    table = runner.invoke(cli, ["personas", "models", *data])
    assert table.exit_code == 0 and "v3" in table.output


def test_bad_profile_rows_are_named_and_nothing_runs(runner: CliRunner, tmp_path: Path) -> None:
    books = tmp_path / "books.csv"
    books.write_text(
        "user_id,orders,monetary,categories\n"
        "u1,3,10.0,{}\n"
        "u2,-1,10.0,{}\n"
        "u3,2,lots,{}\n"
        "u1,1,1.0,{}\n"
        'u4,1,1.0,"not json"\n'
    )
    result = runner.invoke(cli, ["personas", "segment", "--profiles", str(books), "--k", "2"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    for expected in (
        "4 bad rows",
        "row 2: orders",
        "row 3: monetary",
        "row 4: user 'u1' repeats row 1",
        "row 5: categories",
    ):
        assert expected in text
    assert not (tmp_path / "segments.toml").exists()


def test_rollback_without_models_says_train_first(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["personas", "rollback", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "train first" in result.output


def test_segment_and_train_from_the_profile_store(runner: CliRunner, tmp_path: Path) -> None:
    import asyncio

    from learnloop.profile_store_sqlite import FILE_NAME, SqliteProfileStore
    from offline_learner.personas.synthetic import planted_profiles

    profiles, _ = planted_profiles(300, seed=2, now=CLOSING)

    async def fill() -> None:
        store = SqliteProfileStore(tmp_path / "data" / FILE_NAME)
        await store.put_many(profiles)
        await store.close()

    asyncio.run(fill())
    data = ["--data-dir", str(tmp_path / "data")]
    segments = tmp_path / "segments.toml"
    result = runner.invoke(
        cli, ["personas", "segment", "--k", "5", "--segments-out", str(segments), "--json", *data]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["profiles"] == 300 and "profile store" in payload["source"]
    rename_segments(segments, {c: f"p{c}" for c in range(5)})
    result = runner.invoke(cli, ["personas", "train", "--segments", str(segments), *FAST, *data])
    assert result.exit_code == 0, result.output
    assert "published persona model v1" in " ".join(result.output.split())
