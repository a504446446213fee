"""Lexical similarity of sampled answers (ROUGE-L F1), negated."""
from __future__ import annotations

import itertools
import math

import regex

from estimators.base import SAMPLES, Estimator, StatBundle, register

#: Letters, digits and combining marks: a mark (an accent in NFD text, a vowel
#: sign or virama in Devanagari, Thai, ...) belongs to the word it sits in.
_WORD = regex.compile(r"[\p{L}\p{N}\p{M}]+")


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased letter/digit/mark runs (rouge-score's default tokenizer, unicode-aware)."""
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (O(|a||b|) dynamic programme)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0]
        for j, token_b in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token_a == token_b
                           else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1 of two strings; 0 when either has no tokens."""
    tokens_a, tokens_b = rouge_tokens(a), rouge_tokens(b)
    lcs = lcs_length(tokens_a, tokens_b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(tokens_b), lcs / len(tokens_a)
    return 2 * precision * recall / (precision + recall)


@register
class LexicalSimilarity(Estimator):
    """U = -mean_{i<j} ROUGE-L-F1(s_i, s_j) over the N samples (Fomicheva et al. 2020)."""

    name = "lexical_similarity"
    family = "consistency"
    requires = (SAMPLES,)
    study_name = "LexicalSimilarity_rougeL"
    summary = "-mean pairwise ROUGE-L F1 of the samples"

    def score(self, stats: StatBundle) -> float:
        texts = stats[SAMPLES].texts
        pairs = list(itertools.combinations(texts, 2))
        if not pairs:
            return math.nan
        return -sum(rouge_l_f1(a, b) for a, b in pairs) / len(pairs)
