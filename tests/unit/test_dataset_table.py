"""Flat-table import (CSV and Parquet) through a column mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq
import pytest

from learnloop.errors import InvalidInput
from offline_learner.dataset import Dataset
from offline_learner.datasets.table_mapping import ColumnMapping

DATA = Path(__file__).parents[1] / "data" / "offline"
CSV = DATA / "logged.csv"
MAPPING = ColumnMapping.load(DATA / "logged_mapping.toml")


def test_csv_with_a_mapping_file() -> None:
    rows = list(Dataset.from_table(CSV, MAPPING, decision_point="shop"))
    assert [r.event_id for r in rows] == ["logged-1", "logged-2", "logged-3", "logged-4"]
    first = rows[0].decision
    assert first.timestamp == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    assert first.context.session_id == "s1" and first.persona == "unclassified"
    assert first.context.features == {"device": "mobile", "country": "no", "age": 31.0}
    assert "age" not in rows[1].decision.context.features  # empty cell: no feature
    assert [a.id for a in first.actions] == ["shoes", "hats", "bags"]
    assert first.actions[2].features == {"price": 80.0, "leather": True}
    assert first.chosen_index == 0 and first.probabilities == [0.5, 0.25, 0.25]
    assert rows[2].decision.chosen_action == "bags"
    assert [r.reward for r in rows] == [1.0, 0.0, 1.0, 0.0]
    summary = Dataset.from_table(CSV, MAPPING, decision_point="shop").describe()
    assert summary.rows == 4 and summary.propensity_min == 0.25 and summary.propensity_max == 0.6


def test_parquet_table_with_default_context_and_distinct_actions(tmp_path: Path) -> None:
    table = csv.read_csv(CSV)
    path = tmp_path / "logged.parquet"
    pq.write_table(table, path)
    mapping = ColumnMapping(action="item", propensity="prob", reward="clicked", timestamp="ts")
    rows = list(Dataset.from_table(path, mapping, decision_point="shop"))
    assert len(rows) == 4
    # every unmapped column is context; the candidates are the distinct actions seen
    assert set(rows[0].decision.context.features) == {"session", "device", "country", "age"}
    assert [a.id for a in rows[0].decision.actions] == ["shoes", "hats", "bags"]
    assert rows[1].decision.probabilities == [0.375, 0.25, 0.375]


def test_actions_from_a_list_column_and_features_from_json(tmp_path: Path) -> None:
    table = pa.table(
        {
            "a": ["x", "y"],
            "p": [0.5, 0.9],
            "r": [1, 2],
            "options": [["x", "y"], ["y", "z"]],
            "feats": [json.dumps({"x": {"size": 2}}), None],
            "page": ["home", "cart"],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    mapping = ColumnMapping(
        action="a", propensity="p", reward="r", actions="options", action_features="feats"
    )
    rows = list(Dataset.from_table(path, mapping))
    assert [a.id for a in rows[1].decision.actions] == ["y", "z"]
    assert rows[1].decision.chosen_index == 0 and rows[1].decision.probabilities == [
        0.9,
        pytest.approx(0.1),
    ]
    assert rows[0].decision.actions[0].features == {"size": 2.0}
    assert rows[0].decision.context.features == {"page": "home"}
    assert rows[0].decision.timestamp.year == 1970  # no timestamp column: row order kept


def test_missing_column_is_named() -> None:
    mapping = ColumnMapping(action="product", propensity="prob", reward="clicked")
    with pytest.raises(InvalidInput, match=r"no column 'product'.*its columns are ts, session"):
        Dataset.from_table(CSV, mapping)


def test_non_numeric_propensity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": ["x"], "p": ["high"], "r": [1.0]}), path)
    with pytest.raises(InvalidInput, match="propensity column 'p' holds string"):
        Dataset.from_table(path, ColumnMapping(action="a", propensity="p", reward="r"))


def test_bad_cells_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,p,r\nx,0.5,1\ny,1.5,0\n")
    with pytest.raises(InvalidInput, match=r"t.csv row 2: propensity 1.5 in 'p' is not in"):
        list(Dataset.from_table(path, ColumnMapping(action="a", propensity="p", reward="r")))
    path.write_text("a,p,r\nx,0.5,1\ny,lots,0\n")
    with pytest.raises(InvalidInput, match="cannot read"):
        list(Dataset.from_table(path, ColumnMapping(action="a", propensity="p", reward="r")))


def test_unknown_mapping_keys_and_formats(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown column-mapping keys cost"):
        ColumnMapping.from_dict({"action": "a", "propensity": "p", "reward": "r", "cost": "c"})
    with pytest.raises(InvalidInput, match="needs 'reward'"):
        ColumnMapping.from_dict({"action": "a", "propensity": "p"})
    other = tmp_path / "t.xlsx"
    other.write_text("")
    with pytest.raises(InvalidInput, match="cannot tell the table format"):
        Dataset.from_table(other, MAPPING)
