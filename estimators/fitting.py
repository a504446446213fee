"""Shared machinery of the trained estimators: splits, scaling, Gaussians, probes.

Every trained estimator fits with scikit-learn but scores from plain NumPy
arrays (:class:`~estimators.base.FittedState`), so a saved state needs no
pickle and scores identically after :meth:`set_state`. A fitted classifier is
itself a ``FittedState`` (a "model": ``meta["kind"]`` plus arrays); it is
nested into the estimator's state under an array-name prefix.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from estimators.base import FittedState, StatBundle, TrainedEstimator

Model = FittedState
#: Largest number of x10 jitter increases before a covariance is declared unusable.
MAX_JITTER_STEPS = 30


class FittedEstimator(TrainedEstimator):
    """A trained estimator whose scoring reads only its :class:`FittedState`.

    ``fit`` ends with :meth:`set_state`, so a fitted and a restored instance
    run the same code on the same arrays and score bit-identically.
    """

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._state: FittedState | None = None

    def get_state(self) -> FittedState:
        state = self._fitted()
        # The JSON round trip both copies meta and proves it is JSON.
        return FittedState(json.loads(json.dumps(state.meta)),
                           {k: np.array(v, copy=True) for k, v in state.arrays.items()})

    def set_state(self, state: FittedState) -> None:
        if state.meta.get("estimator") != self.name:
            raise ValueError(f"state of {state.meta.get('estimator')!r} given to estimator "
                             f"{self.name!r}")
        self._state = FittedState(json.loads(json.dumps(state.meta)),
                                  {k: np.asarray(v) for k, v in state.arrays.items()})

    def _fitted(self) -> FittedState:
        if self._state is None:
            raise RuntimeError(f"trained estimator {self.name!r} is not fitted: call fit(FitData) "
                               "or set_state(...) before score()")
        return self._state


# -- layers and features ------------------------------------------------------------
def middle_layer(layers: np.ndarray) -> int:
    """Smallest recorded hidden-state index > 0 (the backend records middle and last).

    The same rule as :func:`estimators.eigenscore.middle_layer_embeddings`.
    """
    candidates = [int(layer) for layer in np.asarray(layers) if layer > 0]
    if not candidates:
        raise ValueError(f"no hidden layer above 0 was recorded (have {list(layers)})")
    return min(candidates)


def last_layer(layers: np.ndarray) -> int:
    """Largest recorded hidden-state index (the model's last layer by default)."""
    return int(np.max(np.asarray(layers)))


def stack_features(bundles: Sequence[StatBundle],
                   feature: Callable[[StatBundle], np.ndarray]) -> np.ndarray:
    """(n, d) float64 matrix of one feature vector per bundle."""
    if not bundles:
        raise ValueError("cannot fit on an empty train set")
    return np.stack([np.asarray(feature(b), dtype=np.float64) for b in bundles])


def binary_labels(values, n: int) -> np.ndarray:
    """Check and convert 0/1 labels (one per train bundle)."""
    y = np.asarray(values)
    if y.shape != (n,) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be a ({n},) array of 0/1, got shape {y.shape}")
    return y.astype(np.int64)


# -- splits ---------------------------------------------------------------------------
def dev_split(n: int, dev_fraction: float, seed: int,
              labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (fit, dev) index split; stratified by ``labels`` when given.

    Each class contributes round(dev_fraction * its size) rows to dev, so dev
    keeps the class balance and ROC-AUC on it is defined whenever it can be.
    """
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    rng = np.random.default_rng(seed)
    groups = ([np.arange(n)] if labels is None
              else [np.flatnonzero(labels == c) for c in np.unique(labels)])
    dev: list[int] = []
    for group in groups:
        k = int(np.floor(dev_fraction * len(group) + 0.5))
        dev.extend(rng.permutation(group)[:k].tolist())
    dev_idx = np.sort(np.asarray(dev, dtype=np.int64))
    return np.setdiff1d(np.arange(n), dev_idx), dev_idx


def fraction_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split into round(fraction * n) and the rest, both non-empty (n >= 2)."""
    if n < 2:
        raise ValueError(f"need at least 2 train questions to split, got {n}")
    k = min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:k]), np.sort(order[k:])


# -- Gaussians --------------------------------------------------------------------------
def cholesky_with_jitter(cov: np.ndarray) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of ``cov + jitter I`` and the jitter that made it PD.

    jitter starts at 1e-6 * mean(diag(cov)) (1e-6 if that is 0) and grows x10
    until the factorisation succeeds: high-dimensional hidden states give a
    rank-deficient covariance (d > n), which must be regularised to invert.
    """
    scale = float(np.mean(np.diag(cov)))
    jitter = 1e-6 * scale if scale > 0 else 1e-6
    eye = np.eye(cov.shape[0])
    for _ in range(MAX_JITTER_STEPS):
        try:
            return cholesky(cov + jitter * eye, lower=True), jitter
        except np.linalg.LinAlgError:
            jitter *= 10.0
    raise np.linalg.LinAlgError(f"covariance not positive definite even with jitter {jitter:g}")


def fit_gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, whitening matrix W = L^-1 (Sigma + jitter I = L L^T) and jitter of rows ``x``.

    Sigma is the unbiased sample covariance (n - 1; n for one row), so that
    MD(h) = ||W (h - mu)|| = sqrt((h - mu)^T (Sigma + jitter I)^-1 (h - mu)).
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / max(x.shape[0] - 1, 1)
    lower, jitter = cholesky_with_jitter(cov)
    whitening = solve_triangular(lower, np.eye(x.shape[1]), lower=True)
    return mean, whitening, jitter


def mahalanobis(x: np.ndarray, mean: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """Row-wise MD = ||W (x - mu)|| (not squared)."""
    z = (np.atleast_2d(np.asarray(x, dtype=np.float64)) - mean) @ whitening.T
    return np.sqrt(np.sum(z * z, axis=1))


def share_at_most(reference: np.ndarray, value: float) -> float:
    """rank_TR(v): the share of the (sorted) reference values <= v."""
    return float(np.searchsorted(reference, value, side="right") / reference.shape[0])


# -- scaling and models ------------------------------------------------------------------
def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale (std, 1 where a column is constant so it stays finite)."""
    scale = x.std(axis=0)
    return x.mean(axis=0), np.where(scale > 0, scale, 1.0)


def export_logistic(est) -> Model:
    """A fitted binary sklearn ``LogisticRegression`` as arrays."""
    return Model({"kind": "logistic"}, {"coef": est.coef_[0].astype(np.float64),
                                        "intercept": est.intercept_.astype(np.float64)})


def export_mlp(est) -> Model:
    """A fitted binary ReLU sklearn ``MLPClassifier`` as arrays (logistic output)."""
    if est.activation != "relu" or est.out_activation_ != "logistic":
        raise ValueError("only binary ReLU MLPs can be exported")
    arrays = {f"coef{i}": w for i, w in enumerate(est.coefs_)}
    arrays.update({f"intercept{i}": b for i, b in enumerate(est.intercepts_)})
    return Model({"kind": "mlp", "n_layers": len(est.coefs_)}, arrays)


def logistic_proba(model: Model, x: np.ndarray) -> np.ndarray:
    """P(y = 1) = sigmoid(x w + b)."""
    return expit(x @ model.arrays["coef"] + model.arrays["intercept"][0])


def mlp_proba(model: Model, x: np.ndarray) -> np.ndarray:
    """Forward pass: ReLU hidden layers, sigmoid output unit."""
    a = x
    for i in range(model.meta["n_layers"]):
        a = a @ model.arrays[f"coef{i}"] + model.arrays[f"intercept{i}"]
        if i < model.meta["n_layers"] - 1:
            a = np.maximum(a, 0.0)
    return expit(a[:, 0])


def quiet_fit(est, x: np.ndarray, y: np.ndarray):
    """``est.fit(x, y)`` without ConvergenceWarning: iteration caps are deliberate here
    (SAPLMA's selected epochs, the study's MLP ``max_iter=500``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(x, y)


def nest(prefix: str, model: Model) -> tuple[dict, dict[str, np.ndarray]]:
    """Model meta and its arrays renamed ``prefix/name``, for an estimator state."""
    return model.meta, {f"{prefix}/{k}": v for k, v in model.arrays.items()}


def unnest(prefix: str, state: FittedState, meta_key: str) -> Model:
    """Inverse of :func:`nest`."""
    cut = len(prefix) + 1
    return Model(state.meta[meta_key],
                 {k[cut:]: v for k, v in state.arrays.items() if k.startswith(prefix + "/")})


FitFn = Callable[[np.ndarray, np.ndarray, dict], Model]
PredictFn = Callable[[Model, np.ndarray], np.ndarray]


def fit_scaled(x: np.ndarray, y: np.ndarray, spec: dict, fit: FitFn) -> Model:
    """Standardise ``x``, then ``fit``; one class only gives a constant model."""
    mean, scale = standardiser(x)
    if np.unique(y).size < 2:
        # No classifier can be trained on one class; its rate is the best guess.
        model = Model({"kind": "constant", "p": float(np.mean(y))}, {})
    else:
        model = fit((x - mean) / scale, y, spec)
    model.arrays.update({"mean": mean, "scale": scale})
    model.meta["spec"] = spec
    return model


def predict_scaled(model: Model, x: np.ndarray, predict: PredictFn) -> np.ndarray:
    """P(y = 1) of a model from :func:`fit_scaled`."""
    if model.meta["kind"] == "constant":
        return np.full(x.shape[0], model.meta["p"])
    return predict(model, (x - model.arrays["mean"]) / model.arrays["scale"])


def json_floats(values) -> list[float | None]:
    """Floats for JSON meta: NaN becomes None (strict JSON has no NaN)."""
    return [None if np.isnan(v) else float(v) for v in values]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC, NaN when ``y`` has a single class (or is empty)."""
    return float(roc_auc_score(y, p)) if np.unique(y).size == 2 else float("nan")


def select_and_refit(x: np.ndarray, y: np.ndarray, specs: Sequence[dict], fit: FitFn,
                     predict: PredictFn, seed: int, dev_fraction: float
                     ) -> tuple[Model, list[float]]:
    """Choose the spec with the best dev ROC-AUC, refit it on all rows.

    Dev is a seeded stratified ``dev_fraction`` of the rows; the models are
    fitted on the rest and scored with ``predict`` (the same NumPy code that
    scores test). Ties and an undefined AUC (one class on dev) keep the first
    spec, so the result is deterministic.

    Returns
    -------
    model : Model
        The chosen spec fitted on every row; ``meta["spec"]`` names it.
    aucs : list of float
        Dev ROC-AUC of each spec (NaN where undefined or not evaluated).
    """
    aucs = [float("nan")] * len(specs)
    fit_idx, dev_idx = dev_split(len(y), dev_fraction, seed, labels=y)
    if len(specs) > 1 and np.unique(y[dev_idx]).size == 2 and fit_idx.size:
        for i, spec in enumerate(specs):
            model = fit_scaled(x[fit_idx], y[fit_idx], spec, fit)
            aucs[i] = roc_auc(y[dev_idx], predict_scaled(model, x[dev_idx], predict))
    best = 0 if np.all(np.isnan(aucs)) else int(np.nanargmax(aucs))
    return fit_scaled(x, y, specs[best], fit), aucs


#: NumPy evaluation of each exported linear/MLP model kind.
PROBA_BY_KIND: dict[str, PredictFn] = {"logistic": logistic_proba, "mlp": mlp_proba}
