"""The persona report kinds render through the offline report machinery: self-contained
pages whose plots are inline SVG, payload text escaped, terminal tables for both, and a
malformed payload refused with what to do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from learnloop.errors import InvalidInput
from learnloop.persona_features import profile_features
from offline_learner.personas.segment import fit_segments, segmentation_payload
from offline_learner.personas.synthetic import planted_profiles
from offline_learner.personas.train import TrainSettings, fit_persona_model
from offline_learner.report import render_html, render_tables

NOW = datetime(2026, 12, 1, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def payloads() -> dict[str, dict[str, Any]]:
    profiles, truth = planted_profiles(300, seed=4, now=NOW)
    rows = [profile_features(p, {}, NOW) for p in profiles]
    ids = [HOSTILE if i == 0 else p.user_id for i, p in enumerate(profiles)]
    segmentation = fit_segments(rows, k_range=(4, 5), seed=1)
    names = {c: (HOSTILE if c == 0 else f"p{c}") for c in range(len(segmentation.model.centers))}
    seg = segmentation_payload(segmentation, rows, ids, source=HOSTILE, now=NOW, names=names)
    trained = fit_persona_model(
        rows, truth, settings=TrainSettings(iterations=30, depth=3), now=NOW, data_source=HOSTILE
    )
    return {"segmentation": seg, "persona_training": trained.payload}


@pytest.mark.parametrize(("kind", "svgs"), [("segmentation", 4), ("persona_training", 3)])
def test_pages_embed_their_plots_and_escape_text(
    payloads: dict[str, dict[str, Any]], kind: str, svgs: int
) -> None:
    page = render_html(payloads[kind], now=NOW)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == svgs
    assert "<script" not in page
    assert 'src="http' not in page and 'href="http' not in page  # nothing to fetch
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("kind", ["segmentation", "persona_training"])
def test_terminal_tables(payloads: dict[str, dict[str, Any]], kind: str) -> None:
    console = Console(record=True, width=160)
    for table in render_tables(payloads[kind]):
        console.print(table)
    text = console.export_text()
    assert ("segments of 300 profiles" if kind == "segmentation" else "macro-F1") in text


def test_malformed_payload_is_refused(payloads: dict[str, dict[str, Any]]) -> None:
    broken = {k: v for k, v in payloads["persona_training"].items() if k != "confusion"}
    with pytest.raises(InvalidInput, match="incomplete or malformed"):
        render_html(broken)
