"""DRAGIN's real-time information-need score (RIND) of the greedy answer (ESTIMATORS.md §8)."""
from __future__ import annotations

import math
import string
from functools import lru_cache

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import ANSWER_ATTENTION


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    # Imported on first use: scikit-learn costs ~1.5 s, and importing the
    # estimator registry should not pay it.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def is_content_word(word: str) -> bool:
    """True unless ``word`` (lower-cased, edge punctuation stripped) is a stopword or has no
    letter or digit."""
    core = word.strip().lower().strip(string.punctuation)
    return core not in _stop_words() and any(ch.isalnum() for ch in core)


def word_spans(token_texts: tuple[str, ...], n_steps: int) -> list[tuple[int, int]]:
    """Half-open token ranges [start, end) of the words among the first ``n_steps`` tokens.

    A word starts at token 0 and at every token whose text begins with
    whitespace (the subword merge of DRAGIN's ``generate_attn``); other
    tokens, punctuation included, join the word before them.
    """
    starts = [t for t in range(n_steps) if t == 0 or token_texts[t][:1].isspace()]
    return list(zip(starts, starts[1:] + [n_steps]))


@register
class DraginRind(Estimator):
    """U = max_i S_i, S_i = |words| * (a_i / sum_k a_k) * H_i * s_i (DRAGIN code variant).

    For each word i of the greedy answer (subwords merged, see
    :func:`word_spans`):

    * H_i: mean entropy H_t of the word's tokens;
    * a_i: the largest attention any later position j >= start of word i
      pays to one of the word's tokens, ``max weights[j, tok]`` over the
      head-averaged last-layer map (:data:`ANSWER_ATTENTION`, a pass over the
      answer without the prompt, as DRAGIN's code does), restricted to the
      answer steps;
    * s_i: 1 for a content word (not in scikit-learn's English stopword list
      and containing a letter or digit), else 0. The paper filters
      stopwords; the code keeps spaCy NOUN/ADJ/VERB/PROPN/NUM, which would
      need a tagger.

    The stop token (EOS or newline) is not part of the answer's last word.
    When the EOS policy keeps it, it is one more word, counted as content, so
    that its entropy competes as it does in the other token aggregates; when
    the policy drops it, it is in no word and its attention row is unused.

    Attention is normalised over all words of the answer (DRAGIN's sentence
    is the whole short answer here) and rescaled by the word count, so
    S_i = H_i when attention is uniform. DRAGIN retrieves when any S_i
    exceeds a threshold; the maximum is that rule as a score. U = 0 when no
    word is a content word, NaN when there is no step.

    References
    ----------
    Su et al. 2024, "DRAGIN: Dynamic Retrieval Augmented Generation based on
    the Real-time Information Needs of Large Language Models", arXiv 2403.10081;
    ``dragin/src/algorithm/generator.py`` (``generate_attn``) and
    ``dragin/src/algorithm/rag_dragin.py`` in s-nlp/AdaRAGUE.
    """

    name = "dragin_rind"
    family = "logit+attention"
    requires = (GREEDY, ANSWER_ATTENTION)
    summary = "max over words of |words| * normalised max attention * mean entropy * content"

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        weights = np.asarray(stats[ANSWER_ATTENTION].weights, dtype=np.float64)
        n = greedy.n_tokens
        if weights.shape != (n, n):
            raise ValueError(f"question {stats.question_id!r}: attention map "
                             f"{weights.shape} does not match the {n} greedy tokens")
        m = self.steps(greedy).stop
        if m == 0:
            return math.nan
        n_text = greedy.n_text_tokens
        spans = word_spans(greedy.token_texts, min(m, n_text))
        content = [is_content_word("".join(greedy.token_texts[a:b])) for a, b in spans]
        if m > n_text:  # the policy keeps the stop step: a word of its own that counts
            spans.append((n_text, m))
            content.append(True)
        # Rows j >= start: later positions looking back at the word (causal).
        attention = np.array([weights[a:m, a:b].max() for a, b in spans])
        total = attention.sum()
        if not total > 0:
            return math.nan
        entropies = greedy.entropies.astype(np.float64)
        scores = [len(spans) * (att / total) * entropies[a:b].mean()
                  for att, (a, b), keep in zip(attention, spans, content) if keep]
        return finite_or_nan(max(scores, default=0.0))
