"""The report's plots, drawn with matplotlib and returned as inline SVG text.

Inline SVG keeps a report one file that opens offline: no image files beside it, no
script, no font fetch (glyphs are drawn as paths, matplotlib's default). Every plot
reads the plain payload dicts of :mod:`offline_learner.report`, so the plots do not
depend on the replay code. matplotlib is imported inside the functions (Agg backend),
since the CLI that imports this module also starts every service process.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

BETTER = "#1a7f37"
WORSE = "#cf222e"
UNCLEAR = "#57606a"
REFERENCE = "#0969da"
LOGGED = "#24292f"
SERIES = ("#bf3989", "#0969da", "#9a6700", "#8250df", "#1b7c83", "#1a7f37", "#cf222e")

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def verdict(difference: Mapping[str, Any] | None) -> str:
    """``better``, ``worse`` or ``unclear``: where a paired difference's interval lies
    with respect to zero (``None``, the reference itself, is ``unclear``).

    >>> verdict({"lower": 0.01, "upper": 0.2}), verdict({"lower": -0.1, "upper": 0.1})
    ('better', 'unclear')
    """
    if difference is None:
        return "unclear"
    if difference["lower"] > 0:
        return "better"
    if difference["upper"] < 0:
        return "worse"
    return "unclear"


COLOURS = {"better": BETTER, "worse": WORSE, "unclear": UNCLEAR}


@contextmanager
def _figure(width: float, height: float, salt: str) -> Iterator[Any]:
    """A matplotlib figure on the Agg backend, closed afterwards; ``salt`` makes the
    SVG's element ids distinct from the other plots' inlined in the same page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style: dict[str, Any] = {
        "svg.hashsalt": salt,
        "svg.fonttype": "path",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    }
    with matplotlib.rc_context(style):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def _svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element (no XML prologue, no doctype, no date)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _PROLOGUE.sub("", buffer.getvalue(), count=1).strip()


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def estimates_plot(candidates: Sequence[Mapping[str, Any]], primary: str, reference: str) -> str:
    """Each candidate's primary estimate with its interval, coloured by the paired
    difference to the reference (green better, red worse, grey unclear); the
    reference's value is a dashed blue line."""
    rows = [c for c in candidates if primary in c["estimates"]]
    with _figure(8.0, 0.9 + 0.45 * max(len(rows), 1), "estimates") as (fig, ax):
        for y, candidate in enumerate(rows):
            est = candidate["estimates"][primary]
            is_reference = candidate["name"] == reference
            colour = REFERENCE if is_reference else COLOURS[verdict(candidate.get("difference"))]
            low, high = est["value"] - est["lower"], est["upper"] - est["value"]
            ax.errorbar(
                est["value"],
                y,
                xerr=[[max(low, 0.0)], [max(high, 0.0)]],
                fmt="D" if is_reference else "o",
                color=colour,
                capsize=4,
                markersize=6,
            )
            if is_reference:
                ax.axvline(est["value"], color=REFERENCE, linestyle="--", linewidth=1)
        ax.set_yticks(range(len(rows)), [_short(str(c["name"])) for c in rows])
        ax.invert_yaxis()
        ax.set_xlabel(f"estimated reward per decision ({primary}, {_level(rows, primary)})")
        ax.grid(axis="y", visible=False)
        return _svg(fig)


def _level(rows: Sequence[Mapping[str, Any]], primary: str) -> str:
    if not rows:
        return "no candidates"
    return f"{rows[0]['estimates'][primary]['level']:.0%} interval"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def over_time_plot(candidates: Sequence[Mapping[str, Any]]) -> str:
    """Cumulative mean logged reward and each candidate's running estimate over event
    time (the ``over_time`` points); the logged line is drawn once, in black."""
    with _figure(8.0, 3.6, "over-time") as (fig, ax):
        logged_drawn = False
        colours = iter(SERIES * (1 + len(candidates) // len(SERIES)))
        for candidate in candidates:
            points = candidate.get("over_time") or []
            if not points:
                continue
            times = [_time(p["end"]) for p in points]
            if not logged_drawn:
                ax.plot(
                    times,
                    [p["logged"] for p in points],
                    color=LOGGED,
                    linewidth=2.2,
                    label="logged (mean so far)",
                )
                logged_drawn = True
            if candidate.get("kind") == "logged":
                continue
            ax.plot(
                times,
                [p["value"] for p in points],
                color=next(colours),
                linewidth=1.5,
                label=_short(str(candidate["name"]), 40),
            )
        if logged_drawn:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_ylabel("cumulative reward per decision")
        fig.autofmt_xdate()
        return _svg(fig)


def importance_plot(features: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars: how much the estimate drops without each namespace or feature,
    with the paired interval of the drop (green: the policy significantly needs it)."""
    with _figure(8.0, 0.9 + 0.42 * max(len(features), 1), "importance") as (fig, ax):
        drops = [f["drop"] for f in features]
        values = [d["value"] for d in drops]
        err = [
            [max(d["value"] - d["lower"], 0.0) for d in drops],
            [max(d["upper"] - d["value"], 0.0) for d in drops],
        ]
        colours = [COLOURS[verdict(d)] for d in drops]
        ys = range(len(features))
        ax.barh(ys, values, xerr=err, color=colours, capsize=3, height=0.6)
        ax.axvline(0.0, color=LOGGED, linewidth=1)
        labels = [group_label(f) for f in features]
        ax.set_yticks(list(ys), labels)
        ax.invert_yaxis()
        ax.set_xlabel("drop in estimated reward without it (full minus ablated)")
        ax.grid(axis="y", visible=False)
        return _svg(fig)


NAMESPACES = {"c": "all context (c)", "u": "persona (u)", "a": "action features (a)"}


def group_label(feature: Mapping[str, Any]) -> str:
    """How an ablated group is named on the page: a namespace by what it holds, a
    feature key as it is.

    >>> group_label({"name": "u", "group": "namespace"})
    'persona (u)'
    >>> group_label({"name": "page", "group": "feature"})
    'page'
    """
    name = str(feature["name"])
    if feature.get("group") == "namespace":
        return NAMESPACES.get(name, f"namespace {name}")
    return _short(name, 40)


def trials_plot(trials: Sequence[Mapping[str, Any]]) -> str:
    """The search's trials ranked by the lower bound of their difference to the current
    settings: a point per trial at its difference, its interval as a bar, zero marked."""
    done = [t for t in trials if t.get("difference") is not None]
    with _figure(8.0, 3.4, "trials") as (fig, ax):
        for rank, trial in enumerate(done):
            d = trial["difference"]
            colour = COLOURS[verdict(d)]
            ax.errorbar(
                rank + 1,
                d["value"],
                yerr=[[max(d["value"] - d["lower"], 0.0)], [max(d["upper"] - d["value"], 0.0)]],
                fmt="o",
                color=colour,
                capsize=3,
                markersize=4,
            )
            ax.plot(rank + 1, d["lower"], marker="_", color=colour, markersize=12)
        ax.axhline(0.0, color=REFERENCE, linestyle="--", linewidth=1, label="current settings")
        ax.set_xlabel("trial rank (by lower bound of the difference)")
        ax.set_ylabel("difference to current")
        if done:
            ax.set_xlim(0.3, len(done) + 0.7)
            ax.legend(loc="upper right", fontsize=8, frameon=False)
        if not math.isfinite(ax.get_ylim()[0]):
            ax.set_ylim(-1, 1)
        return _svg(fig)
