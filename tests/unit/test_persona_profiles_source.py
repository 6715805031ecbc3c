"""Profiles for segmentation and training from an export: CSV and Parquet read alike,
``ctx.*`` columns become context features the classifier is trained with, and the
features are computed as of the export's latest activity (the same file, the same rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.simulator.history import shop_history, write_profiles
from devtools.simulator.shop import Shop
from learnloop.errors import InvalidInput
from offline_learner.personas.profiles_source import read_profile_file
from offline_learner.personas.train import TrainSettings, fit_persona_model

CLOSING = datetime(2026, 11, 30, tzinfo=UTC)


def test_csv_and_parquet_read_alike(tmp_path: Path) -> None:
    books = shop_history(Shop(seed=3, population=60), CLOSING)
    write_profiles(tmp_path / "b.csv", books)
    write_profiles(tmp_path / "b.parquet", books)
    csv_table = read_profile_file(tmp_path / "b.csv")
    parquet_table = read_profile_file(tmp_path / "b.parquet")
    assert csv_table.profiles == parquet_table.profiles == [b.profile() for b in books]
    assert csv_table.as_of() <= CLOSING
    assert csv_table.features() == parquet_table.features()


def test_context_columns_are_trained_with(tmp_path: Path) -> None:
    lines = ["user_id,orders,monetary,recruits,ctx.device"]
    for i in range(80):
        kind = i % 2
        lines.append(
            f"u{i},{1 + kind * 5},{20 + kind * 300},{kind * 9},{'desktop' if kind else 'mobile'}"
        )
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines) + "\n")
    table = read_profile_file(path)
    rows = table.features()
    assert rows[1]["ctx.device"] == "desktop"
    labels = ["big" if r["recruits"] else "small" for r in rows]
    trained = fit_persona_model(
        rows, labels, settings=TrainSettings(iterations=20, depth=2), now=CLOSING
    )
    assert trained.model.context_features == ("device",)
    assert trained.release.context_features == ["device"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.txt", "user_id\nu1\n", "name it .csv or .parquet"),
        ("p.csv", "orders\n1\n", "no user_id column"),
        ("p.csv", "user_id\n", "holds no profiles"),
    ],
)
def test_unreadable_exports_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(InvalidInput, match=message):
        read_profile_file(tmp_path / name)
