"""Choose one gate per estimator among every registered kind, on dev only.

Train is split once with :func:`split_dev`; every kind is fit on the fit
part and scored on the dev part; the best dev accuracy wins, ties going to
the simpler kind (registry ``simplicity`` order: threshold < logistic < tree
< knn < mlp). The winner is kept as fitted, not refit on fit + dev, so its
dev accuracy is an honest held-out number. Test data never enters here.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bench.gates.registry import Gate, check_scores_and_need, gate_kinds
from bench.gates.threshold import split_dev


@dataclass(frozen=True)
class GateSelection:
    """The chosen gate and every candidate it was chosen from.

    Attributes
    ----------
    chosen : Gate
    candidates : dict of str to Gate
        Every fitted kind, simplest first.
    n_fit, n_dev : int
        Sizes of the two parts of train.
    """

    chosen: Gate
    candidates: dict[str, Gate]
    n_fit: int
    n_dev: int

    def to_dict(self) -> dict:
        """``{"chosen": kind, "candidates": {kind: params}, "n_fit", "n_dev"}`` (JSON-able)."""
        return {"chosen": self.chosen.kind,
                "candidates": {kind: gate.to_dict() for kind, gate in self.candidates.items()},
                "n_fit": self.n_fit, "n_dev": self.n_dev}


def select_gate(scores, need, dev_fraction: float = 0.2, seed: int = 0,
                kinds: Iterable[str] | None = None) -> GateSelection:
    """Fit every kind on the fit part of train and keep the best on dev.

    Parameters
    ----------
    scores : array_like of shape (n,)
        Train scores of one estimator (higher = more uncertain; NaN allowed).
    need : array_like of bool, shape (n,)
        Train need-retrieval labels.
    dev_fraction, seed
        Passed to :func:`split_dev`; ``seed`` also seeds the tree and the MLP.
    kinds : iterable of str, optional
        Restrict the candidates (default: every registered kind).

    Returns
    -------
    GateSelection

    Raises
    ------
    ValueError
        On mismatched inputs, an unknown kind, or no rows left in the fit part.
    """
    scores, need = check_scores_and_need(scores, need)
    registry = gate_kinds()
    wanted = list(registry) if kinds is None else list(kinds)
    unknown = sorted(set(wanted) - set(registry))
    if unknown or not wanted:
        raise ValueError(f"unknown gate kind(s) {unknown}; registered: {list(registry)}")
    fit_idx, dev_idx = split_dev(len(scores), dev_fraction, seed)
    if len(fit_idx) == 0:
        raise ValueError(f"no rows left to fit a gate: {len(scores)} train row(s), "
                         f"{len(dev_idx)} of them held out for dev (dev_fraction {dev_fraction})")
    candidates: dict[str, Gate] = {}
    for kind, cls in registry.items():
        if kind in wanted:
            candidates[kind] = cls.fit_parts(scores[fit_idx], need[fit_idx], scores[dev_idx],
                                             need[dev_idx], seed)
    return GateSelection(choose(candidates), candidates, len(fit_idx), len(dev_idx))


def choose(candidates: dict[str, Gate]) -> Gate:
    """Highest dev accuracy; among equals the first in ``candidates`` (simplest first)."""
    best: Gate | None = None
    for gate in candidates.values():
        if best is None or gate.dev_accuracy > best.dev_accuracy:
            best = gate
    if best is None:
        raise ValueError("no candidate gates to choose from")
    return best


def fit_gates(train_scores: dict[str, np.ndarray], need: np.ndarray, dev_fraction: float,
              seed: int) -> dict[str, GateSelection]:
    """:func:`select_gate` for each estimator's train scores, with the same split."""
    return {name: select_gate(scores, need, dev_fraction, seed)
            for name, scores in train_scores.items()}
