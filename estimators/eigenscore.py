"""EigenScore (INSIDE): log-determinant of the sample embeddings' Gram matrix."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from bench.models.outputs import SampleSet
from estimators.base import SAMPLES, Estimator, StatBundle, finite_or_nan, register

#: Regulariser added to the K x K matrix before the log-determinant.
ALPHA = 1e-3


def middle_layer_embeddings(sample_set: SampleSet) -> np.ndarray | None:
    """(K, d) float64 last-token hidden states of the middle recorded layer.

    The middle layer is the smallest recorded hidden-state index > 0 (index 0
    is the embedding output). The backend records the middle layer
    ``num_layers // 2`` and the last layer by default, so this is the middle
    one; when only the last layer is recorded it is the last one.

    Returns
    -------
    ndarray or None
        None when there are no samples or no recorded layer above 0.

    Raises
    ------
    ValueError
        If the samples recorded different layers.
    """
    samples = sample_set.samples
    if not samples:
        return None
    layers = np.asarray(samples[0].layers)
    for sample in samples[1:]:
        if not np.array_equal(np.asarray(sample.layers), layers):
            raise ValueError("samples recorded different hidden-state layers: "
                             f"{layers.tolist()} vs {np.asarray(sample.layers).tolist()}")
    candidates = [int(layer) for layer in layers if layer > 0]
    if not candidates:
        return None
    row = int(np.flatnonzero(layers == min(candidates))[0])
    return np.stack([np.asarray(s.hidden_last[row], dtype=np.float64) for s in samples])


def gram_log_det(z: np.ndarray | None) -> float:
    """(1/K) log det(Z J_d Z^T + alpha I_K) of (K, d) embeddings Z.

    Returns
    -------
    float
        NaN when ``z`` is None, has a non-finite entry, or the determinant sign
        is not positive (only possible through round-off).
    """
    if z is None or not np.all(np.isfinite(z)):
        return math.nan
    centred = z - z.mean(axis=1, keepdims=True)  # Z J_d (J_d is idempotent)
    sigma = centred @ centred.T
    sign, logdet = np.linalg.slogdet(sigma + ALPHA * np.eye(z.shape[0]))
    if sign <= 0:
        return math.nan
    return finite_or_nan(logdet / z.shape[0])


@register
class EigenScore(Estimator):
    """EigenScore of INSIDE: spread of the K samples' internal embeddings.

    z_k is the hidden state of the middle recorded layer at the last step of
    sample k (``Generation.hidden_last``; the step that emitted the stop
    token). With Z the (K, d) matrix of the z_k,

        Sigma = Z J_d Z^T,   J_d = I_d - (1/d) 1 1^T,
        U = (1/K) log det(Sigma + alpha I_K),   alpha = 1e-3,

    i.e. each z_k is centred over its d features before the Gram matrix is
    formed, and U is the mean log-eigenvalue of the regularised matrix.
    Consistent samples have near-identical embeddings, so Sigma is close to
    rank one and U is close to ((K-1)/K) log alpha; diverse samples give a
    larger U.

    Notes
    -----
    * Layer: the smallest recorded hidden-state index > 0, which is the middle
      layer ``num_layers // 2`` under the backend's default recording of
      (middle, last); see :func:`middle_layer_embeddings`.
    * Computed in float64 with ``numpy.linalg.slogdet``; NaN when there are no
      samples, no layer above 0, a non-finite state, or a non-positive
      determinant sign (only possible through round-off).
    * The paper's test-time feature clipping is not applied, as in
      LM-Polygraph.

    References
    ----------
    Chen et al. 2024, "INSIDE: LLMs' Internal States Retain the Power of
    Hallucination Detection", ICLR 2024, arXiv 2402.03744; LM-Polygraph
    ``estimators/eigenscore.py`` (upstream).
    """

    name = "eigenscore"
    family = "internal"
    requires = (SAMPLES,)
    summary = "(1/K) log det(Z J_d Z^T + 1e-3 I), Z = middle-layer last-token states"

    def score(self, stats: StatBundle) -> float:
        return gram_log_det(middle_layer_embeddings(stats[SAMPLES]))


@register
class SeakrEigenScore(Estimator):
    """SeaKR's self-aware uncertainty: EigenScore of the non-empty samples.

    Keep the k samples whose text is not blank (``text.strip() != ""``); z_i is
    the hidden state of the middle recorded layer at the step that emitted the
    stop token (``Generation.hidden_last``), and

        U = (1/k) log det(Z J_d Z^T + alpha I_k),   alpha = 1e-3,

    exactly as ``eigenscore`` on the kept samples. SeaKR retrieves when U > -6.

    Notes
    -----
    * Deviation: SeaKR draws its own 20 samples (T 1.0, top-k 50, top-p 0.9, up
      to 100 tokens) and reads decoder layer 15 of 32 (0-based; in its vLLM
      patch apparently before the residual add). arbench reuses the shared
      sample batch (N samples, no top-p) and the recorded middle layer
      ``num_layers // 2``, i.e. hidden-state index 16 = the output of decoder
      layer 15 for a 32-layer model.
    * NaN with fewer than 2 non-empty samples (a log-determinant of one sample
      measures no spread), no recorded layer above 0, or a non-finite state.

    References
    ----------
    Yao et al. 2024, "SeaKR: Self-aware Knowledge Retrieval for Adaptive
    Retrieval Augmented Generation", arXiv 2406.19215; s-nlp/AdaRAGUE
    ``SeaKR/vllm_uncertainty/vllm/engine/llm_engine.py`` (``_compute_eigen_score``).
    """

    name = "seakr_eigen_score"
    family = "internal"
    requires = (SAMPLES,)
    summary = "EigenScore of the non-empty samples (SeaKR trigger, retrieve if U > -6)"

    def score(self, stats: StatBundle) -> float:
        sample_set = stats[SAMPLES]
        kept = tuple(s for s in sample_set.samples if s.text.strip())
        if len(kept) < 2:
            return math.nan
        return gram_log_det(middle_layer_embeddings(replace(sample_set, samples=kept)))
