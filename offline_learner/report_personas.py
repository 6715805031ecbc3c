"""Reports of the persona pipeline: the ``segmentation`` payload (what a data scientist
reads to name the segments) and the ``persona_training`` payload (how well the
classifier tells them apart on held-out users), as HTML sections with SVG plots and as
terminal tables. :mod:`offline_learner.report` and :mod:`offline_learner.report_terminal`
dispatch these kinds here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from offline_learner import report_html as h
from offline_learner.report_plots import SERIES, _figure, _short, _svg

READ_SEGMENTS = (
    "Each row is a segment, each column a feature; a cell is how far the segment's mean lies "
    "from the population's, in standard deviations of the (log-scaled) feature: red above "
    "the population, blue below. The strongest cells say what the segment is: name it after "
    "them, its sales and its example profiles."
)
READ_SCATTER = (
    "Every profile (a sample of at most 1,500) projected on the two directions that spread "
    "the scaled features most (PCA), coloured by segment. Well separated colours are segments "
    "a classifier will tell apart easily; overlapping ones may be one persona."
)
READ_CONFUSION = (
    "Held-out users: rows are the persona their segment gives them, columns the persona the "
    "classifier predicts. The diagonal is right; an off-diagonal cell counts the users of "
    "the row's persona taken for the column's."
)
READ_PER_CLASS = (
    "Precision: of the users predicted as the persona, the share that are. Recall: of the "
    "persona's users, the share found."
)


def _colour(cluster: int) -> str:
    return SERIES[cluster % len(SERIES)]


def _label(segment: Mapping[str, Any]) -> str:
    return (
        f"{segment['cluster']}: {segment['name']}"
        if segment.get("name")
        else f"segment {segment['cluster']}"
    )


# Plots -------------------------------------------------------------------------------


def sizes_plot(segments: Sequence[Mapping[str, Any]]) -> str:
    with _figure(7.5, 0.45 * len(segments) + 1.0, "sizes") as (fig, ax):
        labels = [_label(s) for s in segments]
        ax.barh(
            labels, [s["size"] for s in segments], color=[_colour(s["cluster"]) for s in segments]
        )
        ax.invert_yaxis()
        ax.set_xlabel("profiles")
        return _svg(fig)


def zscore_heatmap(segments: Sequence[Mapping[str, Any]], features: Sequence[str]) -> str:
    import numpy as np

    values = np.array([[s["z"][f] for f in features] for s in segments])
    with _figure(9.0, 0.5 * len(segments) + 2.2, "zscores") as (fig, ax):
        limit = max(1.0, float(np.abs(values).max()))
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.grid(False)
        ax.set_xticks(
            range(len(features)), [_short(f, 18) for f in features], rotation=40, ha="right"
        )
        ax.set_yticks(range(len(segments)), [_label(s) for s in segments])
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, label="z-score of the segment mean")
        return _svg(fig)


def scatter_plot(scatter: Mapping[str, Any], segments: Sequence[Mapping[str, Any]]) -> str:
    points = scatter["points"]
    with _figure(7.5, 5.0, "scatter") as (fig, ax):
        for segment in segments:
            mine = [p for p in points if p[2] == segment["cluster"]]
            ax.scatter(
                [p[0] for p in mine],
                [p[1] for p in mine],
                s=7,
                alpha=0.6,
                color=_colour(segment["cluster"]),
                label=_label(segment),
            )
        explained = scatter.get("explained") or [0.0, 0.0]
        ax.set_xlabel(f"PC1 ({explained[0]:.0%} of the variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
        ax.legend(loc="best", fontsize=8, markerscale=2)
        return _svg(fig)


def criterion_plot(scores: Sequence[Mapping[str, Any]], criterion: str, chosen: int) -> str:
    with _figure(7.0, 3.0, "criterion") as (fig, ax):
        ks = [s["k"] for s in scores]
        ax.plot(ks, [s["score"] for s in scores], marker="o", color=SERIES[1])
        ax.axvline(chosen, color=SERIES[0], linestyle="--", label=f"chosen k = {chosen}")
        ax.set_xlabel("k")
        ax.set_ylabel(
            f"{criterion} ({'higher' if criterion == 'silhouette' else 'lower'} is better)"
        )
        ax.legend(loc="best", fontsize=8)
        return _svg(fig)


def confusion_plot(confusion: Mapping[str, Any]) -> str:
    import numpy as np

    labels, matrix = confusion["labels"], np.array(confusion["matrix"])
    with _figure(5.5, 4.2, "confusion") as (fig, ax):
        ax.imshow(matrix, cmap="Blues", aspect="auto")
        ax.grid(False)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("segment (label)")
        top = matrix.max() if matrix.size else 0
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                colour = "white" if matrix[i, j] > top / 2 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
        return _svg(fig)


def per_class_plot(per_class: Sequence[Mapping[str, Any]]) -> str:
    with _figure(7.5, 0.6 * len(per_class) + 1.2, "perclass") as (fig, ax):
        names = [c["persona"] for c in per_class]
        y = range(len(names))
        ax.barh(
            [i - 0.2 for i in y],
            [c["precision"] for c in per_class],
            0.4,
            label="precision",
            color=SERIES[1],
        )
        ax.barh(
            [i + 0.2 for i in y],
            [c["recall"] for c in per_class],
            0.4,
            label="recall",
            color=SERIES[0],
        )
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.legend(loc="lower right", fontsize=8)
        return _svg(fig)


def importance_bars(importances: Sequence[Mapping[str, Any]]) -> str:
    shown = list(importances)[:15]
    with _figure(7.5, 0.35 * len(shown) + 1.0, "featimp") as (fig, ax):
        ax.barh(
            [_short(f["feature"], 32) for f in shown],
            [f["importance"] for f in shown],
            color=SERIES[4],
        )
        ax.invert_yaxis()
        ax.set_xlabel("CatBoost feature importance (sums to 100)")
        return _svg(fig)


# HTML --------------------------------------------------------------------------------


def segmentation_page(payload: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    segments, features = payload["segments"], payload["features"]
    population = payload["population"]
    rows = [
        [
            h.esc(_label(s)),
            h.count(s["size"]),
            h.esc(f"{s['share']:.1%}"),
            h.esc(s["description"]),
            h.esc(", ".join(s["examples"])),
        ]
        for s in segments
    ]
    means = [
        [h.esc(f), h.num(population[f], 2), *(h.num(s["means"][f], 2) for s in segments)]
        for f in features
    ]
    chosen = (
        f"k = {payload['k']} chosen by {payload['criterion']}"
        if payload["criterion"] != "given"
        else f"k = {payload['k']} as given"
    )
    sections = [
        h.section(
            "Segments",
            f'<p class="verdict unclear">{payload["profiles"]:,} profiles, '
            f"{h.esc(payload['method'])}, {h.esc(chosen)}. Name each segment in the segments "
            "file, then train.</p>",
            h.table(
                ["segment", "profiles", "share", "what defines it", "example profiles"],
                rows,
                numeric={1, 2},
            ),
            h.figure(sizes_plot(segments), "Profiles per segment."),
        ),
        h.section(
            "Feature means against the population",
            h.figure(zscore_heatmap(segments, features), READ_SEGMENTS),
            h.table(
                ["feature", "population", *(_label(s) for s in segments)],
                means,
                numeric=set(range(1, len(segments) + 2)),
            ),
        ),
    ]
    if payload["scatter"]["points"]:
        sections.append(
            h.section(
                "Profiles in two dimensions",
                h.figure(scatter_plot(payload["scatter"], segments), READ_SCATTER),
            )
        )
    if payload["scores"]:
        sections.append(
            h.section(
                f"Choosing k: {payload['criterion']}",
                h.figure(
                    criterion_plot(payload["scores"], payload["criterion"], payload["k"]),
                    f"The {h.esc(payload['criterion'])} of every k tried.",
                ),
            )
        )
    sections.append(
        h.section(
            "Data",
            h.dataset_table(
                {
                    "source": payload["source"],
                    "profiles": payload["profiles"],
                    "features": ", ".join(features),
                }
            ),
        )
    )
    return (
        "Persona segmentation",
        f"{payload['k']} segments of {payload['profiles']:,} profiles",
        sections,
    )


def training_page(payload: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    per_class = payload["per_class"]
    rows = [
        [
            h.esc(c["persona"]),
            h.num(c["precision"], 3),
            h.num(c["recall"], 3),
            h.num(c["f1"], 3),
            h.count(c["support"]),
        ]
        for c in per_class
    ]
    gate = payload.get("gate")
    verdict = "better"
    summary = (
        f"Held-out macro-F1 {payload['macro_f1']:.3f}, accuracy {payload['accuracy']:.3f} "
        f"on {payload['test_size']:,} users."
    )
    if gate and gate.get("current_version") is not None:
        verdict = "better" if gate["passed"] else "worse"
        summary += (
            f" The current v{gate['current_version']} scores {gate['current_macro_f1']:.3f}"
            " on the same users"
            f" (margin {gate['margin']}): {'published' if gate['passed'] else 'not published'}."
        )
    release = payload.get("release")
    if release:
        summary += f" Published as v{release['version']}."
    details = {
        "source": payload["source"],
        "profiles": payload["profiles"],
        "trained on": payload["train_size"],
        "held out": payload["test_size"],
        "personas": ", ".join(payload["classes"]),
        "segments": (payload.get("segments") or {}).get("name", "-"),
        "CatBoost": ", ".join(f"{k} {v}" for k, v in payload["catboost"].items()),
        "single-row predict p50 (µs)": payload["predict_p50_us"],
    }
    sections = [
        h.section(
            "Held-out evaluation",
            f'<p class="verdict {verdict}">{h.esc(summary)}</p>',
            h.table(
                ["persona", "precision", "recall", "F1", "held-out users"],
                rows,
                numeric={1, 2, 3, 4},
            ),
            h.figure(
                per_class_plot(per_class),
                READ_PER_CLASS,
            ),
            h.figure(confusion_plot(payload["confusion"]), READ_CONFUSION),
        ),
        h.section(
            "What the classifier uses",
            h.figure(
                importance_bars(payload["feature_importances"]),
                "The features the trees split on most, one-hot columns named feature=value.",
            ),
        ),
        h.section("Training", h.dataset_table(details)),
    ]
    return (
        "Persona classifier",
        f"macro-F1 {payload['macro_f1']:.3f}, {len(payload['classes'])} personas",
        sections,
    )


# Terminal ----------------------------------------------------------------------------


def segmentation_tables(payload: Mapping[str, Any]) -> list[Table]:
    table = Table(
        title=f"{payload['k']} segments of {payload['profiles']:,} profiles "
        f"({payload['method']}, {payload['criterion']})"
    )
    for column in ("segment", "profiles", "share", "what defines it", "examples"):
        table.add_column(
            column, justify="right" if column in {"profiles", "share"} else "left", overflow="fold"
        )
    for s in payload["segments"]:
        table.add_row(
            _label(s),
            f"{s['size']:,}",
            f"{s['share']:.1%}",
            s["description"],
            ", ".join(s["examples"][:3]),
        )
    return [table]


def training_tables(payload: Mapping[str, Any]) -> list[Table]:
    table = Table(
        title=f"persona classifier: held-out macro-F1 {payload['macro_f1']:.4f}, "
        f"accuracy {payload['accuracy']:.4f}"
    )
    for column in ("persona", "precision", "recall", "F1", "held out"):
        table.add_column(column, justify="left" if column == "persona" else "right")
    for c in payload["per_class"]:
        table.add_row(
            c["persona"],
            f"{c['precision']:.3f}",
            f"{c['recall']:.3f}",
            f"{c['f1']:.3f}",
            f"{c['support']:,}",
        )
    labels, matrix = payload["confusion"]["labels"], payload["confusion"]["matrix"]
    confusion = Table(title="confusion (rows: label, columns: predicted)")
    confusion.add_column("")
    for label in labels:
        confusion.add_column(label, justify="right")
    for label, row in zip(labels, matrix, strict=True):
        confusion.add_row(label, *(str(v) for v in row))
    return [table, confusion]
