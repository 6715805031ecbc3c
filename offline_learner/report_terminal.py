"""The terminal view of an offline result payload: one rich table per section.

The same payloads as the HTML report (:mod:`offline_learner.report`); a command
prints these with its console and writes the page only when asked (``--report``).
Candidate names and arguments are user text, so cells are built as ``Text`` (no rich
markup is interpreted in them).

>>> from rich.console import Console
>>> payload = {"kind": "importance", "primary": "SNIPS", "vw_args": "--cb_explore_adf",
...            "dataset": {"rows": 10}, "full": {"value": 0.5, "lower": 0.4, "upper": 0.6,
...            "n": 10, "effective_sample_size": 9.0, "max_weight": 2.0},
...            "features": []}
>>> [type(t).__name__ for t in render_tables(payload)]
['Table', 'Table']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from learnloop.errors import InvalidInput
from offline_learner import report_personas
from offline_learner.report_html import LABELS, counts

STYLE = {"better": "green", "worse": "red", "unclear": "dim"}


def _verdict(difference: Mapping[str, Any] | None) -> str:
    if difference is None:
        return "unclear"
    if difference["lower"] > 0:
        return "better"
    if difference["upper"] < 0:
        return "worse"
    return "unclear"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(est: Mapping[str, Any] | None, digits: int = 4) -> Text:
    if est is None:
        return Text("-")
    low, high = _num(est["lower"], digits), _num(est["upper"], digits)
    return Text.assemble(_num(est["value"], digits), (f" [{low}, {high}]", "dim"))


def _diff(est: Mapping[str, Any] | None) -> Text:
    if est is None:
        return Text("-")
    verdict = _verdict(est)
    text = _cell(est)
    text.stylize(STYLE[verdict], 0, len(_num(est["value"])))
    if verdict != "unclear":
        text.append(f" {verdict}", STYLE[verdict])
    return text


def _dataset(summary: Mapping[str, Any]) -> Table:
    table = Table(title="Dataset", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, Mapping):
            shown = counts(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            shown = f"{value:,}"
        elif isinstance(value, float):
            shown = f"{value:.4g}"
        elif isinstance(value, list | tuple):
            shown = ", ".join(str(v) for v in value)
        else:
            shown = str(value)
        table.add_row(Text(LABELS.get(key, str(key))), Text(shown))
    return table


def evaluation_tables(payload: Mapping[str, Any], heading: str = "") -> list[Table]:
    """Candidates with their primary estimate and paired difference; every estimator."""
    primary, reference = payload["primary"], payload["reference"]
    candidates: Sequence[Mapping[str, Any]] = payload["candidates"]
    main = Table(
        title=f"{heading}{primary} on {payload['n']:,} decisions (reference: {reference})",
        title_justify="left",
    )
    for name in ("candidate", "kind", primary, f"minus {reference}"):
        main.add_column(name, justify="left" if name in ("candidate", "kind") else "right")
    for name in ("ESS", "max w", "floor"):
        main.add_column(name, justify="right")
    for c in candidates:
        est = c["estimates"].get(primary)
        main.add_row(
            Text(str(c["name"]), style="bold blue" if c["name"] == reference else ""),
            Text(str(c.get("kind", ""))),
            _cell(est),
            Text("-") if c["name"] == reference else _diff(c.get("difference")),
            _num(est["effective_sample_size"], 0) if est else "-",
            _num(est["max_weight"], 1) if est else "-",
            _num(c.get("probability_floor"), 4),
        )
    order = ("IPS", "SNIPS", "DM", "DR", "SwitchDR", "SNDR")
    names = sorted(
        {e for c in candidates for e in c["estimates"]},
        key=lambda e: (order.index(e) if e in order else len(order), e),
    )
    detail = Table(title=f"{heading}Every estimator", title_justify="left")
    detail.add_column("candidate")
    for name in names:
        detail.add_column(name, justify="right")
    for c in candidates:
        detail.add_row(Text(str(c["name"])), *(_cell(c["estimates"].get(e), 3) for e in names))
    return [main, detail]


def optimization_tables(payload: Mapping[str, Any]) -> list[Table]:
    """The ranked trials, then best vs current, then the dataset."""
    trials = Table(
        title=f"Trials ranked by the lower bound of the difference to current "
        f"({payload['primary']}; current {_num(payload['current']['estimate']['value'])})",
        title_justify="left",
    )
    for name, justify in (
        ("#", "right"),
        ("trial", "right"),
        ("state", "left"),
        ("VW arguments", "left"),
        ("difference", "right"),
    ):
        trials.add_column(name, justify=justify)  # type: ignore[arg-type]
    for rank, t in enumerate(payload["trials"], start=1):
        state = t["state"] if not t.get("error") else f"{t['state']}: {t['error']}"
        trials.add_row(
            str(rank), str(t["number"]), Text(state), Text(t["vw_args"]), _diff(t.get("difference"))
        )
    tables = [trials]
    if payload.get("evaluation"):
        tables.extend(evaluation_tables(payload["evaluation"], heading="Best vs current: "))
    if payload.get("confirmation"):
        tables.extend(evaluation_tables(payload["confirmation"], heading="Confirmation: "))
    tables.extend(_attached(payload))
    tables.append(_dataset(payload["dataset"]))
    return tables


def importance_tables(payload: Mapping[str, Any]) -> list[Table]:
    """Each removed namespace or feature key with the estimate without it and the drop."""
    from offline_learner.report_plots import group_label

    full = payload["full"]
    table = Table(
        title=f"Importance by ablation ({payload['primary']}; full policy "
        f"{_num(full['value'])} [{_num(full['lower'])}, {_num(full['upper'])}])",
        title_justify="left",
        caption=capped_note(payload),
    )
    table.add_column("removed")
    table.add_column("without it", justify="right", no_wrap=True)
    table.add_column("drop: full minus without", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for f in payload["features"]:
        verdict = _verdict(f["drop"])
        table.add_row(
            Text(group_label(f)),
            _num(f["estimate"]["value"], 3),
            _cell(f["drop"], 3),
            Text(USE[verdict], STYLE[verdict]),
        )
    return [table, _dataset(payload["dataset"])]


USE = {"better": "needed", "worse": "hurts", "unclear": "no effect seen"}
"""What a drop's interval says about the group, in words."""


def capped_note(payload: Mapping[str, Any]) -> str | None:
    """A sentence when fewer feature groups were ablated than the data has.

    >>> capped_note({"groups_seen": 45, "limit": 30})
    'The data have 45 context feature groups; the 30 most frequent were ablated.'
    """
    seen, limit = payload.get("groups_seen"), payload.get("limit")
    if isinstance(seen, int) and isinstance(limit, int) and seen > limit:
        return (
            f"The data have {seen} context feature groups; the {limit} most frequent were ablated."
        )
    return None


def _attached(payload: Mapping[str, Any]) -> list[Table]:
    attached = payload.get("importance")
    return importance_tables(attached)[:1] if isinstance(attached, Mapping) else []


def render_tables(payload: Mapping[str, Any]) -> list[Table]:
    """The terminal view of a payload: a list of rich tables to print one after another."""
    builders = {
        "evaluation": lambda p: [*evaluation_tables(p), *_attached(p), _dataset(p["dataset"])],
        "optimization": optimization_tables,
        "importance": importance_tables,
        "segmentation": report_personas.segmentation_tables,
        "persona_training": report_personas.training_tables,
    }
    kind = payload.get("kind") if isinstance(payload, Mapping) else None
    build = builders.get(str(kind))
    if build is None:
        raise InvalidInput(
            f"cannot show a result of kind {kind!r}: expected one of {sorted(builders)}"
        )
    try:
        return build(payload)
    except (KeyError, TypeError) as error:
        raise InvalidInput(
            f"the {kind} payload is incomplete or malformed ({type(error).__name__}: {error})"
        ) from None
