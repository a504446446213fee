"""Typed statistics beyond the greedy pass and the sample batch.

Each value type is a frozen dataclass of NumPy arrays and JSON scalars with a
pickle-free round trip (:func:`to_record` / :func:`from_record`), so the
calculators that produce them can cache one record per question. The
:class:`~estimators.base.Statistic` constants below are the keys estimators
declare in ``requires``; ``bench.calculators`` produces each of them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from bench.models.outputs import Generation
from estimators.base import SAMPLES, Statistic

V = TypeVar("V")


@dataclass(frozen=True)
class ForcedPass:
    """Given tokens teacher-forced after some context, one entry per token.

    Attributes
    ----------
    token_logprobs : (n,) float32
        log p(y_t | context, y_<t).
    entropies : (n,) float32
        Entropy of the full next-token distribution at each of those steps.
    """

    token_logprobs: np.ndarray
    entropies: np.ndarray


@dataclass(frozen=True)
class Readout:
    """Log-probabilities of labelled answers read from one next-token distribution.

    ``logprobs[label]`` is the log of the total probability of the first
    tokens that spell that label (e.g. ``"true"``: "True", " True", "A", ...).
    """

    logprobs: dict[str, float]


@dataclass(frozen=True)
class AttentionMap:
    """Head-averaged last-layer attention over the greedy answer's own tokens.

    ``weights[j, i]`` is how much position j attends to position i (rows sum
    to 1, causal). The pass reads the answer tokens without the prompt, as
    DRAGIN's code does; row/column t is greedy token t.
    """

    weights: np.ndarray


@dataclass(frozen=True)
class SemanticMatrix:
    """Pairwise judgements among the N samples (all ordered pairs).

    Attributes
    ----------
    entail, contra : (N, N) float32
        P(sample i entails sample j) and P(i contradicts j) (premise i,
        hypothesis j); the diagonal is entail 1, contra 0.
    similarity : (N, N) float32
        Symmetric similarity g in [0, 1] (SAR's cross-encoder role).
    judge : str
        Fingerprint of the judge that produced the matrices.
    """

    entail: np.ndarray
    contra: np.ndarray
    similarity: np.ndarray
    judge: str


@dataclass(frozen=True)
class AlternativeJudgement:
    """CCP's word-level NLI between each greedy token and its top-K alternatives.

    ``entail[t, k]`` / ``contra[t, k]``: P(greedy token t entails /
    contradicts alternative k) where alternative 0 is the greedy token itself.
    Shapes (n, K) aligned with ``Generation.topk_ids``.
    """

    entail: np.ndarray
    contra: np.ndarray
    judge: str


@dataclass(frozen=True)
class TokenRelevance:
    """SAR relevance R_t = 1 - g(x + s, x + s without token t), per sequence.

    ``per_sequence[i]`` has one entry per token of sequence i (the greedy
    answer for :data:`GREEDY_RELEVANCE`, sample i for :data:`SAMPLE_RELEVANCE`),
    aligned with that Generation's ``token_ids``.
    """

    per_sequence: tuple[np.ndarray, ...]
    judge: str


@dataclass(frozen=True)
class ReflectiveScores:
    """The greedy answer teacher-forced after each of N sampled reasoning chains.

    ``logprobs[i, j]`` = log p(y_j | prompt, chain_i, y_<j); rows are chains.
    """

    logprobs: np.ndarray
    chains: tuple[str, ...]


# -- statistics ---------------------------------------------------------------
UNCONDITIONAL: Statistic[ForcedPass] = Statistic(
    "unconditional", ForcedPass,
    "greedy answer tokens teacher-forced after an empty question (PMI's p(y_t | y_<t))",
    forward_passes=1)
P_TRUE: Statistic[Readout] = Statistic(
    "p_true_readout", Readout,
    "P(True) prompt over (question, greedy answer): log p of 'True' / 'False' first tokens",
    forward_passes=1)
VERBALIZED: Statistic[Generation] = Statistic(
    "verbalized", Generation,
    "greedy answer to the verbalized-confidence prompt ('Guess: ... Probability: ...')", 1)
REVISION: Statistic[Generation] = Statistic(
    "revision", Generation,
    "greedy answer after a second turn asking the model to reconsider (RISE-style)", 1)
ANSWER_ATTENTION: Statistic[AttentionMap] = Statistic(
    "answer_attention", AttentionMap,
    "last-layer attention over the greedy answer tokens (eager pass without the prompt)",
    forward_passes=1)
SEMANTIC_MATRIX: Statistic[SemanticMatrix] = Statistic(
    "semantic_matrix", SemanticMatrix,
    "entailment / contradiction / similarity among the samples (pluggable judge)",
    aux="N^2 pairs", derived_from=(SAMPLES,))
GREEDY_ALTERNATIVES: Statistic[AlternativeJudgement] = Statistic(
    "greedy_alternatives", AlternativeJudgement,
    "judge labels between each greedy token and its top-K alternatives (CCP)",
    aux="n*K pairs")
GREEDY_RELEVANCE: Statistic[TokenRelevance] = Statistic(
    "greedy_relevance", TokenRelevance,
    "SAR token relevance of the greedy answer's tokens", aux="n pairs")
SAMPLE_RELEVANCE: Statistic[TokenRelevance] = Statistic(
    "sample_relevance", TokenRelevance,
    "SAR token relevance of every sample's tokens", aux="sum |s| pairs",
    derived_from=(SAMPLES,))
ICM_READOUT: Statistic[Readout] = Statistic(
    "icm_readout", Readout,
    "P(True) of the greedy answer after self-labelled demonstrations chosen by ICM on train",
    forward_passes=1)
REFLECTIVE: Statistic[ReflectiveScores] = Statistic(
    "reflective_scores", ReflectiveScores,
    "greedy answer teacher-forced after N sampled reasoning chains (R3 adaptation)",
    "N", forward_passes="N")


# -- pickle-free records ---------------------------------------------------------
def to_record(value: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a stat dataclass into JSON scalars and named arrays."""
    meta: dict = {}
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if isinstance(item, np.ndarray):
            arrays[f.name] = item
        elif isinstance(item, tuple) and item and isinstance(item[0], np.ndarray):
            meta[f.name + "#"] = len(item)
            arrays.update({f"{f.name}.{i}": a for i, a in enumerate(item)})
        else:
            meta[f.name] = list(item) if isinstance(item, tuple) else item
    return meta, arrays


def from_record(cls: type[V], meta: dict, arrays: dict[str, np.ndarray]) -> V:
    """Inverse of :func:`to_record`."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in arrays:
            kwargs[f.name] = arrays[f.name]
        elif f.name + "#" in meta:
            kwargs[f.name] = tuple(arrays[f"{f.name}.{i}"] for i in range(meta[f.name + "#"]))
        else:
            item = meta[f.name]
            kwargs[f.name] = tuple(item) if isinstance(item, list) else item
    return cls(**kwargs)
