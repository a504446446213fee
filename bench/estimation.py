"""Estimator scores for one dataset: plain estimators map bundles, trained ones fit on train.

A trained estimator scores its own training questions too well, and the
gates are fit on train scores, so train scores come from cross-fitting:
each of ``FOLDS`` seeded folds is scored by a copy fitted on the other folds.
Test questions are scored by a copy fitted on all of train, whose parameters
are saved (JSON + ``.npz``, no pickle) beside the results.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import estimators as estimator_registry
from estimators.base import (
    BackgroundEmbeddings,
    Estimator,
    EstimatorOptions,
    FitData,
    FittedState,
    StatBundle,
    TrainedEstimator,
)

FOLDS = 5


def score_all(estimator: Estimator, bundles: Sequence[StatBundle]) -> np.ndarray:
    return np.array([estimator.score(b) for b in bundles], dtype=np.float64)


def _fit(name: str, options: EstimatorOptions, bundles: Sequence[StatBundle],
         labels: np.ndarray, seed: int, dev_fraction: float,
         background: Callable[[], BackgroundEmbeddings] | None) -> TrainedEstimator:
    estimator = estimator_registry.create(name, options)
    assert isinstance(estimator, TrainedEstimator)
    estimator.fit(FitData(bundles, labels, seed, dev_fraction, background))
    return estimator


def cross_fitted_scores(estimator: TrainedEstimator, train: Sequence[StatBundle],
                        labels: np.ndarray, seed: int, dev_fraction: float,
                        background=None) -> np.ndarray:
    """Out-of-fold train scores: question i is scored by a fit that never saw it."""
    n = len(train)
    folds = np.array_split(np.random.default_rng(seed).permutation(n), min(FOLDS, n))
    scores = np.full(n, np.nan)
    for fold in folds:
        held = set(fold.tolist())
        rest = [i for i in range(n) if i not in held]
        fitted = _fit(estimator.name, estimator.options, [train[i] for i in rest],
                      labels[rest], seed, dev_fraction, background)
        scores[fold] = score_all(fitted, [train[i] for i in fold])
    return scores


def score_split_pair(estimator: Estimator, train: Sequence[StatBundle],
                     train_labels: np.ndarray, test: Sequence[StatBundle], *, seed: int,
                     dev_fraction: float, background=None,
                     state_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train scores, test scores) of one estimator; trained ones are fit on train only."""
    if not isinstance(estimator, TrainedEstimator):
        return score_all(estimator, train), score_all(estimator, test)
    train_scores = cross_fitted_scores(estimator, train, train_labels, seed, dev_fraction,
                                       background)
    estimator.fit(FitData(train, train_labels, seed, dev_fraction, background))
    if state_dir is not None:
        save_state(estimator.get_state(), state_dir / estimator.name)
    return train_scores, score_all(estimator, test)


def save_state(state: FittedState, stem: Path) -> None:
    """``stem.json`` (meta) and ``stem.npz`` (arrays), both readable without pickle."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(state.meta, sort_keys=True, indent=1))
    # numpy's stub lets **kwds reach allow_pickle: bool; the keys are array names.
    np.savez(stem.with_suffix(".npz"), **state.arrays)  # type: ignore[arg-type]


def load_state(stem: Path) -> FittedState:
    meta = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return FittedState(meta, arrays)
