"""``learnloop personas import-profiles``: every bad row listed, nothing half-written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.pseudonyms import pseudonymize
from learnloop.profile_import import validate_rows
from learnloop.profile_store_sqlite import SqliteProfileStore
from learnloop.profiles import all_profiles
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY
from runtime.cli import cli
from schemas.profiles import UserProfile

KEY = DEVELOPMENT_PSEUDONYM_KEY.encode()
HEADER = "user_id,orders,monetary,items,categories,recruits,last_order_at"
GOOD = [
    'alice,3,120.5,7,"{""tea"": 4, ""kits"": 3}",0,2026-02-01T10:00:00Z',
    "bob,0,0,0,,5,",
]


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def stored(data: Path) -> dict[str, UserProfile]:
    async def read() -> dict[str, UserProfile]:
        store = SqliteProfileStore(data / "profiles.sqlite")
        try:
            return {p.user_id: p async for p in all_profiles(store)}
        finally:
            await store.close()

    return asyncio.run(read())


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["personas", "import-profiles", *args])
    return result.exit_code, result.output


def test_a_good_csv_is_imported_under_pseudonyms(tmp_path: Path) -> None:
    code, out = invoke(str(write_csv(tmp_path / "p.csv", GOOD)), "--data-dir", str(tmp_path))
    assert code == 0, out
    assert "imported 2 profiles" in out
    profiles = stored(tmp_path)
    alice = profiles[pseudonymize("alice", KEY)]
    assert (alice.orders, alice.monetary, alice.items, alice.categories) == (
        3, 120.5, 7, {"tea": 4, "kits": 3},
    )  # fmt: skip
    assert alice.last_order_at is not None and alice.last_order_at.isoformat().startswith("2026-02")
    bob = profiles[pseudonymize("bob", KEY)]
    assert (bob.recruits, bob.categories, bob.last_order_at) == (5, {}, None)
    assert "alice" not in json.dumps([p.model_dump(mode="json") for p in profiles.values()])


def test_bad_rows_are_each_named_and_nothing_is_written(tmp_path: Path) -> None:
    lines = [
        *GOOD,
        "carol,-2,10,1,,0,",  # row 3: negative count
        'dave,1,lots,1,"{bad json",0,',  # row 4: two bad cells
        ",1,1,1,,0,",  # row 5: no user id
        "alice,1,1,1,,0,",  # row 6: duplicate user
        "erin,1,1,1,,0,2026-01-01T00:00:00",  # row 7: time without a zone
    ]
    code, out = invoke(str(write_csv(tmp_path / "p.csv", lines)), "--data-dir", str(tmp_path))
    assert code == 2
    assert "5 of 7 rows" in out and "nothing was written" in out
    for expected in (
        "row 3, column orders",
        "row 4, column monetary",
        "row 4, column categories: not a JSON object",
        "row 5, column user_id: empty",
        "row 6, column user_id: 'alice' is also in row 1",
        "row 7, column last_order_at",
    ):
        assert expected in out, (expected, out)
    assert stored(tmp_path) == {}


def test_unknown_columns_and_missing_user_id_are_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", ["alice,1"], header="user_id,ordres")
    code, out = invoke(str(path), "--data-dir", str(tmp_path))
    assert code == 2 and "unknown columns ordres" in out
    path = write_csv(tmp_path / "q.csv", ["1"], header="orders")
    code, out = invoke(str(path), "--data-dir", str(tmp_path))
    assert code == 2 and "no user_id column" in out
    code, out = invoke(str(tmp_path / "p.txt"), "--data-dir", str(tmp_path))
    assert code == 2 and "--format" in out


def test_parquet_with_a_map_of_categories_and_dry_run(tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": ["alice", "bob"],
            "orders": pa.array([2, 1], pa.int64()),
            "categories": pa.array([[("tea", 2)], []], pa.map_(pa.string(), pa.int64())),
            "last_seen": pa.array([None, None], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    code, out = invoke(str(tmp_path / "p.parquet"), "--data-dir", str(tmp_path), "--dry-run")
    assert code == 0 and "validated 2 profiles" in out
    assert stored(tmp_path) == {}
    code, out = invoke(str(tmp_path / "p.parquet"), "--data-dir", str(tmp_path))
    assert code == 0, out
    assert stored(tmp_path)[pseudonymize("alice", KEY)].categories == {"tea": 2}


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"user_id": "a", "categories": "[1, 2]"}, "categories"),
        ({"user_id": "a", "categories": '{"tea": -1}'}, "categories.tea"),
        ({"user_id": "a", "sessions": "1.5"}, "sessions"),
        ({"user_id": "a", "basket_value": "nan"}, "basket_value"),
    ],
)
def test_cell_errors_name_their_column(row: dict[str, str], column: str) -> None:
    updates, errors = validate_rows([row], lambda u: u)
    assert updates == []
    assert [e.column for e in errors] == [column]
