"""The promotion commands end to end on an embedded data directory (``learnloop offline
promote``, ``models list|audit|rollback``), the estimate a promotion records, and the
SQLite audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from learnloop.audit import SqliteAuditLog
from learnloop.errors import InvalidInput
from runtime.cli import cli
from runtime.releases import estimate_from_payload
from schemas.audit import ModelAuditRecord
from schemas.dsjson import to_dsjson
from tests.unit.test_online_learner import synthetic

DP = "home_products"
ARGS = "--cb_explore_adf --squarecb -q ca"
EST = {"estimator": "SNIPS", "value": 0.7, "lower": 0.6, "upper": 0.8, "level": 0.95}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


@pytest.fixture
def dsjson(tmp_path: Path) -> Path:
    path = tmp_path / "set.dsjson"
    path.write_text("".join(to_dsjson(e) + "\n" for e in synthetic(80)))
    return path


def test_promote_list_audit_and_roll_back(data: Path, dsjson: Path, tmp_path: Path) -> None:
    estimate = tmp_path / "opt.json"
    estimate.write_text(json.dumps({"kind": "optimization", "primary": "SNIPS", "best": {
        "vw_args": ARGS, "estimate": EST, "difference": EST}, "trials": []}))  # fmt: skip
    code, out = run(
        "offline", "promote", str(dsjson), "--decision-point", DP, "--vw-args", ARGS,
        "--estimate-json", str(estimate), "--by", "ana", "--data-dir", str(data), "--json",
    )  # fmt: skip
    assert code == 0, out
    promoted = json.loads(out)
    assert promoted["release"]["version"] == 1 and promoted["release"]["examples_learned"] == 80
    assert promoted["audit"]["estimate"]["estimate"] == EST
    assert promoted["audit"]["dataset"]["rows"] == 80
    code, out = run(
        "offline", "promote", str(dsjson), "--decision-point", DP,
        "--vw-args", "--cb_explore_adf --epsilon 0.1", "--data-dir", str(data), "--json",
    )  # fmt: skip
    assert code == 0, out

    code, out = run("models", "list", DP, "--data-dir", str(data), "--json")
    listing = json.loads(out)
    assert [r["release"]["version"] for r in listing["releases"]] == [2, 1]
    assert [a["by"] for a in listing["audit"]][1] == "ana"
    code, out = run("models", "list", DP, "--data-dir", str(data))
    assert code == 0

    code, out = run("models", "rollback", DP, "--data-dir", str(data), "--by", "bo", "--json")
    assert code == 0, out
    rolled = json.loads(out)["release"]
    assert (rolled["version"], rolled["restores_version"], rolled["vw_args"]) == (3, 1, ARGS)
    code, out = run("models", "audit", DP, "--data-dir", str(data), "--json")
    assert [r["action"] for r in json.loads(out)] == ["rollback", "promote", "promote"]


@pytest.mark.parametrize(
    "args",
    [
        ("models", "rollback", DP, "--to", "7"),  # no such release
        ("models", "rollback", "nowhere"),  # no such decision point
        ("offline", "promote", "missing.dsjson", "--decision-point", DP, "--vw-args", ARGS),
        ("offline", "promote", "SET", "--decision-point", DP, "--vw-args", "--epsilon 0.1"),
        ("offline", "promote", "SET", "--decision-point", "nowhere", "--vw-args", ARGS),
    ],
)
def test_bad_input_exits_2_with_a_message(data: Path, dsjson: Path, args: tuple[str, ...]) -> None:
    argv = [str(dsjson) if a == "SET" else a for a in args]
    result = CliRunner().invoke(cli, [*argv, "--data-dir", str(data)])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output


def test_a_missing_data_dir_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "list", DP, "--data-dir", str(tmp_path / "no")])
    assert result.exit_code == 2 and "no data directory" in result.output


EVALUATION: dict[str, Any] = {
    "kind": "evaluation",
    "primary": "SNIPS",
    "reference": "logged",
    "candidates": [
        {"name": "logged", "vw_args": None, "estimates": {"SNIPS": EST}, "difference": None},
        {"name": "c1", "vw_args": f" {ARGS} ", "estimates": {"SNIPS": EST}, "difference": EST},
    ],
}


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(EVALUATION, "evaluation"), (EST, "estimate")],
)
def test_estimate_from_payload(payload: dict[str, Any], kind: str) -> None:
    found = estimate_from_payload(payload, ARGS)
    assert found["kind"] == kind
    inner = found["estimate"]
    assert isinstance(inner, dict) and inner["value"] == 0.7


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({**EVALUATION, "candidates": EVALUATION["candidates"][:1]}, "no candidate"),
        ({"kind": "optimization", "best": {"vw_args": "--other"}, "trials": []}, "no trial"),
        ({"kind": "importance"}, "neither"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_estimate_from_payload_refuses(payload: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        estimate_from_payload(payload, ARGS)


async def test_sqlite_audit_log_is_newest_first_per_decision_point(tmp_path: Path) -> None:
    def record(n: int, dp: str = DP) -> ModelAuditRecord:
        return ModelAuditRecord(
            audit_id=f"a{n}", timestamp="2026-01-01T00:00:00Z", action="promote", by="x",
            decision_point=dp, version=n, vw_args_after=ARGS,
        )  # fmt: skip

    log = SqliteAuditLog(tmp_path / "audit.sqlite")
    for n in (1, 2, 3):
        await log.append(record(n))
    await log.append(record(9, "other"))
    await log.close()
    reopened = SqliteAuditLog(tmp_path / "audit.sqlite")
    assert [r.version for r in await reopened.records(DP)] == [3, 2, 1]
    assert [r.version for r in await reopened.records(DP, limit=1)] == [3]
    assert [r.version for r in await reopened.records("other")] == [9]
    await reopened.close()
