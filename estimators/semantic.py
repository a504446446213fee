"""Semantic classes of the sampled answers (NLI clustering) and the estimators built on them."""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import logsumexp

from bench.models.outputs import Generation
from estimators.base import SAMPLES, Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import SEMANTIC_MATRIX, SemanticMatrix


def square(array: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    """``array`` as a float64 (N, N) matrix; ValueError if it is not square (or not N x N).

    A shape mismatch means the statistic and the sample batch are out of step,
    a pipeline bug that must not be scored silently.
    """
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 2 or out.shape[0] != out.shape[1] or (n is not None and out.shape[0] != n):
        expected = "square" if n is None else f"({n}, {n})"
        raise ValueError(f"semantic matrix {name!r} has shape {out.shape}, expected {expected}")
    return out


def entailment_labels(matrix: SemanticMatrix, n: int | None = None) -> np.ndarray:
    """(N, N) bool: the judge's argmax label for (premise i, hypothesis j) is entailment.

    With neutral = 1 - entail - contra, the label is entailment when entail beats
    contradiction strictly and is at least neutral (a tie with neutral counts as
    entailment).
    """
    entail = square(matrix.entail, "entail", n)
    contra = square(matrix.contra, "contra", entail.shape[0])
    neutral = 1.0 - entail - contra
    return (entail > contra) & (entail >= neutral)


def semantic_classes(matrix: SemanticMatrix, n: int | None = None) -> list[int]:
    """Class id of each sample under greedy bidirectional-entailment clustering.

    Sample i joins the first existing class whose representative r (its first
    member) entails i and is entailed by i (argmax labels, see
    :func:`entailment_labels`); otherwise it opens a new class. Ids are 0, 1, ...
    in order of first appearance.

    Parameters
    ----------
    matrix : SemanticMatrix
        Judgements among the N samples.
    n : int, optional
        Expected number of samples (checked against the matrix shape).

    Returns
    -------
    list of int
        One class id per sample; empty when N = 0.
    """
    entails = entailment_labels(matrix, n)
    representatives: list[int] = []
    classes: list[int] = []
    for i in range(entails.shape[0]):
        for class_id, r in enumerate(representatives):
            if entails[r, i] and entails[i, r]:
                classes.append(class_id)
                break
        else:
            classes.append(len(representatives))
            representatives.append(i)
    return classes


def log_likelihood(estimator: Estimator, sample: Generation) -> float:
    """log p(s | x): the sample's token log-probs summed over the steps the EOS policy keeps."""
    return float(np.sum(np.asarray(sample.token_logprobs[estimator.steps(sample)],
                                   dtype=np.float64)))


@register
class SemanticEntropy(Estimator):
    """Semantic entropy over NLI classes of the N samples, with summed class likelihoods.

    With C(s_i) the semantic class of sample i (:func:`semantic_classes`),

        log P(C) = logsumexp_{s in C} log p(s | x)   (not renormalised),
        U = -(1/N) sum_i log P(C(s_i)).

    Notes
    -----
    This is LM-Polygraph's default ("sum" of class likelihoods, repeated samples
    counted again), so P(C) is not a distribution over classes and U may be
    negative when one sequence is sampled repeatedly. log p(s | x) sums the
    untempered token log-probs under the global EOS policy (stop token included
    by default). NaN when there are no samples or a likelihood is not finite.

    References
    ----------
    Kuhn et al. 2023, "Semantic Uncertainty", arXiv 2302.09664; LM-Polygraph
    ``estimators/semantic_entropy.py``, ``stat_calculators/semantic_classes.py``.
    """

    name = "semantic_entropy"
    family = "consistency"
    requires = (SAMPLES, SEMANTIC_MATRIX)
    study_name = "SemanticEntropy"
    summary = "-(1/N) sum_i log sum_{s in C(s_i)} p(s|x) over NLI classes"

    def score(self, stats: StatBundle) -> float:
        samples = stats[SAMPLES].samples
        if not samples:
            return math.nan
        classes = np.asarray(semantic_classes(stats[SEMANTIC_MATRIX], len(samples)))
        loglik = np.array([log_likelihood(self, s) for s in samples])
        class_lp = np.array([logsumexp(loglik[classes == c]) for c in range(classes.max() + 1)])
        return finite_or_nan(-float(np.mean(class_lp[classes])))


@register
class NumSemSets(Estimator):
    """Number of semantic sets: connected components of the mutual-entailment graph.

    W_ij = 1[E_ij > C_ij] * 1[E_ji > C_ji];  U = number of connected components of W.

    Notes
    -----
    Unlike :func:`semantic_classes` this compares entailment with contradiction
    only (neutral ignored) and merges transitively, as LM-Polygraph does. N = 1
    gives 1; NaN for no samples.

    References
    ----------
    Lin et al. 2023, "Generating with Confidence", arXiv 2305.19187;
    LM-Polygraph ``estimators/num_sem_sets.py``.
    """

    name = "num_sem_sets"
    family = "consistency"
    requires = (SEMANTIC_MATRIX,)
    study_name = "NumSemSets"
    summary = "connected components of 1[E_ij > C_ij] 1[E_ji > C_ji]"

    def score(self, stats: StatBundle) -> float:
        matrix = stats[SEMANTIC_MATRIX]
        entail = square(matrix.entail, "entail")
        contra = square(matrix.contra, "contra", entail.shape[0])
        if entail.shape[0] == 0:
            return math.nan
        one_way = entail > contra
        count, _ = connected_components(csr_matrix(one_way & one_way.T), directed=False)
        return float(count)


@register
class LabelProb(Estimator):
    """One minus the share of samples in the largest semantic class.

    U = 1 - |largest class| / N, classes from :func:`semantic_classes`; 0 when
    all samples agree, 1 - 1/N when all differ. NaN for no samples.

    References
    ----------
    LM-Polygraph ``estimators/label_prob.py``; the NLI-cluster form of majority
    vote (Wang et al. 2022, "Self-Consistency", arXiv 2203.11171).
    """

    name = "label_prob"
    family = "consistency"
    requires = (SEMANTIC_MATRIX,)
    summary = "1 - |largest NLI class| / N"

    def score(self, stats: StatBundle) -> float:
        classes = semantic_classes(stats[SEMANTIC_MATRIX])
        if not classes:
            return math.nan
        return 1.0 - float(np.bincount(classes).max()) / len(classes)
