"""``learnloop dataset export|import|describe`` through typer's CliRunner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.kafka.codec import to_append
from offline_learner.dataset import Dataset
from runtime.cli import cli
from tests.unit.dataset_examples import examples

DATA = Path(__file__).parents[1] / "data" / "offline"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("LEARNLOOP_DATA_DIR", "LEARNLOOP_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _fill_log(data_dir: Path, n: int) -> None:
    async def fill() -> None:
        log = SqliteEventLog(data_dir / "log")
        try:
            await log.append([to_append(e) for e in examples(n)])
        finally:
            await log.close()

    asyncio.run(fill())


def test_export_from_the_embedded_log(runner: CliRunner, tmp_path: Path) -> None:
    _fill_log(tmp_path / "data", 20)
    out = tmp_path / "ds"
    args = ["dataset", "export", str(out), "--data-dir", str(tmp_path / "data"), "--json"]
    result = runner.invoke(cli, [*args, "--decision-point", "home", "--start", "2026-03-01T23:00"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    wanted = [e for e in examples(20) if e.decision.decision_point == "home"][4:]
    assert summary["rows"] == len(wanted) == 9
    assert summary["first"] == "2026-03-01T23:10:00Z"
    assert sorted(e.event_id for e in Dataset.from_parquet(out)) == sorted(
        e.event_id for e in wanted
    )
    dsjson = tmp_path / "out.dsjson"
    result = runner.invoke(
        cli,
        [
            "dataset",
            "export",
            str(dsjson),
            "--data-dir",
            str(tmp_path / "data"),
            "--format",
            "dsjson",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(dsjson.read_text().splitlines()) == 20
    assert "rows" in result.output and "20" in result.output  # the summary table


def test_import_dsjson_and_describe(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "pets"
    result = runner.invoke(
        cli,
        ["dataset", "import", str(DATA / "personalizer.json"), str(out), "--decision-point", "pets",
         "--include-skipped"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["dataset", "describe", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 3 and summary["not_activated"] == 1
    assert summary["decision_points"] == {"pets": 3}
    table = runner.invoke(cli, ["dataset", "describe", str(out)])
    assert "logging propensity" in table.output and "0.05 .. 0.9" in table.output


def test_import_csv_with_column_options(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "shop"
    result = runner.invoke(
        cli,
        ["dataset", "import", str(DATA / "logged.csv"), str(out), "--action", "item",
         "--propensity", "prob", "--reward", "clicked", "--timestamp", "ts",
         "--context", "device,country", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 4
    rows = list(Dataset.from_parquet(out))
    assert rows[0].decision.context.features == {"device": "mobile", "country": "no"}
    with_file = runner.invoke(
        cli,
        ["dataset", "import", str(DATA / "logged.csv"), str(tmp_path / "shop2"),
         "--mapping", str(DATA / "logged_mapping.toml"), "--json"],
    )  # fmt: skip
    assert with_file.exit_code == 0, with_file.output
    assert json.loads(with_file.stdout)["propensity_max"] == 0.6


def test_bad_input_exits_2_with_a_message(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["dataset", "import", str(DATA / "logged.csv"), str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert "needs a column mapping" in result.output
    result = runner.invoke(cli, ["dataset", "describe", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no dataset at" in result.output
    result = runner.invoke(
        cli,
        ["dataset", "export", str(tmp_path / "y"), "--data-dir", str(tmp_path), "--start", "soon"],
    )
    assert result.exit_code == 2 and "not an ISO 8601" in result.output
