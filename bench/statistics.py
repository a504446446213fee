"""Calculators that produce the statistics estimators declare, in dependency order."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.data.schema import Question
from bench.ledger import Cost
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.prompts import PromptTemplate
from bench.stores import GenerationStore
from estimators.base import GREEDY, SAMPLES, StatBundle, Statistic


@dataclass(frozen=True)
class StatContext:
    """Everything calculators need besides the questions."""

    store: GenerationStore
    template: PromptTemplate
    greedy: GreedyConfig
    sampling: SamplingConfig
    seed: int


class Calculator(ABC):
    """Produces one statistic for a list of questions, with a cost per question."""

    produces: ClassVar[Statistic]
    depends: ClassVar[tuple[Statistic, ...]] = ()

    @abstractmethod
    def compute(self, questions: Sequence[Question], ctx: StatContext,
                inputs: dict[Statistic, list[Any]], desc: str) -> list[tuple[Any, Cost]]:
        """Values for ``questions`` in order; ``inputs`` holds the declared dependencies."""


CALCULATORS: dict[Statistic, type[Calculator]] = {}


def calculator(cls: type[Calculator]) -> type[Calculator]:
    """Class decorator: the calculator becomes the one producer of ``cls.produces``."""
    if cls.produces in CALCULATORS:
        raise ValueError(f"statistic {cls.produces.name!r} already has a calculator")
    CALCULATORS[cls.produces] = cls
    return cls


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


def dependency_order(needed: set[Statistic]) -> list[Statistic]:
    """Statistics to compute, dependencies first; fails on unknown or cyclic ones."""
    order: list[Statistic] = []
    state: dict[Statistic, str] = {}

    def visit(stat: Statistic, path: tuple[str, ...]) -> None:
        if state.get(stat) == "done":
            return
        if state.get(stat) == "visiting":
            raise ValueError(f"statistics depend on each other: {' -> '.join(path)}")
        if stat not in CALCULATORS:
            raise KeyError(f"no calculator produces statistic {stat.name!r}")
        state[stat] = "visiting"
        for dep in CALCULATORS[stat].depends:
            visit(dep, path + (dep.name,))
        state[stat] = "done"
        order.append(stat)

    for stat in sorted(needed, key=lambda s: s.name):
        visit(stat, (stat.name,))
    return order


def compute_statistics(questions: Sequence[Question], needed: set[Statistic],
                       ctx: StatContext, desc: str
                       ) -> tuple[list[StatBundle], dict[Statistic, list[Cost]]]:
    """Bundles of exactly the statistics in ``needed`` (plus dependencies) per question."""
    values: dict[Statistic, list[Any]] = {}
    costs: dict[Statistic, list[Cost]] = {}
    for stat in dependency_order(needed):
        calc = CALCULATORS[stat]()
        inputs = {dep: values[dep] for dep in calc.depends}
        produced = calc.compute(questions, ctx, inputs, desc)
        values[stat] = [value for value, _ in produced]
        costs[stat] = [cost for _, cost in produced]
    bundles = [StatBundle(q.id, {stat: values[stat][i] for stat in values})
               for i, q in enumerate(questions)]
    return bundles, costs
