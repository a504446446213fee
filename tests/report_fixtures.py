"""A small synthetic ``metrics.json`` for the leaderboard, HTML report and compare tests.

Two datasets; reference rows never/always/ideal; three gates with curves and
reliability diagrams; one pipeline (no curve). Values chosen so that the
rankings (worked out in tests/test_leaderboard.py) contain ties.

In-Accuracy       nq    hotpotqa     ROC-AUC   nq    hotpotqa     LMC    nq    hotpotqa
gate_a           .50    .30                    .80   .75                 1.6   1.9
gate_b           .40    .35                    .70   .75                 1.2   1.5
gate_c           .50    .25                    .60   .65                 1.9   1.5
flare (pipeline) .45    .32                    .55   null                18.0  4.0
"""
from __future__ import annotations

import copy

GATES = ("gate_a", "gate_b", "gate_c")
VALUES = {  # method: {dataset: (in_accuracy, roc_auc, lmc, generate_calls)}
    "gate_a": {"nq": (0.50, 0.80, 1.6, 2.0), "hotpotqa": (0.30, 0.75, 1.9, 1.9)},
    "gate_b": {"nq": (0.40, 0.70, 1.2, 11.9), "hotpotqa": (0.35, 0.75, 1.5, 11.5)},
    "gate_c": {"nq": (0.50, 0.60, 1.9, 1.8), "hotpotqa": (0.25, 0.65, 1.5, 1.7)},
    "flare": {"nq": (0.45, 0.55, 18.0, 9.5), "hotpotqa": (0.32, None, 4.0, 3.0)},
}
REFERENCE = {  # method: {dataset: (in_accuracy, rc)}
    "never": {"nq": (0.30, 0.0), "hotpotqa": (0.20, 0.0)},
    "always": {"nq": (0.40, 1.0), "hotpotqa": (0.33, 1.0)},
    "ideal": {"nq": (0.55, 0.7), "hotpotqa": (0.45, 0.6)},
}


def _reference_row(in_accuracy: float, rc: float, name: str) -> dict:
    lmc = 1.0 if name in ("never", "always") else 1.0 + rc
    return {"kind": "reference", "in_accuracy": in_accuracy, "em": in_accuracy / 2, "rc": rc,
            "lmc": lmc, "roc_auc": None, "accuracy": 0.5, "generate_calls": lmc}


def _gate_row(values: tuple, kind: str) -> dict:
    in_accuracy, roc_auc, lmc, generate_calls = values
    return {"kind": kind, "in_accuracy": in_accuracy, "em": in_accuracy / 2,
            "rc": round(lmc - 1.0, 4), "lmc": lmc,
            "roc_auc": roc_auc, "accuracy": 0.6, "ece": 0.1 if kind == "gate" else None,
            "generate_calls": generate_calls}


def _curve(never: float, always: float, peak: float) -> dict:
    return {"rc": [0.0, 0.25, 0.5, 0.75, 1.0],
            "in_accuracy": [never, round((never + peak) / 2, 4), peak,
                            round((peak + always) / 2, 4), always]}


def _reliability(shift: float) -> dict:
    return {"confidence": [0.05, 0.25, 0.55, 0.85],
            "frequency": [round(0.05 + shift, 4), round(0.3 + shift, 4), 0.5, 0.9],
            "count": [2, 1, 2, 1]}


def synthetic_metrics() -> dict:
    """The fixture described in the module docstring (a fresh copy on each call)."""
    datasets: dict = {}
    for dataset in ("nq", "hotpotqa"):
        rows = {name: _reference_row(*REFERENCE[name][dataset], name) for name in REFERENCE}
        for method, per_dataset in VALUES.items():
            rows[method] = _gate_row(per_dataset[dataset],
                                     "gate" if method in GATES else "pipeline")
        never, always = REFERENCE["never"][dataset][0], REFERENCE["always"][dataset][0]
        datasets[dataset] = {
            "rows": rows, "n_test": 6, "n_train": 6, "need_rate_test": 0.5,
            "gates": {g: {"chosen": "threshold", "candidates": {}} for g in GATES},
            "curves": {g: _curve(never, always, VALUES[g][dataset][0]) for g in GATES},
            "reliability": {g: _reliability(0.05 * i) for i, g in enumerate(GATES)},
        }
    return {"datasets": copy.deepcopy(datasets)}


def without_plots_data(metrics: dict) -> dict:
    """An older run: no ``curves`` and no ``reliability`` anywhere."""
    older = copy.deepcopy(metrics)
    for result in older["datasets"].values():
        result.pop("curves", None)
        result.pop("reliability", None)
    return older
