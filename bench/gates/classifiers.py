"""The study's four classifier gates over one feature: the estimator's score.

Each gate maps the raw score to one feature column with :class:`FeatureMap`
(undefined scores imputed above the fit part's range, standardised where the
model is scale-sensitive), fits an sklearn model on the fit part of train and
retrieves where the model predicts "needs retrieval". The dev part is only
scored, never fitted, so it stays held out for selection.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

from bench.gates.registry import accuracy, register_gate


@dataclass(frozen=True)
class FeatureMap:
    """Raw score → model feature, with statistics of the fit part only.

    NaN and +inf become ``high_fill`` = finite max + span (span = max − min, or 1
    when the fit part is constant): above every finite fit score, i.e. the most
    uncertain value, consistent with "an undefined score retrieves"; the model
    still learns from the fit part what that value means. -inf becomes
    ``low_fill`` = finite min − span. Without any finite fit score both fills
    are 0. Then ``(x - mean) / scale`` when standardising (scale 1 if the
    imputed fit values are constant), else mean 0 and scale 1.
    """

    high_fill: float
    low_fill: float
    mean: float
    scale: float

    @classmethod
    def fit(cls, scores: np.ndarray, standardise: bool) -> FeatureMap:
        finite = scores[np.isfinite(scores)]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            span = high - low if high > low else 1.0
            high_fill, low_fill = high + span, low - span
        else:
            high_fill = low_fill = 0.0
        filled = _impute(scores, high_fill, low_fill)
        if not standardise:
            return cls(high_fill, low_fill, 0.0, 1.0)
        std = float(filled.std())
        return cls(high_fill, low_fill, float(filled.mean()), std if std > 0 else 1.0)

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Column of shape (n, 1) ready for an sklearn model."""
        filled = _impute(np.asarray(scores, dtype=np.float64), self.high_fill, self.low_fill)
        return ((filled - self.mean) / self.scale)[:, None]


def _impute(scores: np.ndarray, high_fill: float, low_fill: float) -> np.ndarray:
    high = np.isnan(scores) | (scores == np.inf)
    return np.where(high, high_fill, np.where(scores == -np.inf, low_fill, scores))


class ClassifierGate:
    """A fitted single-feature classifier used as a retrieve/skip gate.

    Subclasses set ``kind``, ``simplicity``, ``standardise`` and implement
    :meth:`build` (the unfitted model) and :meth:`model_params` (its JSON-able
    fitted parameters). A fit part with one class needs no model: the gate
    predicts that class with probability 0 or 1.
    """

    kind: ClassVar[str]
    simplicity: ClassVar[int]
    standardise: ClassVar[bool]

    def __init__(self, features: FeatureMap, model: Any, constant: bool | None,
                 fit_accuracy: float, dev_accuracy: float):
        self.features = features
        self.model = model
        self.constant = constant
        self.fit_accuracy = fit_accuracy
        self.dev_accuracy = dev_accuracy

    @classmethod
    def build(cls, n_fit: int, seed: int) -> Any:
        raise NotImplementedError

    def model_params(self) -> dict:
        raise NotImplementedError

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """P(needs retrieval) per score."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.model is None:
            return np.full(scores.shape, float(bool(self.constant)))
        positive = list(self.model.classes_).index(True)
        return self.model.predict_proba(self.features.transform(scores))[:, positive]

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """The model's predicted class (True = retrieve)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.model is None:
            return np.full(scores.shape, bool(self.constant))
        return self.model.predict(self.features.transform(scores)).astype(bool)

    def to_dict(self) -> dict:
        params = {"fit_accuracy": self.fit_accuracy, "dev_accuracy": self.dev_accuracy,
                  **asdict(self.features)}
        if self.model is None:
            params["constant"] = bool(self.constant)
        else:
            params.update(self.model_params())
        return params

    @classmethod
    def fit_parts(cls, fit_scores: np.ndarray, fit_need: np.ndarray, dev_scores: np.ndarray,
                  dev_need: np.ndarray, seed: int = 0) -> ClassifierGate:
        """Fit on the fit part only; the dev accuracy is measured, never fitted.

        An empty dev part scores as the fit part (as for the threshold gate).
        """
        fit_need = np.asarray(fit_need, dtype=bool)
        features = FeatureMap.fit(np.asarray(fit_scores, dtype=np.float64), cls.standardise)
        model, constant = None, None
        if fit_need.all() or not fit_need.any():
            constant = bool(fit_need[0]) if fit_need.size else False
        else:
            model = cls.build(len(fit_need), seed)
            with warnings.catch_warnings():
                # 500 MLP epochs on a few hundred points may stop short of tol: the
                # study's setting, kept; the warning would only flood the log.
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(features.transform(fit_scores), fit_need)
        gate = cls(features, model, constant, float("nan"), float("nan"))
        gate.fit_accuracy = accuracy(gate.decide(fit_scores), fit_need)
        gate.dev_accuracy = (accuracy(gate.decide(dev_scores), dev_need) if len(dev_need)
                             else gate.fit_accuracy)
        return gate


@register_gate
class LogisticGate(ClassifierGate):
    """``LogisticRegression(max_iter=15000)`` on the standardised score."""

    kind = "logistic"
    simplicity = 1
    standardise = True

    @classmethod
    def build(cls, n_fit: int, seed: int) -> LogisticRegression:
        return LogisticRegression(max_iter=15000)

    def model_params(self) -> dict:
        return {"coef": float(self.model.coef_[0, 0]),
                "intercept": float(self.model.intercept_[0])}


@register_gate
class TreeGate(ClassifierGate):
    """``DecisionTreeClassifier(max_depth=3, random_state=seed)`` on the imputed raw score
    (a tree is scale-free, so its split thresholds read in score units)."""

    kind = "tree"
    simplicity = 2
    standardise = False

    @classmethod
    def build(cls, n_fit: int, seed: int) -> DecisionTreeClassifier:
        return DecisionTreeClassifier(max_depth=3, random_state=seed)

    def model_params(self) -> dict:
        tree = self.model.tree_
        internal = tree.children_left >= 0
        positive = list(self.model.classes_).index(True)
        leaves = ~internal
        # P(need) per leaf, in score order of the leaves (left to right in the tree).
        leaf_probability = tree.value[leaves, 0, positive] / tree.value[leaves, 0].sum(axis=1)
        return {"max_depth": 3, "depth": int(self.model.get_depth()),
                "n_leaves": int(self.model.get_n_leaves()),
                "splits": sorted(float(t) for t in tree.threshold[internal]),
                "leaf_probability": [float(p) for p in leaf_probability]}


@register_gate
class KnnGate(ClassifierGate):
    """``KNeighborsClassifier(15)`` on the standardised score; k is capped at the fit size."""

    kind = "knn"
    simplicity = 3
    standardise = True

    @classmethod
    def build(cls, n_fit: int, seed: int) -> KNeighborsClassifier:
        return KNeighborsClassifier(min(15, n_fit))

    def model_params(self) -> dict:
        return {"n_neighbors": int(self.model.n_neighbors),
                "n_fit": int(self.model.n_samples_fit_)}


@register_gate
class MlpGate(ClassifierGate):
    """``MLPClassifier(max_iter=500, random_state=seed)`` on the standardised score."""

    kind = "mlp"
    simplicity = 4
    standardise = True

    @classmethod
    def build(cls, n_fit: int, seed: int) -> MLPClassifier:
        return MLPClassifier(max_iter=500, random_state=seed)

    def model_params(self) -> dict:
        # The 301 weights are not written out; their L1 norm, the epochs run and the
        # final training loss identify the fit.
        return {"hidden_layer_sizes": list(self.model.hidden_layer_sizes),
                "n_iter": int(self.model.n_iter_), "loss": float(self.model.loss_),
                "weights_l1": float(sum(np.abs(w).sum() for w in self.model.coefs_))}
