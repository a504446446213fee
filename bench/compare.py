"""Metric deltas between two result folders (``arbench compare RUN_A RUN_B``).

Compared: every numeric field of every row (``metrics["datasets"][d]["rows"][m]``;
``kind`` and other text are not metrics), for each (dataset, method, metric)
present in both runs. Delta is B − A. A value defined in one run and undefined
(null) in the other is a difference with no delta. Datasets, methods and
metrics present in only one run are listed separately.

:func:`compare_metrics` returns only what differs beyond the tolerance (plus
what one run lacks), for checks such as ``tox -e regress``;
:func:`metric_deltas` returns every compared value, for the printed table.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Why a difference is reported.
DELTA = "delta"                  # both defined, |B - A| > tolerance
UNDEFINED = "undefined in one"   # null (NaN) in one run, a number in the other
ONLY_IN_A = "only in A"          # dataset, method or metric missing from run B
ONLY_IN_B = "only in B"


@dataclass(frozen=True)
class MetricDifference:
    """One compared value. ``method``/``metric`` are None when a whole dataset/method is missing."""

    dataset: str
    method: str | None
    metric: str | None
    a: float | None
    b: float | None
    delta: float | None
    flagged: bool
    reason: str = DELTA


@dataclass
class Comparison:
    """Every shared value and what only one run has."""

    tolerance: float
    values: list[MetricDifference] = field(default_factory=list)
    missing: list[MetricDifference] = field(default_factory=list)

    @property
    def flagged(self) -> list[MetricDifference]:
        return [v for v in self.values if v.flagged]


def load_metrics(path: str | Path) -> dict:
    """A results folder (its ``metrics.json``) or a ``metrics.json`` path."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{file}: not found; expected a results folder written by arbench run")
    try:
        metrics = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(metrics, dict) or not isinstance(metrics.get("datasets"), dict):
        raise ValueError(f"{file}: no 'datasets' object; not an arbench metrics.json")
    return metrics


def _is_metric(value) -> bool:
    # None counts: it is a metric that is undefined on this run (NaN written as null).
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _number(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _ordered_union(first, second) -> list[str]:
    return list(first) + [key for key in second if key not in first]


def compare(a: Mapping, b: Mapping, tolerance: float = 0.0) -> Comparison:
    """Compare two ``metrics.json`` contents.

    Parameters
    ----------
    a, b
        Run A (baseline) and run B; deltas are B − A.
    tolerance
        A delta is flagged when ``|B − A| > tolerance``. Undefined-vs-defined
        values and anything present in one run only are always flagged.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    result = Comparison(tolerance)
    data_a, data_b = a["datasets"], b["datasets"]
    for dataset in _ordered_union(data_a, data_b):
        if dataset not in data_a or dataset not in data_b:
            result.missing.append(_absent(dataset, None, None, dataset in data_a))
            continue
        rows_a, rows_b = data_a[dataset].get("rows", {}), data_b[dataset].get("rows", {})
        for method in _ordered_union(rows_a, rows_b):
            if method not in rows_a or method not in rows_b:
                result.missing.append(_absent(dataset, method, None, method in rows_a))
                continue
            row_a, row_b = rows_a[method], rows_b[method]
            for metric in _ordered_union(row_a, row_b):
                in_a = metric in row_a and _is_metric(row_a[metric])
                in_b = metric in row_b and _is_metric(row_b[metric])
                if in_a and in_b:
                    result.values.append(_value(dataset, method, metric, row_a[metric],
                                                row_b[metric], tolerance))
                elif in_a or in_b:
                    result.missing.append(_absent(dataset, method, metric, in_a))
    return result


def _value(dataset: str, method: str, metric: str, raw_a, raw_b,
           tolerance: float) -> MetricDifference:
    value_a, value_b = _number(raw_a), _number(raw_b)
    if value_a is None or value_b is None:
        both_undefined = value_a is None and value_b is None
        return MetricDifference(dataset, method, metric, value_a, value_b, None,
                                not both_undefined, DELTA if both_undefined else UNDEFINED)
    delta = value_b - value_a
    return MetricDifference(dataset, method, metric, value_a, value_b, delta,
                            abs(delta) > tolerance)


def _absent(dataset: str, method: str | None, metric: str | None,
            present_in_a: bool) -> MetricDifference:
    return MetricDifference(dataset, method, metric, None, None, None, True,
                            ONLY_IN_A if present_in_a else ONLY_IN_B)


def metric_deltas(a: Mapping, b: Mapping, tolerance: float = 0.0) -> list[MetricDifference]:
    """Every (dataset, method, metric) present in both runs, flagged or not."""
    return compare(a, b, tolerance).values


def compare_metrics(a: Mapping, b: Mapping, tolerance: float = 0.0) -> list[MetricDifference]:
    """What differs: values beyond ``tolerance``, undefined-vs-defined, and one-run-only items.

    An empty list means run B reproduces run A within the tolerance.
    """
    result = compare(a, b, tolerance)
    return result.flagged + result.missing


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3e}"


def _signed(value: float | None) -> str:
    return "-" if value is None else ("+" if value > 0 else "") + _fmt(value)


def format_text(result: Comparison, changed_only: bool = False) -> str:
    """Aligned table of A, B, delta (``!`` = beyond tolerance), then a summary and one-run-only
    items."""
    shown = [v for v in result.values if not changed_only or v.flagged or (v.delta or 0) != 0]
    header = ["dataset", "method", "metric", "A", "B", "delta", ""]
    cells = [[v.dataset, v.method or "", v.metric or "", _fmt(v.a), _fmt(v.b), _signed(v.delta),
              "!" if v.flagged else ""] for v in shown]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [header, *cells]]
    lines.append(f"\n{len(result.values)} values compared, "
                 f"{sum(1 for v in result.values if (v.delta or 0) != 0)} differ, "
                 f"{len(result.flagged)} beyond tolerance {result.tolerance:g}")
    for item in result.missing:
        what = " / ".join(part for part in (item.dataset, item.method, item.metric) if part)
        lines.append(f"{item.reason}: {what}")
    return "\n".join(lines) + "\n"


def to_json(result: Comparison, run_a: str = "", run_b: str = "") -> str:
    """``{"run_a", "run_b", "tolerance", "compared", "flagged", "values": [...],
    "missing": [...]}``."""
    return json.dumps({
        "run_a": run_a, "run_b": run_b, "tolerance": result.tolerance,
        "compared": len(result.values), "flagged": len(result.flagged) + len(result.missing),
        "values": [asdict(v) for v in result.values],
        "missing": [asdict(v) for v in result.missing]}, indent=2) + "\n"
