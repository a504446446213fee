"""Statistics from extra forward passes over the greedy answer (no decoding).

Each pass is one teacher-forced batch through :mod:`bench.models.passes`;
its cost is one forward pass per question.
"""
from __future__ import annotations

import numpy as np

from bench.ledger import Cost
from bench.models.outputs import Generation
from bench.models.passes import (
    label_readouts,
    last_layer_attention,
    teacher_forced,
)
from bench.statistics import CachedCalculator, calculator
from estimators.base import GREEDY
from estimators.stat_types import (
    ANSWER_ATTENTION,
    P_TRUE,
    UNCONDITIONAL,
    AttentionMap,
    ForcedPass,
    Readout,
)

#: Kadavath et al. 2022's self-evaluation prompt as LM-Polygraph words it.
P_TRUE_PROMPT = ("Question: {question}\nPossible answer: {answer}\n"
                 "Is the possible answer:\n (A) True\n (B) False\nThe possible answer is:")
#: First tokens that spell each option (chat models answer "True", "(A", "A", ...).
P_TRUE_LABELS = {"true": ("True", " True", "A", " A", "(A", " (A"),
                 "false": ("False", " False", "B", " B", "(B", " (B")}


def answer_text_ids(greedy: Generation) -> np.ndarray:
    """The greedy answer's tokens without the stop token."""
    return greedy.token_ids[:greedy.n_text_tokens]


@calculator
class UnconditionalCalculator(CachedCalculator):
    """log p(y_t | y_<t): the greedy tokens forced after the prompt with the question removed.

    The "unconditional" context keeps the template (system turn, demonstrations,
    ``Question: \\nAnswer:``) so that PMI isolates the question's contribution,
    where the study re-applied the chat template to the bare answer.
    """

    produces = UNCONDITIONAL
    depends = (GREEDY,)

    def params(self, ctx):
        return {"context": ctx.template.closed("")}

    def compute_batch(self, questions, inputs, ctx):
        backend = ctx.store.backend
        prefix = backend.chat_prompt(ctx.template.closed(""))
        greedy = inputs[GREEDY]
        results = teacher_forced(backend, [prefix] * len(greedy), [g.token_ids for g in greedy])
        return [(ForcedPass(r.token_logprobs, r.entropies),
                 Cost(forward_passes=1, prompt_tokens=g.n_tokens)) for r, g in zip(results, greedy)]


@calculator
class PTrueCalculator(CachedCalculator):
    """One next-token distribution after the P(True) prompt over the greedy answer."""

    produces = P_TRUE
    depends = (GREEDY,)

    def params(self, ctx):
        return {"prompt": P_TRUE_PROMPT, "labels": P_TRUE_LABELS}

    def compute_batch(self, questions, inputs, ctx):
        backend = ctx.store.backend
        prompts = [backend.chat_prompt((("user", P_TRUE_PROMPT.format(
            question=q.question, answer=g.text)),)) for q, g in zip(questions, inputs[GREEDY])]
        values = []
        for prompt, logprobs in zip(prompts, label_readouts(backend, prompts, P_TRUE_LABELS)):
            tokens = len(backend.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            values.append((Readout(logprobs), Cost(forward_passes=1, prompt_tokens=tokens)))
        return values


@calculator
class AnswerAttentionCalculator(CachedCalculator):
    """Last-layer attention over the greedy tokens alone, as DRAGIN's code computes it."""

    produces = ANSWER_ATTENTION
    depends = (GREEDY,)
    batch_size = 32

    def compute_batch(self, questions, inputs, ctx):
        greedy = inputs[GREEDY]
        maps = last_layer_attention(ctx.store.backend, [g.token_ids for g in greedy])
        return [(AttentionMap(m), Cost(forward_passes=1, prompt_tokens=g.n_tokens))
                for m, g in zip(maps, greedy)]
