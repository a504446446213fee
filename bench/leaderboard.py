"""Cross-dataset leaderboard by reciprocal-rank fusion, written as Markdown, CSV and JSON.

The study ranks methods across its six datasets with reciprocal-rank fusion
(RRF; STUDY.md §1). For one metric, each dataset ranks the methods, and a
method's fused score is

    RRF(method) = sum over datasets d of 1 / (k + rank_d(method)),

with ``k = 60``, the constant of Cormack, Clarke & Büttcher (SIGIR 2009) that
RRF is usually run with; it damps the gap between the first few ranks so that
one dataset cannot dominate. ``k`` is a parameter of :func:`build_leaderboard`.

Rules (the study does not spell them out; these are arbench's):

* Ranked rows are gates and pipelines. The reference rows ``never``, ``always``
  and ``ideal`` are shown with their values but never ranked: Ideal is an
  oracle that would win every quality metric, and Never/Always are the
  baselines the ranked methods are read against.
* Ties share the best (minimum) rank, "competition ranking" (1, 2, 2, 4).
  Values equal after rounding to 10 decimals tie, so float noise of the last
  bit does not split them.
* A method without a value on a dataset (not run there, or an undefined metric
  such as IRCoT's ROC-AUC) is not ranked on it and gains nothing from it.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.report import dumps, write_atomic

#: The usual RRF constant (Cormack, Clarke & Büttcher 2009).
RRF_K = 60
REFERENCE_METHODS = ("never", "always", "ideal")
RANKED_KINDS = ("gate", "pipeline")
#: Decimals kept before comparing values, so last-bit float noise ties.
TIE_DECIMALS = 10


@dataclass(frozen=True)
class RankMetric:
    """A metric the leaderboard can rank by, and which way is better."""

    name: str
    label: str
    higher_is_better: bool


RANK_METRICS: dict[str, RankMetric] = {metric.name: metric for metric in (
    RankMetric("in_accuracy", "In-Accuracy", True),
    RankMetric("em", "EM", True),
    RankMetric("f1", "F1", True),
    RankMetric("roc_auc", "ROC-AUC", True),
    RankMetric("spearman", "Spearman", True),
    RankMetric("accuracy", "SK accuracy", True),
    RankMetric("prr", "PRR", True),
    RankMetric("auprc", "AUPRC", True),
    RankMetric("rc", "RC", False),
    RankMetric("lmc", "LMC", False),
    RankMetric("over_confidence", "over-confidence", False),
    RankMetric("under_confidence", "under-confidence", False),
    RankMetric("ece", "ECE", False),
    RankMetric("brier", "Brier", False),
    RankMetric("generate_calls", "generate calls", False),
    RankMetric("prompt_tokens", "prompt tokens", False),
    RankMetric("generated_tokens", "generated tokens", False),
)}
#: QA quality, self-knowledge and cost: the study's three axes.
DEFAULT_METRICS = ("in_accuracy", "roc_auc", "lmc")


@dataclass
class LeaderboardRow:
    """One method across datasets.

    ``rank`` is the position by the first metric's RRF score (competition
    ranking; ``None`` for reference rows); ``rrf``, ``mean`` are keyed by
    metric; ``values`` by metric, then dataset.
    """

    method: str
    kind: str
    rank: int | None = None
    rrf: dict[str, float | None] = field(default_factory=dict)
    mean: dict[str, float | None] = field(default_factory=dict)
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class Leaderboard:
    """Ranked rows (best first) followed by the reference rows."""

    metrics: tuple[str, ...]
    datasets: tuple[str, ...]
    k: int
    rows: list[LeaderboardRow]


def competition_ranks(values: Mapping[str, float | None], higher_is_better: bool
                      ) -> dict[str, int]:
    """Rank 1 = best; tied values share the minimum rank; missing values are left out.

    >>> competition_ranks({"a": 0.5, "b": 0.7, "c": 0.5}, higher_is_better=True)
    {'b': 1, 'a': 2, 'c': 2}
    """
    defined = {name: round(float(value), TIE_DECIMALS) for name, value in values.items()
               if value is not None and _is_number(value)}
    sign = -1.0 if higher_is_better else 1.0
    ordered = sorted(defined, key=lambda name: (sign * defined[name], name))
    ranks: dict[str, int] = {}
    for position, name in enumerate(ordered, start=1):
        previous = ordered[position - 2] if position > 1 else ""
        tied = position > 1 and defined[previous] == defined[name]
        ranks[name] = ranks[previous] if tied else position
    return ranks


def rrf_scores(ranks_per_dataset: Iterable[Mapping[str, int]], k: int = RRF_K
               ) -> dict[str, float]:
    """``sum_d 1 / (k + rank_d)`` for every method ranked on at least one dataset."""
    scores: dict[str, float] = {}
    for ranks in ranks_per_dataset:
        for name, rank in ranks.items():
            scores[name] = scores.get(name, 0.0) + 1.0 / (k + rank)
    return scores


def method_kind(method: str, row: Mapping) -> str:
    """The row's ``kind``; older runs without it: reference by name, else gate."""
    kind = row.get("kind")
    if kind:
        return str(kind)
    return "reference" if method in REFERENCE_METHODS else "gate"


def build_leaderboard(metrics: Mapping, metric_names: Sequence[str] = DEFAULT_METRICS,
                      k: int = RRF_K) -> Leaderboard:
    """Fuse the per-dataset rankings of ``metrics["datasets"][d]["rows"]``.

    Parameters
    ----------
    metrics
        A run's ``metrics.json`` content.
    metric_names
        Metrics to rank by (keys of :data:`RANK_METRICS`); the first orders the rows.
    k
        RRF constant.

    Returns
    -------
    Leaderboard
        Ranked methods by descending RRF of the first metric (ties by name),
        then the reference rows in the order never, always, ideal.
    """
    unknown = [name for name in metric_names if name not in RANK_METRICS]
    if unknown or not metric_names:
        raise ValueError(f"leaderboard metrics {unknown or '(none)'}: choose from "
                         f"{', '.join(RANK_METRICS)}")
    if k < 0:
        raise ValueError(f"RRF constant k must be >= 0, got {k}")
    # Sorted: the board must depend on the metrics, not on the order a run visited datasets
    # (float sums over datasets would differ in their last bits).
    datasets = tuple(sorted(metrics.get("datasets", {})))
    rows: dict[str, LeaderboardRow] = {}
    for dataset in datasets:
        for method, values in metrics["datasets"][dataset].get("rows", {}).items():
            row = rows.setdefault(method, LeaderboardRow(method, method_kind(method, values)))
            for name in metric_names:
                value = values.get(name)
                row.values.setdefault(name, {})[dataset] = (
                    float(value) if _is_number(value) else None)
    for name in metric_names:
        direction = RANK_METRICS[name].higher_is_better
        per_dataset = [competition_ranks(
            {m: r.values[name].get(d) for m, r in rows.items() if r.kind in RANKED_KINDS},
            direction) for d in datasets]
        fused = rrf_scores(per_dataset, k)
        for method, row in rows.items():
            row.rrf[name] = fused.get(method) if row.kind in RANKED_KINDS else None
            defined = [v for v in row.values[name].values() if v is not None]
            row.mean[name] = sum(defined) / len(defined) if defined else None
    primary = metric_names[0]
    ranked = [row for row in rows.values() if row.kind in RANKED_KINDS]
    positions = competition_ranks({row.method: row.rrf[primary] for row in ranked}, True)
    for row in ranked:
        row.rank = positions.get(row.method)
    ranked.sort(key=lambda row: (row.rank if row.rank is not None else math.inf, row.method))
    reference = sorted((row for row in rows.values() if row.kind not in RANKED_KINDS),
                       key=lambda row: (_reference_order(row.method), row.method))
    return Leaderboard(tuple(metric_names), datasets, k, ranked + reference)


def _reference_order(method: str) -> int:
    return REFERENCE_METHODS.index(method) if method in REFERENCE_METHODS else len(
        REFERENCE_METHODS)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def flat_columns(board: Leaderboard) -> list[str]:
    """CSV header: rank, method, kind, rrf_<m>, mean_<m>, <m>@<dataset>."""
    return (["rank", "method", "kind"] + [f"rrf_{m}" for m in board.metrics]
            + [f"mean_{m}" for m in board.metrics]
            + [f"{m}@{d}" for m in board.metrics for d in board.datasets])


def flat_row(board: Leaderboard, row: LeaderboardRow) -> dict[str, object]:
    """One CSV line as a dict keyed by :func:`flat_columns`."""
    flat: dict[str, object] = {"rank": row.rank, "method": row.method, "kind": row.kind}
    flat.update({f"rrf_{m}": row.rrf.get(m) for m in board.metrics})
    flat.update({f"mean_{m}": row.mean.get(m) for m in board.metrics})
    flat.update({f"{m}@{d}": row.values.get(m, {}).get(d)
                 for m in board.metrics for d in board.datasets})
    return flat


def to_csv(board: Leaderboard) -> str:
    """Every value unrounded; empty cells for undefined values."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=flat_columns(board), lineterminator="\n")
    writer.writeheader()
    for row in board.rows:
        writer.writerow({key: "" if value is None else value
                         for key, value in flat_row(board, row).items()})
    return buffer.getvalue()


def to_json(board: Leaderboard) -> str:
    """``{"k", "metrics", "higher_is_better", "datasets", "rows": [...]}``."""
    return dumps({
        "k": board.k, "metrics": list(board.metrics), "datasets": list(board.datasets),
        "higher_is_better": {m: RANK_METRICS[m].higher_is_better for m in board.metrics},
        "rows": [asdict(row) for row in board.rows]})


def to_markdown(board: Leaderboard) -> str:
    """A summary table (RRF and mean per metric), then one per-dataset table per metric."""
    labels = [RANK_METRICS[m].label for m in board.metrics]
    header = (["rank", "method", "kind"] + [f"RRF {label}" for label in labels]
              + [f"mean {label}" for label in labels])
    lines = [f"# Leaderboard (reciprocal-rank fusion, k = {board.k}, "
             f"{len(board.datasets)} datasets)", "",
             f"Ordered by RRF of {labels[0]}. Reference rows are shown, not ranked.", "",
             _md_row(header), _md_row(["---"] * len(header))]
    for row in board.rows:
        lines.append(_md_row([_fmt_rank(row.rank), row.method, row.kind]
                             + [_fmt(row.rrf.get(m), 5) for m in board.metrics]
                             + [_fmt(row.mean.get(m)) for m in board.metrics]))
    for metric, label in zip(board.metrics, labels):
        better = "higher" if RANK_METRICS[metric].higher_is_better else "lower"
        lines += ["", f"## {label} by dataset ({better} is better)", "",
                  _md_row(["method", *board.datasets]),
                  _md_row(["---"] * (len(board.datasets) + 1))]
        for row in board.rows:
            lines.append(_md_row([row.method] + [_fmt(row.values.get(metric, {}).get(d))
                                                 for d in board.datasets]))
    return "\n".join(lines) + "\n"


def _fmt_rank(rank: int | None) -> str:
    return "-" if rank is None else str(rank)


def _md_row(cells: Sequence[str]) -> str:
    # A pipe inside a cell would split it.
    return "| " + " | ".join(str(cell).replace("|", "&#124;") for cell in cells) + " |"


def write_leaderboard(directory: Path, board: Leaderboard) -> list[Path]:
    """``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("leaderboard.md", to_markdown(board)), ("leaderboard.csv", to_csv(board)),
                       ("leaderboard.json", to_json(board))):
        write_atomic(directory / name, text)
        written.append(directory / name)
    return written
