"""Offline reports: one self-contained HTML page with plots, and rich tables for the terminal.

Reports read the plain result payloads (``evaluation``, ``optimization``,
``importance``; the ``--json`` output of the ``learnloop offline`` commands), not the
objects that made them, so any payload saved as JSON can be rendered again later:

>>> import json, pathlib
>>> from offline_learner.report import render_html
>>> fixtures = pathlib.Path(__file__).parents[1] / "tests" / "fixtures" / "offline"
>>> payload = json.loads((fixtures / "evaluation_payload.json").read_text())
>>> page = render_html(payload)
>>> page.startswith("<!DOCTYPE html>"), page.count("<svg") >= 2
(True, True)

The page has its CSS inline, its plots as inline SVG and a Content-Security-Policy
forbidding any fetch: it opens from a file, offline, and can be mailed as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from learnloop.errors import InvalidInput
from offline_learner import report_html as h
from offline_learner import report_personas
from offline_learner import report_plots as plots
from offline_learner.report_terminal import USE, capped_note, render_tables

__all__ = ["KINDS", "render_html", "render_tables", "write_report"]

READ_ESTIMATES = (
    "Each point is a candidate's estimated reward per decision with its {level} "
    "confidence interval; the dashed blue line is the reference <b>{reference}</b>. "
    "The colour comes from the <i>paired</i> difference to the reference on the same "
    "decisions, which is tighter than comparing the two intervals by eye: "
    '<span class="tag better">green</span> its interval lies above zero (better), '
    '<span class="tag worse">red</span> below zero (worse), '
    '<span class="tag unclear">grey</span> it crosses zero: these data cannot tell the '
    "two apart, and more data or a smaller change is needed."
)
READ_WEIGHTS = (
    "<b>ESS</b> (effective sample size) is how many logged decisions the weighted "
    "estimate is worth; far below the row count means the candidate goes where the logging "
    "policy rarely went, and its interval widens. A large <b>max weight</b> means a few "
    "decisions dominate the estimate. The <b>probability floor</b> is the smallest probability "
    "the candidate gave a logged action (0: it never explores some actions)."
)
READ_OVER_TIME = (
    "Cumulative over event time: the black line is the mean logged reward of the "
    "decisions so far, each coloured line a candidate's running estimate on the same "
    "decisions. A learning candidate is replayed progressively (it predicts each decision "
    "before learning from it), so it starts near the logged policy or below and rises as "
    "it learns; lines that settle mean the estimate is stable."
)
READ_TRIALS = (
    "Every completed trial's difference to the current settings on the later, held-out "
    "part of the data, ranked by the lower bound of its interval (the tick), best on the "
    "left. A trial counts as better only if its lower bound is above the dashed zero line; "
    "with many trials one may cross it by chance, so treat a lower bound just above zero "
    "with suspicion."
)
READ_IMPORTANCE = (
    "Each bar is how much the policy's estimated reward drops when it learns and "
    "decides without that namespace or feature key (the full policy minus the ablated "
    "one, paired on the same decisions), with the interval of the drop. "
    '<span class="tag better">green</span>: the policy needs it to earn its reward; '
    '<span class="tag unclear">grey</span>: the interval crosses zero, removing it changes '
    'nothing these data can detect; <span class="tag worse">red</span>: the policy does '
    "better without it (it learns noise from it)."
)


def _level(candidates: Sequence[Mapping[str, Any]], primary: str) -> str:
    for candidate in candidates:
        est = candidate["estimates"].get(primary)
        if est is not None:
            return f"{est['level']:.0%}"
    return "95%"


def _evaluation_sections(payload: Mapping[str, Any], heading: str = "") -> list[str]:
    primary, reference = payload["primary"], payload["reference"]
    candidates = payload["candidates"]
    others = [c for c in candidates if c["name"] != reference]
    better = [c["name"] for c in others if plots.verdict(c.get("difference")) == "better"]
    worse = [c["name"] for c in others if plots.verdict(c.get("difference")) == "worse"]
    kind = "better" if better else ("worse" if worse and len(worse) == len(others) else "unclear")
    summary = (
        f"Significantly better than {h.esc(reference)}: "
        f"{', '.join(h.esc(n) for n in better) or 'none'}. "
        f"Significantly worse: {', '.join(h.esc(n) for n in worse) or 'none'}."
    )
    rows = []
    for c in candidates:
        est = c["estimates"].get(primary)
        ref = c["name"] == reference
        diff = c.get("difference")
        rows.append(
            [
                h.esc(c["name"]) + (" " + h.tag("reference") if ref else ""),
                h.esc(c.get("kind", "")),
                h.cell(est),
                "-" if ref or diff is None else f"{h.cell(diff)} {h.tag(plots.verdict(diff))}",
                h.count(est["effective_sample_size"] if est else None),
                h.num(est["max_weight"] if est else None, 2),
                h.num(c.get("probability_floor"), 4),
            ]
        )
    overview = h.table(
        [
            "candidate",
            "kind",
            primary,
            f"difference to {reference}",
            "ESS",
            "max weight",
            "probability floor",
        ],
        rows,
        numeric={2, 3, 4, 5, 6},
    )
    names = sorted({e for c in candidates for e in c["estimates"]}, key=_estimator_order)
    detail = h.table(
        ["candidate", *names],
        ([h.esc(c["name"]), *(h.cell(c["estimates"].get(e)) for e in names)] for c in candidates),
        numeric=set(range(1, len(names) + 1)),
    )
    args = h.table(
        ["candidate", "VW arguments"],
        (
            [h.esc(c["name"]), f"<code>{h.esc(c['vw_args'])}</code>"]
            for c in candidates
            if c.get("vw_args")
        ),
        numeric=set(),
    )
    level = _level(candidates, primary)
    parts = [
        h.section(
            f"{heading}Estimates ({primary}, {payload['n']:,} decisions{_inactive(payload)})",
            f'<p class="verdict {kind}">{summary}</p>',
            h.figure(
                plots.estimates_plot(candidates, primary, reference),
                READ_ESTIMATES.format(level=level, reference=h.esc(reference)),
            ),
            overview,
            f'<p class="howto">{READ_WEIGHTS}</p>',
        ),
        h.section(
            f"{heading}Cumulative reward over time",
            h.figure(plots.over_time_plot(candidates), READ_OVER_TIME),
        ),
        h.section(
            f"{heading}Every estimator",
            detail,
            '<p class="howto">IPS and SNIPS use only the logged rewards and weights; DM '
            "trusts a reward model entirely (its narrow interval ignores the model's error); "
            "DR and SNDR correct the model with the weights. Estimators that agree make the "
            "conclusion sturdier.</p>",
            args if any(c.get("vw_args") for c in candidates) else "",
        ),
    ]
    return parts


def _inactive(payload: Mapping[str, Any]) -> str:
    inactive = payload.get("inactive") or 0
    return f"; {inactive:,} never activated, left out" if inactive else ""


def _estimator_order(name: str) -> tuple[int, str]:
    order = ("IPS", "SNIPS", "DM", "DR", "SwitchDR", "SNDR")
    return (order.index(name) if name in order else len(order), name)


def _evaluation(payload: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    n = len(payload["candidates"])
    subtitle = f"{n} candidate{'s' if n != 1 else ''} against {h.esc(payload['reference'])}"
    sections = _evaluation_sections(payload) + _attached_importance(payload)
    sections.append(h.section("Dataset", h.dataset_table(payload["dataset"])))
    return "Off-policy evaluation", subtitle, sections


def _optimization(payload: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    primary, trials, best = payload["primary"], payload["trials"], payload.get("best")
    current = payload["current"]
    confirmed = [
        c for c in (payload.get("confirmation") or {}).get("candidates", []) if c["name"] == "best"
    ]
    if best is not None and payload["significantly_better"]:
        kind = "better"
        evidence = f"difference {h.cell(best['difference'])}"
        if confirmed:
            evidence = (
                f"difference {h.cell(confirmed[0]['difference'])} on the "
                f"{h.count(payload['split'].get('confirm_rows', 0))} confirmation rows the "
                f"search never saw ({h.cell(best['difference'])} where it was chosen)"
            )
        verdict = (
            f"Trial {best['number']} is significantly better than the current settings: "
            f"{evidence}.</p><p>Its arguments: <code>{h.esc(best['vw_args'])}</code>"
        )
    else:
        kind = "unclear"
        verdict = "No trial is significantly better than the current settings: keep them."
    split = payload["split"]
    split_table = h.table(
        ["fit on (earlier)", "evaluated on (later)", "confirmed on (latest)", "boundary"],
        [
            [
                h.count(split["fit_rows"]),
                h.count(split["eval_rows"]),
                h.count(split.get("confirm_rows", 0)),
                h.esc(split["boundary"]),
            ]
        ],
        numeric={0, 1, 2},
    )
    rows = []
    for rank, t in enumerate(trials, start=1):
        diff = t.get("difference")
        rows.append(
            [
                str(rank),
                str(t["number"]),
                h.esc(t["state"]),
                f"<code>{h.esc(t['vw_args'])}</code>",
                h.cell(t.get("estimate")),
                "-" if diff is None else f"{h.cell(diff)} {h.tag(plots.verdict(diff))}",
                h.esc(t.get("error") or ""),
            ]
        )
    trials_table = h.table(
        ["rank", "trial", "state", "VW arguments", primary, "difference to current", "error"],
        rows,
        numeric={0, 1, 4, 5},
    )
    sections = [
        h.section(
            "Search result",
            f'<p class="verdict {kind}">{verdict}</p>',
            f"<p>Current settings <code>{h.esc(current['vw_args'])}</code>: "
            f"{primary} {h.cell(current['estimate'])}</p>",
            split_table,
        ),
        h.section(
            f"Trials ({len(trials)})",
            h.figure(plots.trials_plot(trials), READ_TRIALS),
            trials_table,
        ),
    ]
    evaluation = payload.get("evaluation")
    if evaluation:
        sections.extend(_evaluation_sections(evaluation, heading="Best vs current: "))
    confirmation = payload.get("confirmation")
    if confirmation:
        sections.extend(
            _evaluation_sections(confirmation, heading="Confirmation (rows the search never saw): ")
        )
    sections.extend(_attached_importance(payload))
    sections.append(h.section("Dataset", h.dataset_table(payload["dataset"])))
    return "Policy search", f"{len(trials)} trials, {h.esc(primary)}", sections


def _importance_section(payload: Mapping[str, Any]) -> str:
    primary, features, full = payload["primary"], payload["features"], payload["full"]
    rows = [
        [
            h.esc(plots.group_label(f)),
            h.esc(f["group"]),
            h.cell(f["estimate"]),
            f"{h.cell(f['drop'])} {h.tag(plots.verdict(f['drop']), USE[plots.verdict(f['drop'])])}",
            h.count(f["estimate"]["effective_sample_size"]),
        ]
        for f in features
    ]
    used = [plots.group_label(f) for f in features if plots.verdict(f["drop"]) == "better"]
    summary = (
        f"The policy significantly relies on: {', '.join(h.esc(n) for n in used) or 'nothing'}."
    )
    return h.section(
        "Feature importance by ablation",
        f'<p class="verdict {"better" if used else "unclear"}">{summary}</p>',
        f"<p>Full policy <code>{h.esc(payload['vw_args'])}</code>: "
        f"{h.esc(primary)} {h.cell(full)} on {full['n']:,} decisions.</p>",
        h.figure(plots.importance_plot(features), READ_IMPORTANCE),
        f'<p class="howto">{h.esc(note)}</p>' if (note := capped_note(payload)) else "",
        h.table(
            ["removed", "group", f"{primary} without it", "drop (full minus without)", "ESS"],
            rows,
            numeric={2, 3, 4},
        ),
    )


def _importance(payload: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    sections = [
        _importance_section(payload),
        h.section("Dataset", h.dataset_table(payload["dataset"])),
    ]
    subtitle = f"{len(payload['features'])} groups, {h.esc(payload['primary'])}"
    return "Feature importance", subtitle, sections


def _attached_importance(payload: Mapping[str, Any]) -> list[str]:
    """An ``importance`` payload attached to an evaluation or optimization under the key
    ``"importance"`` (e.g. of the best policy) becomes a section of the same page."""
    attached = payload.get("importance")
    return [_importance_section(attached)] if isinstance(attached, Mapping) else []


KINDS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str, list[str]]]] = {
    "evaluation": _evaluation,
    "optimization": _optimization,
    "importance": _importance,
    "segmentation": report_personas.segmentation_page,
    "persona_training": report_personas.training_page,
}
"""Payload kind -> the function that builds its page's title, subtitle and sections."""


def render_html(
    payload: Mapping[str, Any], *, now: datetime | None = None, title: str | None = None
) -> str:
    """The report page for an ``evaluation``, ``optimization`` or ``importance`` payload.

    ``now`` is the generated time printed on the page (the current time by default);
    ``title`` overrides the kind's title.
    """
    kind = payload.get("kind") if isinstance(payload, Mapping) else None
    build = KINDS.get(str(kind))
    if build is None:
        raise InvalidInput(
            f"cannot render a report of kind {kind!r}: give a payload whose 'kind' is one of "
            f"{sorted(KINDS)} (the --json output of learnloop offline evaluate|optimize|importance)"
        )
    try:
        default_title, subtitle, sections = build(payload)
    except (KeyError, TypeError) as error:
        raise InvalidInput(
            f"the {kind} payload is incomplete or malformed ({type(error).__name__}: {error}): "
            "render the unmodified --json output of the command that made it"
        ) from None
    return h.page(title or default_title, subtitle, now or datetime.now(UTC), sections)


def write_report(
    payload: Mapping[str, Any],
    path: str | Path,
    *,
    now: datetime | None = None,
    title: str | None = None,
) -> Path:
    """Render ``payload`` and write the page to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    page = render_html(payload, now=now, title=title)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot write the report to {target}: {error}") from None
    return target
