"""Self-labelled demonstrations by Internal Coherence Maximization, then a P(True) readout.

An adaptation of Wen et al. 2025, "Unsupervised Elicitation of Language
Models" (arXiv 2506.10139), ESTIMATORS.md §9. Offline, on the train questions
of the same statistics pass and without gold answers, it searches labels
y_i in {True, False} for claims "answer a_i to question q_i is correct" that
maximise the mutual predictability

    J(D) = sum_i log P(y_i | claim_i, D without i),

starting from the model's zero-shot verdicts and flipping one label at a time
under simulated annealing. Claims about different questions cannot
contradict each other, so ICM's consistency term is empty here. Online, each
question's claim is read after the whole labelled set (its own demo removed).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from bench.cache import Record
from bench.calculators.forced import P_TRUE_LABELS
from bench.ledger import Cost
from bench.models.passes import label_readouts
from bench.statistics import Calculator, calculator
from estimators.base import GREEDY
from estimators.stat_types import ICM_READOUT, Readout

INSTRUCTION = "Decide whether each proposed answer to the question is correct."
CLAIM = "Question: {question}\nProposed answer: {answer}\nCorrect (True or False):"
DEMOS = 8
ITERATIONS = 16
LABELS = ("true", "false")


def anneal_labels(initial: Sequence[int], objective: Callable[[list[int]], float],
                  iterations: int, rng: np.random.Generator, start_temperature: float = 1.0,
                  cooling: float = 0.85) -> tuple[list[int], float]:
    """Maximise ``objective`` over binary labels by single flips (simulated annealing).

    Returns the best labels seen and their objective.
    """
    labels = list(initial)
    current = objective(labels)
    best, best_value = list(labels), current
    temperature = start_temperature
    for _ in range(iterations):
        proposal = list(labels)
        i = int(rng.integers(len(proposal)))
        proposal[i] = 1 - proposal[i]
        value = objective(proposal)
        if value >= current or rng.random() < math.exp((value - current) / temperature):
            labels, current = proposal, value
            if current > best_value:
                best, best_value = list(labels), current
        temperature *= cooling
    return best, best_value


class _Reader:
    """Batched P(True)/P(False) readouts of claims after given demonstrations."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def prompt(self, demos: Sequence[tuple[str, int]], claim: str) -> str:
        shown = "\n\n".join(f"{text} {'True' if y == 0 else 'False'}" for text, y in demos)
        body = f"{INSTRUCTION}\n\n{shown}\n\n{claim}" if demos else f"{INSTRUCTION}\n\n{claim}"
        return self.backend.chat_prompt((("user", body),))

    def read(self, prompts: list[str]) -> list[dict[str, float]]:
        return label_readouts(self.backend, prompts,
                              {label: P_TRUE_LABELS[label] for label in LABELS})


@calculator
class IcmCalculator(Calculator):
    produces = ICM_READOUT
    depends = (GREEDY,)

    def compute(self, questions, ctx, inputs, desc):
        claims = [CLAIM.format(question=q.question, answer=g.text)
                  for q, g in zip(questions, inputs[GREEDY])]
        pool = [i for i, q in enumerate(questions) if q.split == "train"]
        if not pool:
            raise ValueError(f"{desc}: icm_readout selects its demonstrations among train "
                             "questions, and none are in this statistics pass")
        rng = np.random.default_rng(ctx.seed)
        chosen = sorted(rng.choice(pool, size=min(DEMOS, len(pool)), replace=False).tolist())
        demos = self._demos([claims[i] for i in chosen], ctx, desc)
        identity = {"demos": demos, "instruction": INSTRUCTION}

        def compute(chunk):
            reader = _Reader(ctx.store.backend)
            prompts = [reader.prompt([d for d in demos if d[0] != claims[i]], claims[i])
                       for i in chunk]
            records = []
            for prompt, logprobs in zip(prompts, reader.read(prompts)):
                tokens = len(reader.backend.tokenizer(prompt, add_special_tokens=False)
                             ["input_ids"])
                records.append(_record(logprobs, Cost(forward_passes=1, prompt_tokens=tokens)))
            return records

        records = ctx.store.cached("icm_readout", [{**identity, "claim": c} for c in claims],
                                   [len(c) for c in claims], compute, 8, f"{desc} icm")
        return [(Readout(r.meta["logprobs"]), _cost(r)) for r in records]

    def _demos(self, claims: list[str], ctx, desc: str) -> list[tuple[str, int]]:
        """The coherent labelled set, cached as one record per pool of claims."""
        identity = {"pool": claims, "iterations": ITERATIONS, "seed": ctx.seed,
                    "instruction": INSTRUCTION}

        def compute(_chunk):
            reader = _Reader(ctx.store.backend)
            zero_shot = reader.read([reader.prompt([], c) for c in claims])
            initial = [0 if r["true"] >= r["false"] else 1 for r in zero_shot]

            def mutual_predictability(labels: list[int]) -> float:
                demos = list(zip(claims, labels))
                prompts = [reader.prompt(demos[:i] + demos[i + 1:], claims[i])
                           for i in range(len(claims))]
                read = reader.read(prompts)
                return float(sum(r[LABELS[y]] for r, y in zip(read, labels)))

            labels, value = anneal_labels(initial, mutual_predictability, ITERATIONS,
                                          np.random.default_rng(ctx.seed))
            return [Record({"labels": labels, "objective": value, "cost": Cost().to_dict()})]

        record = ctx.store.cached("icm_demos", [identity], [0], compute, 1, f"{desc} icm demos")
        return list(zip(claims, record[0].meta["labels"]))


def _record(logprobs: dict, cost: Cost) -> Record:
    return Record({"logprobs": logprobs, "cost": cost.to_dict()})


def _cost(record) -> Cost:
    return Cost.from_dict(record.meta["cost"])

