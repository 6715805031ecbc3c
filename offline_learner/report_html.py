"""HTML building blocks of the offline reports: the page, sections, figures and tables.

Every string that comes from a payload (candidate names, VW arguments, feature names,
error messages) goes through :func:`esc`; only the SVG the plots module drew and the
fragments built here are inserted as they are. The page carries its CSS inline and a
Content-Security-Policy that forbids any fetch, so it renders the same offline.

>>> cell({"value": 0.5, "lower": 0.4, "upper": 0.6})
'0.5000 <span class="ci">[0.4000, 0.6000]</span>'
>>> esc("<b>&")
'&lt;b&gt;&amp;'
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #24292f; background: #f6f8fa; margin: 0; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 32px 48px; background: #fff;
       min-height: 100vh; box-shadow: 0 0 12px rgba(0,0,0,.06); }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #57606a; margin: 0 0 8px; }
.verdict { padding: 10px 14px; border-radius: 6px; margin: 12px 0; font-weight: 600; }
.verdict.better { background: #dafbe1; color: #116329; }
.verdict.worse { background: #ffebe9; color: #a40e26; }
.verdict.unclear { background: #eaeef2; color: #24292f; }
figure { margin: 12px 0 20px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption, .howto { color: #57606a; font-size: 13.5px; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 13.5px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eaeef2;
         vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: #57606a; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f6f8fa;
       padding: 1px 4px; border-radius: 4px; overflow-wrap: break-word; }
table.kv { width: auto; min-width: 50%; }
table.kv td:first-child { color: #57606a; padding-right: 32px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 12px; }
.tag.better { background: #dafbe1; color: #116329; }
.tag.worse { background: #ffebe9; color: #a40e26; }
.tag.unclear { background: #eaeef2; color: #57606a; }
.tag.reference { background: #ddf4ff; color: #0550ae; }
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

LABELS = {
    "source": "source",
    "rows": "rows",
    "first": "first decision",
    "last": "last decision",
    "decision_points": "decision points (rows)",
    "actions": "chosen actions (rows)",
    "reward_mean": "mean reward",
    "reward_min": "smallest reward",
    "reward_max": "largest reward",
    "propensity_min": "smallest logged propensity",
    "propensity_max": "largest logged propensity",
    "close_reasons": "window close reasons (rows)",
    "not_activated": "decisions never activated",
}
"""Readable names of the dataset summary's usual keys; other keys show as they are."""


def esc(text: object) -> str:
    """``text`` as HTML text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


def num(value: float | None, digits: int = 4) -> str:
    """A number for a table cell; ``-`` for a missing or non-finite one."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def count(value: float | None) -> str:
    """A count or effective sample size, with thousands separators."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}"


def cell(est: Mapping[str, Any] | None) -> str:
    """An estimate's value with its interval in brackets, or ``-``."""
    if est is None:
        return "-"
    return f'{num(est["value"])} <span class="ci">[{num(est["lower"])}, {num(est["upper"])}]</span>'


def tag(kind: str, text: str | None = None) -> str:
    """A small coloured label (``better``, ``worse``, ``unclear``, ``reference``)."""
    return f'<span class="tag {esc(kind)}">{esc(text or kind)}</span>'


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int], css: str = ""
) -> str:
    """A table of prebuilt (already escaped) cells; columns in ``numeric`` align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    attrs = f' class="{esc(css)}"' if css else ""
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_value(value: object) -> str:
    if isinstance(value, bool):
        return esc("yes" if value else "no")
    if isinstance(value, int):
        return esc(f"{value:,}")
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    if isinstance(value, list | tuple):
        return ", ".join(_summary_value(v) for v in value) or "-"
    if value is None:
        return "-"
    return esc(value)


def counts(value: Mapping[str, Any], limit: int = 12) -> str:
    """A ``{name: count}`` mapping as ``name (count), ...``, the first ``limit`` entries.

    >>> counts({"a": 3, "b": 1}, limit=1)
    'a (3), … 1 more'
    """
    shown = [f"{k} ({v:,})" if isinstance(v, int) else f"{k} ({v})" for k, v in value.items()]
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f", … {more} more" if more > 0 else "")


def dataset_table(summary: Mapping[str, Any]) -> str:
    """The dataset summary as a two-column table (whatever keys it has)."""
    rows = [
        [
            esc(LABELS.get(key, key)),
            esc(counts(value)) if isinstance(value, Mapping) else _summary_value(value),
        ]
        for key, value in summary.items()
    ]
    return table(["", "value"], rows, numeric=set(), css="kv")


def figure(svg: str, caption: str) -> str:
    """A plot (SVG drawn by the plots module) with a how-to-read caption (HTML allowed)."""
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def section(title: str, *parts: str) -> str:
    """A titled section of prebuilt fragments."""
    return f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def page(title: str, subtitle: str, now: datetime, sections: Iterable[str]) -> str:
    """The whole self-contained document."""
    generated = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f'<body><main><header><h1>{esc(title)}</h1><p class="meta">{subtitle} · generated '
        f"<time>{esc(generated)}</time> by learnloop</p></header>"
        + "".join(sections)
        + "</main></body></html>\n"
    )
