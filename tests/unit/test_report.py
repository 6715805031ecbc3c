"""Offline reports: every payload kind renders one self-contained page whose plots are
embedded SVG, nothing is fetched, user text is escaped, and the terminal tables say the
same; malformed payloads are refused with what to do."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from learnloop.errors import InvalidInput
from offline_learner.report import render_html, render_tables, write_report
from offline_learner.report_plots import BETTER, WORSE

FIXTURES = Path(__file__).parents[1] / "fixtures" / "offline"
NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
HOSTILE = '--><script>alert("x")</script><img src="http://evil.example/x.png">'


def payload(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{kind}_payload.json").read_text())
    return data


class Page(HTMLParser):
    """The parts of a page the checks look at: tags, attributes, SVG content, text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.svgs: list[dict[str, int]] = []
        self.text: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value:
                self.urls.append((tag, name, value))
        if tag == "svg":
            self.svgs.append({"path": 0, "use": 0})
            self._depth += 1
        elif self._depth and tag in ("path", "use"):
            self.svgs[-1][tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._depth:
            self.text.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.mark.parametrize(
    ("kind", "plots", "heading"),
    [
        ("evaluation", 2, "Off-policy evaluation"),
        ("optimization", 3, "Policy search"),  # trials, then best vs current: estimates, time
        ("importance", 1, "Feature importance"),
    ],
)
def test_each_kind_is_one_page_with_its_plots_embedded(kind: str, plots: int, heading: str) -> None:
    page = render_html(payload(kind), now=NOW)
    doc = parse(page)
    assert page.startswith("<!DOCTYPE html>") and heading in "".join(doc.text)
    assert len(doc.svgs) == plots
    for svg in doc.svgs:  # drawn, not empty: axes, markers and glyphs are paths
        assert svg["path"] > 20, svg
    # Self-contained: no script, stylesheet link, frame or image file, and every
    # reference inside the SVGs is a fragment of the same document.
    assert not {"script", "link", "iframe", "img", "object", "embed"} & set(doc.tags)
    assert all(value.startswith("#") for _, _, value in doc.urls), doc.urls
    assert "url(http" not in page and "@import" not in page
    assert "default-src 'none'" in page  # the CSP forbids any fetch the page might try
    assert "2026-12-02T09:30:00Z" in page


def test_user_text_is_escaped_everywhere() -> None:
    evaluation = payload("evaluation")
    evaluation["candidates"][2]["name"] = HOSTILE
    evaluation["candidates"][2]["vw_args"] = HOSTILE
    evaluation["dataset"]["source"] = HOSTILE
    importance = payload("importance")
    importance["features"][0]["name"] = HOSTILE
    importance["vw_args"] = HOSTILE
    optimization = payload("optimization")
    optimization["trials"][0]["vw_args"] = HOSTILE
    optimization["trials"][-1]["error"] = HOSTILE
    for data in (evaluation, importance, optimization):
        page = render_html(data, now=NOW)
        doc = parse(page)
        assert "script" not in doc.tags and "img" not in doc.tags
        assert not [u for u in doc.urls if "evil" in u[2]]
        assert "&lt;script&gt;" in page
        # The plots' SVG comments hold labels too; a "-->" in a name must not end one.
        assert "--><script>" not in page


def test_the_estimates_plot_colours_by_the_paired_difference() -> None:
    data = payload("evaluation")
    first_svg = render_html(data, now=NOW).split("<svg", 2)[1]
    assert BETTER in first_svg and WORSE in first_svg  # vw -q ca better, uniform worse
    for candidate in data["candidates"]:
        if candidate["difference"] is not None:
            candidate["difference"]["lower"] = -1.0
            candidate["difference"]["upper"] = 1.0
    unclear = render_html(data, now=NOW).split("<svg", 2)[1]
    assert BETTER not in unclear and WORSE not in unclear


def test_the_verdicts_are_written_out() -> None:
    page = render_html(payload("evaluation"), now=NOW)
    assert "Significantly better than logged: vw -q ca." in page
    assert "Significantly worse: uniform." in page
    opt = payload("optimization")
    assert f"Trial {opt['best']['number']} is significantly better" in render_html(opt, now=NOW)
    opt["significantly_better"] = False
    assert "No trial is significantly better" in render_html(opt, now=NOW)
    imp = render_html(payload("importance"), now=NOW)
    assert "significantly relies on: all context (c), page, persona (u)." in imp


def test_sparse_payloads_still_render() -> None:
    evaluation = payload("evaluation")
    for candidate in evaluation["candidates"]:
        candidate["over_time"] = []
    evaluation["candidates"] = evaluation["candidates"][:1]
    importance = payload("importance")
    importance["features"] = []
    optimization = payload("optimization")
    for trial in optimization["trials"]:
        trial.update(state="failed", estimate=None, difference=None, error="vw refused")
    optimization.update(best=None, significantly_better=False, evaluation=None)
    for data in (evaluation, importance, optimization):
        assert parse(render_html(data, now=NOW)).svgs


@pytest.mark.parametrize("kind", ["evaluation", "optimization"])
def test_an_attached_importance_becomes_a_section_of_the_page(kind: str) -> None:
    data = payload(kind)
    plain = parse(render_html(data, now=NOW))
    data["importance"] = payload("importance")
    page = render_html(data, now=NOW)
    assert len(parse(page).svgs) == len(plain.svgs) + 1
    assert "Feature importance by ablation" in page
    console = Console(record=True, width=200)
    for table in render_tables(data):
        console.print(table)
    assert "Importance by ablation" in console.export_text()


def test_capped_feature_groups_are_said() -> None:
    data = payload("importance")
    data.update(groups_seen=45, limit=30)
    note = "The data have 45 context feature groups; the 30 most frequent were ablated."
    assert note in render_html(data, now=NOW)
    console = Console(record=True, width=160)
    for table in render_tables(data):
        console.print(table)
    assert note in console.export_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(kind="segment"), "cannot render a report of kind 'segment'"),
        (lambda p: p.pop("candidates"), "incomplete or malformed"),
        (lambda p: p.update(candidates=[{"name": "x"}]), "incomplete or malformed"),
    ],
)
def test_malformed_payloads_are_refused(change: Any, message: str) -> None:
    data = payload("evaluation")
    change(data)
    with pytest.raises(InvalidInput, match=message):
        render_html(data, now=NOW)
    with pytest.raises(InvalidInput):
        render_tables(data)


@pytest.mark.parametrize("kind", ["evaluation", "optimization", "importance"])
def test_the_terminal_tables_show_the_same_results(kind: str) -> None:
    data = payload(kind)
    console = Console(record=True, width=200)
    for table in render_tables(data):
        console.print(table)
    text = console.export_text()
    assert "rows" in text and "4,000" in text  # the dataset summary
    if kind == "evaluation":
        assert "vw --squarecb" in text and "better" in text and "worse" in text
    elif kind == "optimization":
        assert data["best"]["vw_args"] in text and "failed: vw: unrecognised" in text
    else:
        assert "page" in text and "needed" in text and "no effect seen" in text


def test_terminal_cells_are_not_markup() -> None:
    data = payload("evaluation")
    data["candidates"][1]["name"] = "[bold red]uniform[/]"
    console = Console(record=True, width=200)
    for table in render_tables(data):
        console.print(table)
    assert "[bold red]uniform[/]" in console.export_text()


def test_write_report_writes_the_page(tmp_path: Path) -> None:
    data = payload("importance")
    target = write_report(data, tmp_path / "reports" / "importance.html", now=NOW)
    assert target.read_text(encoding="utf-8") == render_html(data, now=NOW)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidInput, match="cannot write the report"):
        write_report(copy.deepcopy(data), blocker / "x.html", now=NOW)
