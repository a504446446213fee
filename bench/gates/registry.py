"""The registry of decision makers (gate kinds) and the interface they share.

A gate kind is a class with a ``fit_parts`` constructor registered under its
``kind`` name. Selection (:mod:`bench.gates.selection`) walks the registry in
order of ``simplicity`` (lower = simpler), which is also the tie order: when
two kinds reach the same dev accuracy the simpler one is kept.
"""
from __future__ import annotations

from typing import Protocol, TypeVar, cast

import numpy as np


class Gate(Protocol):
    """What selection and evaluation need from a fitted gate."""

    @property
    def kind(self) -> str: ...

    @property
    def fit_accuracy(self) -> float: ...

    @property
    def dev_accuracy(self) -> float: ...

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Boolean retrieve decision per score (True = retrieve)."""
        ...

    def probability(self, scores: np.ndarray) -> np.ndarray | None:
        """Predicted P(needs retrieval) per score, or None if the gate has none."""
        ...

    def to_dict(self) -> dict:
        """JSON-able parameters, including ``fit_accuracy`` and ``dev_accuracy``."""
        ...


class GateKind(Protocol):
    """A registered class: its name, tie rank and constructor from a fit/dev split."""

    kind: str
    simplicity: int

    @classmethod
    def fit_parts(cls, fit_scores: np.ndarray, fit_need: np.ndarray, dev_scores: np.ndarray,
                  dev_need: np.ndarray, seed: int) -> Gate:
        """Fit on the fit part; the dev part gives the dev accuracy (see each kind)."""
        ...


_REGISTRY: dict[str, GateKind] = {}
KindT = TypeVar("KindT")


def register_gate(cls: KindT) -> KindT:
    """Class decorator: make a gate kind selectable under ``cls.kind``."""
    kind = cast(GateKind, cls)
    if kind.kind in _REGISTRY:
        raise ValueError(f"gate kind {kind.kind!r} is registered twice")
    if any(other.simplicity == kind.simplicity for other in _REGISTRY.values()):
        raise ValueError(f"gate kind {kind.kind!r} repeats simplicity rank {kind.simplicity}: "
                         "the tie order must be total")
    _REGISTRY[kind.kind] = kind
    return cls


def gate_kinds() -> dict[str, GateKind]:
    """Registered kinds, simplest first (the selection tie order)."""
    return dict(sorted(_REGISTRY.items(), key=lambda item: item[1].simplicity))


def accuracy(decision: np.ndarray, need: np.ndarray) -> float:
    """Fraction of rows where the decision equals the need label."""
    return float(np.mean(np.asarray(decision, bool) == np.asarray(need, bool)))


def check_scores_and_need(scores, need) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert train scores (float, NaN allowed) and need labels (bool)."""
    scores = np.asarray(scores, dtype=np.float64)
    need = np.asarray(need, dtype=bool)
    if scores.shape != need.shape or scores.ndim != 1:
        raise ValueError("scores and need must be 1-D arrays of equal length")
    return scores, need
