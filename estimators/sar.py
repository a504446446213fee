"""Shifting Attention to Relevance (SAR): sentence-level and token+sentence-level."""
from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from estimators.base import SAMPLES, Estimator, StatBundle, finite_or_nan, register
from estimators.semantic import log_likelihood, square
from estimators.stat_types import SAMPLE_RELEVANCE, SEMANTIC_MATRIX

#: Temperature t dividing the similarity-weighted probabilities of the other samples.
TEMPERATURE = 1e-3


def sentence_relevance_entropy(log_p: np.ndarray, similarity: np.ndarray) -> float:
    """(1/N) sum_j -log( p_j + (1/t) sum_{k != j} g_jk p_k ), from log p_j.

    Computed as a weighted logsumexp (weight 1 on k = j, g_jk / t on k != j) so
    that long samples with p ~ 1e-300 do not underflow to log 0.

    Parameters
    ----------
    log_p : (N,) float
        log p(s_j) (sequence log-likelihood or its TokenSAR surrogate).
    similarity : (N, N) float
        g(s_j, s_k); the diagonal is ignored.

    Returns
    -------
    float
        NaN for N = 0 or a non-finite result.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    if log_p.size == 0:
        return math.nan
    weights = square(similarity, "similarity", log_p.size) / TEMPERATURE
    np.fill_diagonal(weights, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        relevance = logsumexp(np.broadcast_to(log_p, weights.shape), b=weights, axis=1)
    return finite_or_nan(-float(np.mean(relevance)))


def token_sar(logprobs: np.ndarray, relevance: np.ndarray) -> float:
    """TokenSAR(s) = sum_t -log p(s_t) R_t / sum_tau R_tau (uniform weights if sum R = 0).

    Raises
    ------
    ValueError
        If the two arrays differ in length (relevance out of step with tokens).
    """
    logprobs = np.asarray(logprobs, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if logprobs.shape != relevance.shape:
        raise ValueError(f"{relevance.shape[0]} relevance weights for "
                         f"{logprobs.shape[0]} tokens")
    if logprobs.size == 0:
        return math.nan
    total = relevance.sum()
    # All-irrelevant (or all-zero) weights carry no preference: fall back to a plain mean.
    weights = relevance / total if total > 0 else np.full(logprobs.size, 1.0 / logprobs.size)
    return float(-np.sum(logprobs * weights))


@register
class SentenceSAR(Estimator):
    """Sentence SAR: sample likelihoods shifted towards semantically supported samples.

    U = (1/N) sum_j -log( p(s_j) + (1/t) sum_{k != j} g(s_j, s_k) p(s_k) ),
    p(s) = exp(log p(s | x)), t = 0.001, g = ``SemanticMatrix.similarity``.

    Notes
    -----
    log p(s | x) sums the untempered token log-probs under the global EOS policy
    (stop token included by default). With N = 1 this is -log p(s | x). Computed
    in log space. NaN for no samples or a non-finite result.

    References
    ----------
    Duan et al. 2023, "Shifting Attention to Relevance", arXiv 2307.01379;
    LM-Polygraph ``estimators/sentence_sar.py``.
    """

    name = "sentence_sar"
    family = "consistency"
    requires = (SAMPLES, SEMANTIC_MATRIX)
    study_name = "SentenceSAR"
    summary = "(1/N) sum_j -log(p_j + (1/t) sum_{k!=j} g_jk p_k), t = 0.001"

    def score(self, stats: StatBundle) -> float:
        samples = stats[SAMPLES].samples
        log_p = np.array([log_likelihood(self, s) for s in samples])
        return sentence_relevance_entropy(log_p, stats[SEMANTIC_MATRIX].similarity)


@register
class SAR(Estimator):
    """SAR: sentence SAR over relevance-weighted (TokenSAR) sample probabilities.

    For each sample, with R_t = 1 - g(x + s, x + s without token t),

        TokenSAR(s) = sum_t -log p(s_t) R_t / sum_tau R_tau,   p^(s) = exp(-TokenSAR(s)),
        U = (1/N) sum_j -log( p^(s_j) + (1/t) sum_{k != j} g(s_j, s_k) p^(s_k) ),  t = 0.001.

    Notes
    -----
    Token log-probs and relevances are restricted to the same steps under the
    global EOS policy. When sum R = 0 the weights are uniform (LM-Polygraph
    would divide by zero). NaN for no samples, a sample with no counted token,
    or a non-finite result.

    References
    ----------
    Duan et al. 2023, "Shifting Attention to Relevance", arXiv 2307.01379;
    LM-Polygraph ``estimators/sar.py``.
    """

    name = "sar"
    family = "consistency"
    requires = (SAMPLES, SEMANTIC_MATRIX, SAMPLE_RELEVANCE)
    study_name = "SAR"
    summary = "sentence SAR over p^(s) = exp(-TokenSAR(s)), t = 0.001"

    def score(self, stats: StatBundle) -> float:
        samples = stats[SAMPLES].samples
        relevance = stats[SAMPLE_RELEVANCE].per_sequence
        if len(relevance) != len(samples):
            raise ValueError(f"relevance for {len(relevance)} sequences, "
                             f"{len(samples)} samples")
        log_p = []
        for sample, weights in zip(samples, relevance):
            # Check before slicing: the EOS slice would hide a relevance array that is too long.
            if len(weights) != sample.n_tokens:
                raise ValueError(f"{len(weights)} relevance weights for "
                                 f"{sample.n_tokens} tokens")
            steps = self.steps(sample)
            log_p.append(-token_sar(sample.token_logprobs[steps], np.asarray(weights)[steps]))
        return sentence_relevance_entropy(np.array(log_p), stats[SEMANTIC_MATRIX].similarity)
