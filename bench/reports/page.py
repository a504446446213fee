"""Assemble ``report.html``: one file, inline style, script and images, no network access.

Sections: a summary line, the RRF leaderboard (sortable), then per dataset an
operating-curve figure, a reliability figure (or a line saying there is none)
and the dataset's full table (sortable, folded). Every piece of text from the
run (dataset and method names, config values) passes through ``html.escape``.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.leaderboard import (
    DEFAULT_METRICS,
    RANK_METRICS,
    RANKED_KINDS,
    RRF_K,
    Leaderboard,
    build_leaderboard,
)
from bench.report import write_atomic
from bench.reports import plots
from bench.reports.assets import CSS, JS

#: Columns of each dataset's full table, when at least one row has a value.
DATASET_COLUMNS = ("in_accuracy", "em", "f1", "rc", "lmc", "roc_auc", "spearman", "accuracy",
                   "over_confidence", "under_confidence", "prr", "auprc", "ece", "brier",
                   "generate_calls", "prompt_tokens", "generated_tokens")
#: Config values shown in the summary line, when present.
SUMMARY_CONFIG_KEYS = ("model", "retriever", "top_k", "limit", "seed", "dev_fraction")


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` names it for ``?sort=``; ``default`` is the first-click order."""

    key: str
    label: str
    default: str = "desc"
    numeric: bool = True
    digits: int = 3


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _cell(column: Column, value: object) -> str:
    if not column.numeric:
        return f'<td class="text">{_e(value if value is not None else "")}</td>'
    number = _number(value)
    if number is None:
        return '<td data-value="">&ndash;</td>'
    text = f"{number:.{column.digits}f}" if abs(number) < 1000 else f"{number:.0f}"
    return f'<td data-value="{number!r}">{text}</td>'


def _header(column: Column) -> str:
    css = "" if column.numeric else ' class="text"'
    return (f'<th data-key="{_e(column.key)}" data-default="{column.default}"{css}>'
            f"{_e(column.label)}</th>")


def _table(table_id: str | None, columns: Sequence[Column],
           rows: Sequence[tuple[str, str, Mapping[str, object]]]) -> str:
    """``rows``: (method, kind, values by column key)."""
    head = "".join(_header(c) for c in columns)
    body = "\n".join(
        f'<tr data-method="{_e(method)}" class="{_e(kind)}">'
        + "".join(_cell(c, values.get(c.key)) for c in columns) + "</tr>"
        for method, kind, values in rows)
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return (f'<div class="table-wrap"><table class="sortable"{ident}><thead><tr>{head}</tr>'
            f"</thead>\n<tbody>\n{body}\n</tbody></table></div>")


def leaderboard_table(board: Leaderboard) -> str:
    """Rank, method, kind, RRF and mean per metric, the first metric per dataset."""
    primary = board.metrics[0]
    columns = [Column("rank", "rank", "asc", digits=0), Column("method", "method", "asc", False),
               Column("kind", "kind", "asc", False)]
    for metric in board.metrics:
        columns.append(Column(f"rrf_{metric}", f"RRF {RANK_METRICS[metric].label}", digits=5))
    for metric in board.metrics:
        spec = RANK_METRICS[metric]
        columns.append(Column(f"mean_{metric}", f"mean {spec.label}",
                              "desc" if spec.higher_is_better else "asc"))
    spec = RANK_METRICS[primary]
    for dataset in board.datasets:
        columns.append(Column(f"{primary}@{dataset}", f"{spec.label} {dataset}",
                              "desc" if spec.higher_is_better else "asc"))
    rows = []
    for row in board.rows:
        values: dict[str, object] = {"rank": row.rank, "method": row.method, "kind": row.kind}
        values.update({f"rrf_{m}": row.rrf.get(m) for m in board.metrics})
        values.update({f"mean_{m}": row.mean.get(m) for m in board.metrics})
        values.update({f"{primary}@{d}": row.values.get(primary, {}).get(d)
                       for d in board.datasets})
        rows.append((row.method, row.kind, values))
    return _table("leaderboard", columns, rows)


def dataset_table(result: Mapping) -> str:
    """Every row of one dataset with the metrics any row defines, and the chosen gate kind."""
    rows_in = result.get("rows", {})
    present = [key for key in DATASET_COLUMNS
               if any(_number(row.get(key)) is not None for row in rows_in.values())]
    columns = [Column("method", "method", "asc", False), Column("kind", "kind", "asc", False),
               Column("gate", "gate", "asc", False)]
    for key in present:
        spec = RANK_METRICS.get(key)
        columns.append(Column(key, spec.label if spec else key,
                              "desc" if spec is None or spec.higher_is_better else "asc"))
    gates = result.get("gates", {})
    rows = []
    for method, row in rows_in.items():
        kind = str(row.get("kind", ""))
        values = {"method": method, "kind": kind,
                  "gate": (gates.get(method) or {}).get("chosen", "")}
        values.update({key: row.get(key) for key in present})
        rows.append((method, kind, values))
    return _table(None, columns, rows)


def _figure(image: str | None, alt: str, caption: str, missing: str) -> str:
    if image is None:
        return f'<p class="no-plot">{_e(missing)}</p>'
    return (f'<figure><img src="data:image/png;base64,{image}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def dataset_section(dataset: str, result: Mapping, max_estimators: int, with_plots: bool) -> str:
    """Heading, the two figures (or why not) and the folded full table of one dataset."""
    facts = [f"{key.replace('_', ' ')} {result[key]:.3f}" if isinstance(result[key], float)
             else f"{key.replace('_', ' ')} {result[key]}"
             for key in ("n_test", "n_train", "need_rate_test") if key in result]
    parts = [f'<section class="dataset" id="dataset-{_e(dataset)}"><h3>{_e(dataset)}</h3>',
             f'<p class="note">{_e(", ".join(facts))}</p>' if facts else ""]
    if with_plots:
        curve = plots.operating_curve_png(dataset, result, max_estimators)
        diagram = plots.reliability_png(dataset, result, max_estimators)
        parts.append('<div class="figures">')
        parts.append(_figure(
            curve, f"{dataset} operating curves",
            "In-Accuracy against RC as the threshold sweeps on test, for the (up to) "
            f"{max_estimators} gates with the highest ROC-AUC; a dot marks the threshold each "
            "gate chose on dev; the square, triangle and star mark Never, Always and Ideal.",
            f"{dataset}: no curve (this run recorded no operating curves)."))
        parts.append(_figure(
            diagram, f"{dataset} reliability diagram",
            "Observed need-retrieval rate per bin of the chosen gate's predicted probability "
            "(10 equal-width bins, empty bins left out).",
            f"{dataset}: no reliability diagram (no chosen gate gives probabilities)."))
        parts.append("</div>")
    parts.append(f"<details><summary>all rows of {_e(dataset)}</summary>"
                 f"{dataset_table(result)}</details></section>")
    return "\n".join(part for part in parts if part)


def render_report(metrics: Mapping, config: Mapping | None = None, title: str | None = None,
                  metric_names: Sequence[str] = DEFAULT_METRICS, k: int = RRF_K,
                  max_estimators: int = plots.MAX_ESTIMATORS) -> str:
    """The whole page as one string.

    Parameters
    ----------
    metrics
        A run's ``metrics.json`` content; ``curves`` and ``reliability`` may be absent.
    config
        The run's ``config.json`` content, for the summary line (optional).
    title
        Page title; default from ``config["run_name"]``.
    metric_names, k
        Leaderboard metrics (the first orders it) and RRF constant.
    max_estimators
        Curves per figure (the top gates by ROC-AUC).
    """
    config = config or {}
    board = build_leaderboard(metrics, metric_names, k)
    title = title or f"arbench report: {config.get('run_name') or 'run'}"
    with_plots = plots.matplotlib_available()
    summary = [f"{len(board.datasets)} datasets ({', '.join(board.datasets)})",
               f"{sum(row.kind in RANKED_KINDS for row in board.rows)} ranked methods"]
    summary += [f"{key} {config[key]}" for key in SUMMARY_CONFIG_KEYS
                if config.get(key) is not None]
    labels = [RANK_METRICS[m].label for m in board.metrics]
    body = [
        f"<h1>{_e(title)}</h1>", f'<p class="note">{_e("; ".join(summary))}</p>',
        "<h2>Leaderboard</h2>",
        f'<p class="note">{_e(_leaderboard_note(labels, k))}</p>',
        leaderboard_table(board),
    ]
    if not with_plots:
        body.append('<p class="no-plot">Plots need matplotlib (pip install matplotlib).</p>')
    body.append("<h2>Datasets</h2>")
    body += [dataset_section(dataset, metrics["datasets"][dataset], max_estimators, with_plots)
             for dataset in board.datasets]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{JS}</script>\n</body></html>\n")


def _leaderboard_note(labels: Sequence[str], k: int) -> str:
    return (f"Reciprocal-rank fusion over datasets: RRF = sum over datasets of 1/({k} + rank), "
            f"ties share the best rank; rows ordered by RRF of {labels[0]}. Gates and "
            "pipelines are ranked; Never, Always and Ideal are shown, not ranked. "
            "Click a header to sort.")


def write_report(directory: Path, metrics: Mapping, config: Mapping | None = None,
                 **options) -> Path:
    """Write ``directory/report.html``; ``options`` go to :func:`render_report`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.html"
    write_atomic(path, render_report(metrics, config, **options))
    return path
