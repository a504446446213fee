"""The two generation statistics every other one builds on: the greedy answer and the samples."""
from __future__ import annotations

from bench.statistics import Calculator, calculator
from estimators.base import GREEDY, SAMPLES


@calculator
class GreedyCalculator(Calculator):
    produces = GREEDY

    def compute(self, questions, ctx, inputs, desc):
        prompts = [ctx.template.closed(q.question) for q in questions]
        return ctx.store.greedy(prompts, ctx.greedy, desc=f"{desc} greedy")


@calculator
class SampleCalculator(Calculator):
    produces = SAMPLES

    def compute(self, questions, ctx, inputs, desc):
        prompts = [ctx.template.closed(q.question) for q in questions]
        return ctx.store.samples(prompts, ctx.sampling, ctx.seed, desc=f"{desc} samples")
