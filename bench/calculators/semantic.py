"""Statistics computed by the pluggable judge (:mod:`bench.judges`).

Every calculator makes one ``judge.compare`` call per batch over the distinct
pairs of all its questions, and charges each question ``aux_calls`` = the
distinct pairs it needed itself, so a cached record's cost does not depend on
which questions shared its batch. Pairs whose answer is known without a judge
(a text against itself, an alternative that is the greedy token) are not
judged and not charged.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from bench.judges import CONTRA, ENTAIL, SIMILARITY, Judge
from bench.ledger import Cost
from bench.models.outputs import Generation
from bench.statistics import CachedCalculator, StatContext, calculator
from estimators.base import GREEDY, SAMPLES
from estimators.stat_types import (
    GREEDY_ALTERNATIVES,
    GREEDY_RELEVANCE,
    SAMPLE_RELEVANCE,
    SEMANTIC_MATRIX,
    AlternativeJudgement,
    SemanticMatrix,
    TokenRelevance,
)

Pair = tuple[str, str]


def get_judge(ctx: StatContext, stat_name: str) -> Judge:
    """The run's judge; RuntimeError when the run was configured without one."""
    if ctx.judge is None:
        raise RuntimeError(f"statistic {stat_name!r} needs a similarity/entailment judge, "
                           "but this run has none (StatContext.judge is None; choose one "
                           "with bench.judges.build_judge, e.g. 'minilm')")
    return ctx.judge()


def judge_pairs(judge: Judge, pairs: Sequence[Pair]) -> dict[Pair, np.ndarray]:
    """(entail, contra, similarity) of each distinct pair, from one ``compare`` call."""
    unique = list(dict.fromkeys(pairs))
    if not unique:
        return {}
    scores = np.asarray(judge.compare(unique), dtype=np.float64)
    if scores.shape != (len(unique), 3):
        raise ValueError(f"judge {judge.fingerprint()} returned shape {scores.shape} "
                         f"for {len(unique)} pairs, expected ({len(unique)}, 3)")
    return dict(zip(unique, scores))


class _JudgeCalculator(CachedCalculator):
    """Shared parameters: the judge's fingerprint and the calculator's own rules."""

    rules: ClassVar[dict] = {}

    def params(self, ctx):
        return {"judge": get_judge(ctx, self.produces.name).fingerprint(), **self.rules}


# -- sample matrices ------------------------------------------------------------
@calculator
class SemanticMatrixCalculator(_JudgeCalculator):
    """N x N entail / contra / similarity among the samples' texts.

    Only distinct texts are judged, every ordered pair of them once; samples
    with the same text share one row and column of judgements, and a text
    against itself is entail 1, contra 0, similarity 1 (the diagonal too).
    """

    produces = SEMANTIC_MATRIX
    depends = (SAMPLES,)
    rules = {"pairs": "ordered pairs of distinct texts; equal texts = (1, 0, 1)"}

    def compute_batch(self, questions, inputs, ctx):
        judge = get_judge(ctx, self.produces.name)
        fingerprint = judge.fingerprint()
        plans = []
        for samples in inputs[SAMPLES]:
            texts = samples.texts
            unique = list(dict.fromkeys(texts))
            pairs = [(a, b) for a in unique for b in unique if a != b]
            plans.append((texts, unique, pairs))
        scores = judge_pairs(judge, [p for _, _, pairs in plans for p in pairs])
        values = []
        for texts, unique, pairs in plans:
            row = {t: i for i, t in enumerate(unique)}
            small = np.zeros((len(unique), len(unique), 3))
            small[..., ENTAIL] = np.eye(len(unique))
            small[..., SIMILARITY] = np.eye(len(unique))
            for a, b in pairs:
                small[row[a], row[b]] = scores[(a, b)]
            index = [row[t] for t in texts]
            full = small[np.ix_(index, index)].astype(np.float32)
            values.append((SemanticMatrix(full[..., ENTAIL], full[..., CONTRA],
                                          full[..., SIMILARITY], fingerprint),
                           Cost(aux_calls=len(pairs))))
        return values


# -- CCP alternatives -------------------------------------------------------------
def token_word(text: str) -> str:
    """``text`` without leading/trailing whitespace and (Unicode) punctuation."""
    start, end = 0, len(text)
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    return text[start:end]


def _edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


@calculator
class GreedyAlternativesCalculator(_JudgeCalculator):
    """Judge labels between each greedy token's word and its top-K alternatives' words.

    ``entail[t, k]``, ``contra[t, k]`` = judge(word(y_t), word(a_tk)) with
    word = the token decoded alone (``backend.token_texts``), whitespace and
    punctuation stripped. Without a judge call: alternative 0 (the greedy
    token) and an alternative with the greedy word itself are (1, 0); a pair
    where either word is empty (punctuation, whitespace, special tokens such
    as EOS) is neutral (0, 0) -- an empty word makes no claim, so it neither
    supports nor contradicts the greedy one.
    """

    produces = GREEDY_ALTERNATIVES
    depends = (GREEDY,)
    rules = {"word": "token decoded alone, whitespace/punctuation stripped; "
                     "special tokens empty", "empty": "neutral", "k0": "entail"}

    def compute_batch(self, questions, inputs, ctx):
        judge = get_judge(ctx, self.produces.name)
        fingerprint = judge.fingerprint()
        backend = ctx.store.backend
        greedy = inputs[GREEDY]
        ids = sorted({int(i) for g in greedy for i in (*g.token_ids, *g.topk_ids.ravel())})
        special = set(getattr(getattr(backend, "tokenizer", None), "all_special_ids", None) or ())
        # Every distinct id is decoded once for the whole batch.
        words = {i: "" if i in special else token_word(text)
                 for i, text in zip(ids, backend.token_texts(ids))}
        plans = []
        for g in greedy:
            n, k = g.topk_ids.shape
            labels = np.zeros((n, k, 2))
            pending: dict[tuple[int, int], Pair] = {}
            for t in range(n):
                mine = words[int(g.token_ids[t])]
                labels[t, 0] = (1.0, 0.0)
                for j in range(1, k):
                    other = words[int(g.topk_ids[t, j])]
                    if not mine or not other:
                        continue
                    if other == mine:
                        labels[t, j] = (1.0, 0.0)
                    else:
                        pending[(t, j)] = (mine, other)
            plans.append((labels, pending))
        scores = judge_pairs(judge, [p for _, pending in plans for p in pending.values()])
        values = []
        for labels, pending in plans:
            for (t, j), pair in pending.items():
                labels[t, j] = scores[pair][[ENTAIL, CONTRA]]
            labels = labels.astype(np.float32)
            values.append((AlternativeJudgement(labels[..., 0], labels[..., 1],
                                                fingerprint),
                           Cost(aux_calls=len(set(pending.values())))))
        return values


# -- SAR relevance -----------------------------------------------------------------
def relevance_pairs(question: str, generation: Generation) -> list[Pair | None]:
    """Per token, (x + s, x + s without the token), or None where R_t is 0 without a judge.

    s is the concatenation of ``token_texts`` without the stop token (it is
    not part of the answer text, so its relevance is 0); None also marks a
    token whose removal leaves the text unchanged (an empty piece).
    """
    pieces = list(generation.token_texts)
    n_text = generation.n_text_tokens
    full = f"{question} {''.join(pieces[:n_text]).strip()}"
    pairs: list[Pair | None] = []
    for t in range(len(pieces)):
        if t >= n_text:
            pairs.append(None)
            continue
        reduced = f"{question} {''.join(pieces[:t] + pieces[t + 1:n_text]).strip()}"
        pairs.append(None if reduced == full else (full, reduced))
    return pairs


class _RelevanceCalculator(_JudgeCalculator):
    """R_t = 1 - similarity(x + s, x + s without token t) for each sequence of a question."""

    rules = {"text": "question + ' ' + concatenated token_texts (stop token excluded, "
                     "stripped)", "relevance": "1 - similarity"}

    def sequences(self, inputs, i: int) -> Sequence[Generation]:
        raise NotImplementedError

    def compute_batch(self, questions, inputs, ctx):
        judge = get_judge(ctx, self.produces.name)
        fingerprint = judge.fingerprint()
        plans = [[relevance_pairs(q.question, g) for g in self.sequences(inputs, i)]
                 for i, q in enumerate(questions)]
        scores = judge_pairs(judge, [p for plan in plans for seq in plan for p in seq if p])
        values = []
        for plan in plans:
            per_sequence = tuple(
                np.array([0.0 if p is None else 1.0 - scores[p][SIMILARITY] for p in seq],
                         dtype=np.float32) for seq in plan)
            distinct = {p for seq in plan for p in seq if p}
            values.append((TokenRelevance(per_sequence, fingerprint),
                           Cost(aux_calls=len(distinct))))
        return values


@calculator
class GreedyRelevanceCalculator(_RelevanceCalculator):
    """SAR token relevance of the greedy answer (one sequence per question)."""

    produces = GREEDY_RELEVANCE
    depends = (GREEDY,)

    def sequences(self, inputs, i):
        return (inputs[GREEDY][i],)


@calculator
class SampleRelevanceCalculator(_RelevanceCalculator):
    """SAR token relevance of every sample (one sequence per sample)."""

    produces = SAMPLE_RELEVANCE
    depends = (SAMPLES,)

    def sequences(self, inputs, i):
        return inputs[SAMPLES][i].samples
