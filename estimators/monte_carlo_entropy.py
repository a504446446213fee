"""Monte-Carlo sequence entropy of the sampled answers (plain and length-normalised)."""
from __future__ import annotations

import math

import numpy as np

from bench.models.outputs import Generation
from estimators.base import SAMPLES, Estimator, StatBundle, finite_or_nan, register


class _MonteCarloEntropy(Estimator):
    """Shared scoring of the two Monte-Carlo entropies (not registered)."""

    requires = (SAMPLES,)
    family = "consistency"
    #: Divide each sample's log-likelihood by its token count.
    normalized: bool = False

    def _sample_term(self, sample: Generation) -> float:
        """-log p(s|x) of one sample, or its per-token mean when ``normalized``."""
        logprobs = np.asarray(sample.token_logprobs[self.steps(sample)], dtype=np.float64)
        log_likelihood = float(np.sum(logprobs))
        if not self.normalized:
            return -log_likelihood
        if logprobs.size == 0:
            return math.nan
        return -log_likelihood / logprobs.size

    def score(self, stats: StatBundle) -> float:
        samples = stats[SAMPLES].samples
        if not samples:
            return math.nan
        return finite_or_nan(math.fsum(self._sample_term(s) for s in samples) / len(samples))


@register
class MonteCarloSequenceEntropy(_MonteCarloEntropy):
    """Monte-Carlo estimate of the sequence entropy from N sampled answers.

    U = -(1/N) sum_k log p(s_k | x), where log p(s_k | x) = sum_t log p_t(s_k,t)
    is the sum of the sample's token log-probabilities under the model's
    untempered, untruncated distribution (``Generation.token_logprobs``, not
    ``sampling_logprobs``).

    Notes
    -----
    The stop token (EOS or newline) is included by default, as in the
    catalogue; the global ``EstimatorOptions.include_stop_token`` policy is
    honoured like every other token aggregate (``Estimator.steps``). Sums are
    taken in float64. NaN when there are no samples or a log-probability is
    infinite. Higher U = more uncertain (raw direction already ↑U).

    References
    ----------
    Kuhn et al. 2023, "Semantic Uncertainty", arXiv 2302.09664; Malinin & Gales
    2021, "Uncertainty Estimation in Autoregressive Structured Prediction",
    arXiv 2002.07650; LM-Polygraph ``estimators/monte_carlo_sequence_entropy.py``.
    """

    name = "mc_sequence_entropy"
    summary = "-(1/N) sum_k log p(s_k|x) over the N samples"


@register
class MonteCarloNormalizedSequenceEntropy(_MonteCarloEntropy):
    """Length-normalised Monte-Carlo sequence entropy from N sampled answers.

    U = -(1/N) sum_k log p(s_k | x) / |s_k|, with |s_k| the number of tokens
    whose log-probabilities are summed (all emitted tokens, stop token
    included, under the default EOS policy).

    Notes
    -----
    Same inputs, EOS policy and NaN policy as ``mc_sequence_entropy``; a sample
    with no counted token makes the score NaN (0/0).

    References
    ----------
    Malinin & Gales 2021, arXiv 2002.07650; Kuhn et al. 2023, arXiv 2302.09664;
    LM-Polygraph ``estimators/monte_carlo_normalized_sequence_entropy.py``.
    """

    name = "mc_normalized_sequence_entropy"
    summary = "-(1/N) sum_k log p(s_k|x)/|s_k| over the N samples"
    normalized = True
