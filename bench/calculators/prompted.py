"""Statistics that need the model to generate under a prompt of their own."""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from bench.calculators.forced import answer_text_ids
from bench.ledger import Cost
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.models.passes import teacher_forced
from bench.statistics import CachedCalculator, Calculator, calculator
from estimators.base import GREEDY
from estimators.stat_types import REFLECTIVE, REVISION, VERBALIZED, ReflectiveScores

#: Tian et al. 2023's verbalized-confidence prompt (1S, top-1), as in AdaRAGUE.
VERBALIZED_1S_PROMPT = (
    "Provide your best guess and the probability that it is correct (0.0 to 1.0) for the "
    "following question. Give ONLY the guess and probability, no other words or explanation. "
    "For example:\n\nGuess: <most likely guess, as short as possible; not a complete "
    "sentence, just the guess!>\nProbability: <the probability between 0.0 and 1.0 that your "
    "guess is correct, without any extra commentary whatsoever; just the probability!>\n\n"
    "The question is: {question}")
#: The one follow-up turn of the introspection estimator (RISE, arXiv 2407.18219).
REVISION_TURN = ("Are you sure? Reconsider the question once more and reply with your final "
                 "short answer only.")
#: Reasoning chains for the R3 adaptation: short, ending in an answer line.
COT_SYSTEM = ("Think step by step in one or two short sentences, then write 'Answer:' "
              "followed by a short answer.")
COT_SAMPLING = SamplingConfig(n=4, max_new_tokens=48, stop_at_newline=False)
_ANSWER_MARK = re.compile(r"answer\s*:", re.IGNORECASE)


@calculator
class VerbalizedCalculator(Calculator):
    """The greedy reply to the verbalized-confidence prompt (guess and probability lines)."""

    produces = VERBALIZED

    def compute(self, questions, ctx, inputs, desc):
        config = GreedyConfig(max_new_tokens=32, stop_at_newline=False,
                              layers=ctx.greedy.layers)
        prompts = [(("user", VERBALIZED_1S_PROMPT.format(question=q.question)),)
                   for q in questions]
        return ctx.store.greedy(prompts, config, desc=f"{desc} verbalized")


@calculator
class RevisionCalculator(Calculator):
    """The greedy answer after the model is asked once to reconsider its closed-book answer."""

    produces = REVISION
    depends = (GREEDY,)

    def compute(self, questions, ctx, inputs, desc):
        prompts = [(*ctx.template.closed(q.question), ("assistant", g.text),
                    ("user", REVISION_TURN)) for q, g in zip(questions, inputs[GREEDY])]
        return ctx.store.greedy(prompts, ctx.greedy, desc=f"{desc} revision")


def reasoning_chain(text: str) -> str:
    """The reasoning before the model's own ``Answer:`` line (all of it if there is none)."""
    match = _ANSWER_MARK.search(text)
    return (text[:match.start()] if match else text).strip()


@calculator
class ReflectiveCalculator(CachedCalculator):
    """N sampled reasoning chains, then the greedy answer teacher-forced after each."""

    produces = REFLECTIVE
    depends = (GREEDY,)

    def params(self, ctx):
        return {"system": COT_SYSTEM, "sampling": dataclasses.asdict(COT_SAMPLING)}

    def compute_batch(self, questions, inputs, ctx):
        cot_prompts = [(("system", COT_SYSTEM),
                        ("user", ctx.template.closed_book.format(question=q.question)))
                       for q in questions]
        sampled = ctx.store.samples(cot_prompts, COT_SAMPLING, ctx.seed, desc="chains")
        backend = ctx.store.backend
        values = []
        for prompt, (sample_set, sample_cost), greedy in zip(cot_prompts, sampled,
                                                             inputs[GREEDY]):
            chains = tuple(reasoning_chain(t) for t in sample_set.texts)
            answer = answer_text_ids(greedy)
            head = backend.chat_prompt(prompt)
            forced = teacher_forced(backend, [f"{head}{c}\nAnswer: " for c in chains],
                                    [answer] * len(chains)) if len(answer) else []
            logprobs = (np.stack([f.token_logprobs for f in forced]) if forced
                        else np.zeros((len(chains), 0), np.float32))
            values.append((ReflectiveScores(logprobs, chains),
                           sample_cost + Cost(forward_passes=len(chains),
                                              prompt_tokens=len(chains) * len(answer))))
        return values
