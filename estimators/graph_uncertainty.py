"""Spectral estimators on the NLI similarity graph of the samples (Lin et al. 2023; KLE)."""
from __future__ import annotations

import math

import numpy as np

from estimators.base import Estimator, StatBundle, finite_or_nan, register
from estimators.semantic import square
from estimators.stat_types import SEMANTIC_MATRIX, SemanticMatrix

#: Eccentricity keeps the Laplacian eigenvectors whose eigenvalue is below this.
ECCENTRICITY_THRESHOLD = 0.9
#: Heat-kernel time of kernel language entropy (LM-Polygraph's default).
KLE_TIME = 0.3


def entail_affinity(matrix: SemanticMatrix) -> np.ndarray:
    """W = (E + E^T)/2: symmetric entailment affinity, float64 (N, N)."""
    entail = square(matrix.entail, "entail")
    return (entail + entail.T) / 2


def normalized_laplacian(w: np.ndarray) -> np.ndarray | None:
    """L = I - D^(-1/2) W D^(-1/2) with D = diag(W 1); None if a degree is not positive/finite."""
    degree = w.sum(axis=1)
    if not np.all(np.isfinite(w)) or np.any(degree <= 0):
        return None
    inv_sqrt = 1.0 / np.sqrt(degree)
    return np.eye(w.shape[0]) - inv_sqrt[:, None] * w * inv_sqrt[None, :]


class _LaplacianEstimator(Estimator):
    """Shared input handling: NaN for no samples or an undefined Laplacian (not registered)."""

    family = "consistency"
    requires = (SEMANTIC_MATRIX,)

    def score(self, stats: StatBundle) -> float:
        w = entail_affinity(stats[SEMANTIC_MATRIX])
        laplacian = normalized_laplacian(w) if w.shape[0] else None
        if laplacian is None:
            return math.nan
        return finite_or_nan(self.from_laplacian(laplacian))

    def from_laplacian(self, laplacian: np.ndarray) -> float:
        raise NotImplementedError


@register
class EigValLaplacian(_LaplacianEstimator):
    """Sum of eigenvalues of the graph Laplacian: a soft count of semantic clusters.

    W = (E + E^T)/2,  D = diag(W 1),  L = I - D^(-1/2) W D^(-1/2),
    U = sum_k max(0, 1 - lambda_k(L)).

    Notes
    -----
    1 when all samples entail each other (L has one zero eigenvalue, the others
    1), N when none do (W = I, L = 0). L is symmetric, so ``eigvalsh`` is used
    (LM-Polygraph calls ``eig`` on the same matrix). NaN for no samples or a
    zero degree.

    References
    ----------
    Lin et al. 2023, "Generating with Confidence", arXiv 2305.19187;
    LM-Polygraph ``estimators/eig_val_laplacian.py``.
    """

    name = "eig_val_laplacian"
    study_name = "EigValLaplacian_NLI_score_entail"
    summary = "sum_k max(0, 1 - lambda_k) of the normalised Laplacian of (E + E^T)/2"

    def from_laplacian(self, laplacian: np.ndarray) -> float:
        return float(np.sum(np.clip(1.0 - np.linalg.eigvalsh(laplacian), 0.0, None)))


@register
class DegMat(Estimator):
    """Degree-matrix uncertainty: one minus the mean pairwise entailment affinity.

    U = trace(N I - D)/N^2 = 1 - (1/N^2) sum_{i,j} W_ij, W = (E + E^T)/2.

    Notes
    -----
    The diagonal (entail 1) is included, as in LM-Polygraph, so U <= 1 - 1/N.
    NaN for no samples or a non-finite matrix.

    References
    ----------
    Lin et al. 2023, arXiv 2305.19187; LM-Polygraph ``estimators/deg_mat.py``.
    """

    name = "deg_mat"
    family = "consistency"
    requires = (SEMANTIC_MATRIX,)
    study_name = "DegMat_NLI_score_entail"
    summary = "1 - mean_{i,j} (E_ij + E_ji)/2"

    def score(self, stats: StatBundle) -> float:
        w = entail_affinity(stats[SEMANTIC_MATRIX])
        if w.shape[0] == 0:
            return math.nan
        return finite_or_nan(1.0 - w.sum() / w.shape[0] ** 2)


@register
class Eccentricity(_LaplacianEstimator):
    """Eccentricity: spread of the samples' spectral embeddings.

    With v_1 ... v_K the unit eigenvectors of L (as in ``eig_val_laplacian``)
    whose eigenvalues are below 0.9, u_i = (v_1[i], ..., v_K[i]) embeds sample i
    and

        U = sqrt( sum_i || u_i - u_bar ||^2 ),   u_bar = (1/N) sum_i u_i.

    Notes
    -----
    LM-Polygraph writes this as the 2-norm of the per-eigenvector norms
    ||v_k - mean(v_k)||, the same number. It does not depend on eigenvector signs
    or on the basis chosen inside a repeated eigenvalue (it is the trace of the
    centred projector onto the kept eigenspace). 0 when all samples entail each
    other (only the eigenvalue-0 eigenvector D^(1/2) 1 is kept, constant when
    the degrees are equal), sqrt(N - 1) when none do. NaN for no samples or a
    zero degree.

    References
    ----------
    Lin et al. 2023, arXiv 2305.19187; LM-Polygraph ``estimators/eccentricity.py``
    (``thres=0.9``).
    """

    name = "eccentricity"
    study_name = "Eccentricity_NLI_score_entail"
    summary = "norm of the centred Laplacian eigenvector embeddings (eigenvalues < 0.9)"

    def from_laplacian(self, laplacian: np.ndarray) -> float:
        values, vectors = np.linalg.eigh(laplacian)
        kept = vectors[:, values < ECCENTRICITY_THRESHOLD]  # columns v_k, rows u_i
        return float(np.linalg.norm(kept - kept.mean(axis=0, keepdims=True)))


@register
class KernelLanguageEntropy(Estimator):
    """Kernel language entropy: von Neumann entropy of a heat kernel on the NLI graph.

    W = (A + A^T)/2 with A = E + 0.5 (1 - E - C) (entailment 1, neutral 0.5,
    contradiction 0), L = diag(W 1) - W, K = exp(-t L) with t = 0.3,
    rho = K_ij / sqrt(K_ii K_jj) / N (unit trace), and

        U = -sum_k mu_k log mu_k over the eigenvalues mu_k of rho.

    Notes
    -----
    0 for a single sample; log N when no pair shares any weight (K = I). Follows
    the paper's heat kernel exp(-t L) with L = D - W; LM-Polygraph's
    ``laplacian_matrix`` returns W - D (the opposite sign) and does not
    symmetrise W, and by default divides U by log N (a constant for a fixed N,
    so rankings are unchanged; not applied here). NaN for no samples.

    References
    ----------
    Nikitin et al. 2024, "Kernel Language Entropy", arXiv 2405.20003;
    LM-Polygraph ``estimators/kernel_language_entropy.py``.
    """

    name = "kernel_language_entropy"
    family = "consistency"
    requires = (SEMANTIC_MATRIX,)
    summary = "von Neumann entropy of the unit-trace heat kernel exp(-0.3 L) of the NLI graph"

    def score(self, stats: StatBundle) -> float:
        matrix = stats[SEMANTIC_MATRIX]
        entail = square(matrix.entail, "entail")
        contra = square(matrix.contra, "contra", entail.shape[0])
        n = entail.shape[0]
        if n == 0 or not (np.all(np.isfinite(entail)) and np.all(np.isfinite(contra))):
            return math.nan
        a = entail + 0.5 * (1.0 - entail - contra)
        w = (a + a.T) / 2
        values, vectors = np.linalg.eigh(np.diag(w.sum(axis=1)) - w)
        kernel = (vectors * np.exp(-KLE_TIME * values)) @ vectors.T
        scale = np.sqrt(np.diag(kernel))
        rho = kernel / np.outer(scale, scale) / n
        mu = np.linalg.eigvalsh(rho)
        mu = mu[mu > 1e-12]  # 0 log 0 = 0; round-off can leave tiny negatives
        return finite_or_nan(0.0 - float(np.sum(mu * np.log(mu))))
