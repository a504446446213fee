"""Density estimators on sequence embeddings: Mahalanobis, relative Mahalanobis, RDE.

The embedding h of a question is the greedy generation's mean hidden state
over every prompt and answer position fed to the model, at the last recorded
layer (:meth:`Generation.sequence_hidden_mean`). This is the study's
embedding (LM-Polygraph ``get_embeddings_from_output``) with one documented
fix: padding is masked, where the study averaged over left-padding so that
its MD, RMD and RDE depended on the batch (STUDY.md §9.4).

The study fits these on one half of train (seed 0); here they fit on every
row of :class:`~estimators.base.FitData` they are given (the runner decides
which rows). They have no hyper-parameters, so nothing is held out for dev.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.covariance import MinCovDet
from sklearn.decomposition import KernelPCA

from bench.models.outputs import Generation
from estimators.base import GREEDY, FitData, FittedState, StatBundle, finite_or_nan, register
from estimators.fitting import (
    FittedEstimator,
    fit_gaussian,
    last_layer,
    mahalanobis,
    stack_features,
)

#: Kernel PCA components of RDE (Yoo et al.; LM-Polygraph), capped at n_train - 1.
RDE_COMPONENTS = 100


def sequence_embedding(greedy: Generation, layer: int) -> np.ndarray:
    """(d,) float64 padding-masked mean hidden state over prompt and answer at ``layer``."""
    return greedy.sequence_hidden_mean()[greedy.layer_index(layer)].astype(np.float64)


def train_embeddings(bundles) -> tuple[int, np.ndarray]:
    """The last recorded layer of the first train question and the (n, d) train embeddings."""
    if not bundles:
        raise ValueError("cannot fit on an empty train set")
    layer = last_layer(bundles[0][GREEDY].layers)
    return layer, stack_features(bundles, lambda b: sequence_embedding(b[GREEDY], layer))


class _SequenceDensity(FittedEstimator):
    family = "internal"
    requires = (GREEDY,)
    training = "fit"

    def score(self, stats: StatBundle) -> float:
        state = self._fitted()
        h = sequence_embedding(stats[GREEDY], state.meta["layer"])
        if not np.all(np.isfinite(h)):
            return math.nan
        return finite_or_nan(self._density_score(state, h[None, :])[0])

    def _density_score(self, state: FittedState, h: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register
class MahalanobisDistance(_SequenceDensity):
    """Mahalanobis distance of the sequence embedding from the train embeddings.

        U = sqrt((h - mu)^T (Sigma + jitter I)^-1 (h - mu)),

    mu and Sigma the mean and unbiased covariance of the train embeddings;
    jitter starts at 1e-6 * mean(diag Sigma) and grows x10 until the Cholesky
    factorisation succeeds (LM-Polygraph adds jitter until Sigma is PSD).

    References
    ----------
    Lee et al. 2018, "A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks", NeurIPS; LM-Polygraph
    ``estimators/mahalanobis_distance.py``, driven by ``UC/trained_uncertainty.py``
    in s-nlp/AdaRAGUE (ESTIMATORS.md §5).
    """

    name = "mahalanobis_distance"
    study_name = "MahalanobisDistanceSeq_decoder"
    summary = "sqrt((h-mu)^T Sigma^-1 (h-mu)); h last-layer token-mean state, (mu, Sigma) on train"

    def fit(self, data: FitData) -> None:
        layer, x = train_embeddings(data.bundles)
        mean, whitening, jitter = fit_gaussian(x)
        self.set_state(FittedState(
            {"estimator": self.name, "layer": layer, "jitter": jitter, "n_train": len(x)},
            {"mean": mean, "whitening": whitening}))

    def _density_score(self, state, h):
        return mahalanobis(h, state.arrays["mean"], state.arrays["whitening"])


@register
class RelativeMahalanobisDistance(_SequenceDensity):
    """Mahalanobis distance from train minus that from generic background text.

        U = MD(h; train) - MD(h; background),

    each MD as in ``mahalanobis_distance``. The background embeddings are
    :meth:`FitData.background` (corpus passages, padding masked) at the same
    layer; the study used 1000 C4 documents.

    References
    ----------
    Ren et al. 2023, "Out-of-Distribution Detection and Selective Generation for
    Conditional Language Models", arXiv 2209.15558; LM-Polygraph
    ``estimators/relative_mahalanobis_distance.py``.
    """

    name = "relative_mahalanobis_distance"
    study_name = "RelativeMahalanobisDistanceSeq_decoder"
    summary = "MD(h; train) - MD(h; background corpus)"

    def fit(self, data: FitData) -> None:
        if data.background is None:
            raise ValueError(f"{self.name} needs background embeddings: FitData.background "
                             "is None")
        layer, x = train_embeddings(data.bundles)
        background = data.background()
        rows = np.flatnonzero(np.asarray(background.layers) == layer)
        if rows.size == 0:
            raise ValueError(f"background embeddings lack layer {layer} "
                             f"(have {np.asarray(background.layers).tolist()})")
        bg = np.asarray(background.hidden_mean[:, rows[0]], dtype=np.float64)
        mean, whitening, jitter = fit_gaussian(x)
        bg_mean, bg_whitening, bg_jitter = fit_gaussian(bg)
        self.set_state(FittedState(
            {"estimator": self.name, "layer": layer, "jitter": jitter, "n_train": len(x),
             "background_jitter": bg_jitter, "n_background": len(bg)},
            {"mean": mean, "whitening": whitening,
             "background_mean": bg_mean, "background_whitening": bg_whitening}))

    def _density_score(self, state, h):
        a = state.arrays
        return (mahalanobis(h, a["mean"], a["whitening"])
                - mahalanobis(h, a["background_mean"], a["background_whitening"]))


def rbf_kernel(x: np.ndarray, train: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma ||x_i - t_j||^2), squared distances expanded as sklearn does."""
    sq = (x * x).sum(1)[:, None] - 2.0 * x @ train.T + (train * train).sum(1)[None, :]
    return np.exp(-gamma * np.maximum(sq, 0.0))


def kpca_project(x: np.ndarray, arrays: dict[str, np.ndarray], gamma: float) -> np.ndarray:
    """sklearn ``KernelPCA(kernel="rbf").transform`` re-done from saved arrays.

    k(x, t_i) = exp(-gamma ||x - t_i||^2) against the train points t_i, centred
    as ``KernelCenterer`` does (minus the train column means and the row mean,
    plus the overall train mean), then projected on alpha_j / sqrt(lambda_j)
    (zero-eigenvalue components give 0, as in sklearn).
    """
    k = rbf_kernel(x, arrays["train"], gamma)
    k = k - arrays["kernel_col_mean"] - k.mean(axis=1, keepdims=True) + arrays["kernel_mean"]
    vecs, vals = arrays["eigenvectors"], arrays["eigenvalues"]
    scaled = np.zeros_like(vecs)
    nonzero = vals != 0
    scaled[:, nonzero] = vecs[:, nonzero] / np.sqrt(vals[nonzero])
    return k @ scaled


@register
class RDE(_SequenceDensity):
    """Robust density estimation: MCD Mahalanobis distance in kernel-PCA space.

        z = KernelPCA_rbf(h),   U = (z - m)^T S^-1 (z - m)   (squared),

    KernelPCA with ``n_components = min(100, n_train - 1)`` and sklearn's
    default gamma = 1/d fitted on the train embeddings; (m, S) the location
    and covariance of sklearn ``MinCovDet`` on the projected train. Both use
    ``random_state = seed``. The state keeps the train embeddings, gamma, the
    kernel centring terms, the eigenvectors/eigenvalues and the MCD location
    and precision; :func:`kpca_project` re-computes the projection in NumPy.

    References
    ----------
    Yoo et al. 2022, "Detection of Adversarial Examples in Text Classification:
    Benchmark and Baseline via Robust Density Estimation", arXiv 2203.01677;
    LM-Polygraph ``estimators/rde.py``.
    """

    name = "rde"
    study_name = "RDESeq_decoder"
    summary = "squared MCD Mahalanobis distance of KernelPCA(rbf, 100)(h), fitted on train"

    def fit(self, data: FitData) -> None:
        layer, x = train_embeddings(data.bundles)
        if len(x) < 2:
            raise ValueError(f"{self.name} needs at least 2 train questions, got {len(x)}")
        n_components = min(RDE_COMPONENTS, len(x) - 1)
        kpca = KernelPCA(n_components=n_components, kernel="rbf", random_state=data.seed)
        z = kpca.fit_transform(x)
        mcd = MinCovDet(random_state=data.seed).fit(z)
        # Centring terms of the train kernel (KernelCenterer's K_fit_rows_ and
        # K_fit_all_), recomputed publicly rather than read from a private attribute.
        col_mean = rbf_kernel(x, x, float(kpca.gamma_)).mean(axis=0)
        self.set_state(FittedState(
            {"estimator": self.name, "layer": layer, "gamma": float(kpca.gamma_),
             "n_components": n_components, "n_train": len(x)},
            {"train": x, "eigenvectors": kpca.eigenvectors_, "eigenvalues": kpca.eigenvalues_,
             "kernel_col_mean": col_mean, "kernel_mean": np.asarray(col_mean.mean()),
             "location": mcd.location_, "precision": mcd.precision_}))

    def _density_score(self, state, h):
        z = kpca_project(h, state.arrays, state.meta["gamma"]) - state.arrays["location"]
        return np.sum((z @ state.arrays["precision"]) * z, axis=1)
