"""Per-dataset figures for the HTML report, drawn with matplotlib and returned as base64 PNG.

Figures are built on ``matplotlib.figure.Figure`` objects directly (Agg canvas,
no pyplot), so no global figure state is created and nothing opens a window.
PNG metadata that would change with the matplotlib version is dropped, so the
same data give the same bytes on one installation.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping

#: Estimators drawn per figure: a bounded number keeps figures legible and the file small.
MAX_ESTIMATORS = 8
#: (label, marker, colour) of the reference points on the operating-curve plot.
REFERENCE_MARKERS = {
    "never": ("Never RAG", "s", "#222222"),
    "always": ("Always RAG", "^", "#222222"),
    "ideal": ("Ideal", "*", "#d4a017"),
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (the report shows a note instead of plots if not)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def top_estimators(result: Mapping, candidates: Iterable[str],
                   limit: int = MAX_ESTIMATORS) -> list[str]:
    """The ``limit`` candidates with the highest test ROC-AUC (undefined last, then by name)."""
    rows = result.get("rows", {})

    def order(name: str) -> tuple[float, str]:
        auc = _number(rows.get(name, {}).get("roc_auc"))
        return (-auc if auc is not None else math.inf, name)

    return sorted(candidates, key=order)[:limit]


def _new_axes(width: float, height: float, right: float):
    """Fixed margins (inches) instead of a layout engine, which doubles the drawing time."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(left=0.7 / width, right=1 - right / width, bottom=0.55 / height,
                           top=1 - 0.35 / height)
    return figure, figure.subplots()


def _png_base64(figure) -> str:
    buffer = io.BytesIO()
    # Fast zlib level: plots compress well anyway, and encoding dominates the time.
    figure.savefig(buffer, format="png", metadata={"Software": None},
                   pil_kwargs={"compress_level": 1})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _label(name: str, metric: str, value) -> str:
    number = _number(value)
    return name if number is None else f"{name} ({metric} {number:.2f})"


def operating_curve_png(dataset: str, result: Mapping,
                        limit: int = MAX_ESTIMATORS) -> str | None:
    """In-Accuracy against RC for the top-``limit`` gates by ROC-AUC, with reference points.

    Each curve is the threshold sweep on test (retrieve the k most uncertain
    questions); a dot of the same colour marks the operating point the gate
    chose on dev. Returns ``None`` when the dataset has no curve.
    """
    curves = result.get("curves") or {}
    names = top_estimators(result, curves, limit)
    if not names:
        return None
    rows = result.get("rows", {})
    figure, axes = _new_axes(7.6, 4.2, right=2.5)
    for colour, name in zip(PALETTE, names):
        curve = curves[name]
        axes.plot(curve.get("rc", []), curve.get("in_accuracy", []), color=colour,
                  linewidth=1.2, label=_label(name, "AUC", rows.get(name, {}).get("roc_auc")))
        rc, accuracy = (_number(rows.get(name, {}).get(key)) for key in ("rc", "in_accuracy"))
        if rc is not None and accuracy is not None:
            axes.plot([rc], [accuracy], marker="o", markersize=5, color=colour, linestyle="")
    for method, (label, marker, colour) in REFERENCE_MARKERS.items():
        row = rows.get(method, {})
        rc, accuracy = _number(row.get("rc")), _number(row.get("in_accuracy"))
        if rc is not None and accuracy is not None:
            axes.plot([rc], [accuracy], marker=marker, markersize=11, color=colour,
                      linestyle="", label=label, zorder=5)
    axes.set_xlim(-0.03, 1.03)
    axes.set_xlabel("RC (retrieval calls per question)")
    axes.set_ylabel("In-Accuracy")
    axes.set_title(f"{dataset}: operating curves (dot = threshold chosen on dev)", fontsize=10)
    axes.grid(alpha=0.3)
    # Outside the axes: with eight curves a legend inside would hide some of them.
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png_base64(figure)


def reliability_png(dataset: str, result: Mapping, limit: int = MAX_ESTIMATORS) -> str | None:
    """Observed need rate against predicted P(needs retrieval), per bin, with the diagonal.

    Empty bins (count 0 or no value) are not drawn. Returns ``None`` when no
    gate of the dataset gives probabilities.
    """
    reliability = result.get("reliability") or {}
    names = top_estimators(result, reliability, limit)
    if not names:
        return None
    rows = result.get("rows", {})
    figure, axes = _new_axes(6.6, 4.2, right=2.2)
    axes.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1,
              label="perfectly calibrated")
    for colour, name in zip(PALETTE, names):
        diagram = reliability[name]
        counts = diagram.get("count") or [None] * len(diagram.get("confidence", []))
        points = [(c, f) for c, f, n in zip(diagram.get("confidence", []),
                                            diagram.get("frequency", []), counts)
                  if _number(c) is not None and _number(f) is not None and (n is None or n > 0)]
        axes.plot([c for c, _ in points], [f for _, f in points], marker="o", markersize=4,
                  color=colour, linewidth=1.2,
                  label=_label(name, "ECE", rows.get(name, {}).get("ece")))
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("predicted P(needs retrieval)")
    axes.set_ylabel("observed need rate")
    axes.set_title(f"{dataset}: reliability of the chosen gates", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png_base64(figure)
