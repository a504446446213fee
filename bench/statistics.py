"""The calculator registry: who produces each statistic, in what order, at what cost.

Calculators live in ``bench.calculators`` (importing it registers them); this
module holds the interface, the dependency order and the driver.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from bench.cache import Record
from bench.data.schema import Question
from bench.ledger import Cost
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.prompts import PromptTemplate
from bench.stores import GenerationStore
from estimators import stat_types
from estimators.base import GREEDY, SAMPLES, StatBundle, Statistic


@dataclass(frozen=True)
class StatContext:
    """Everything calculators need besides the questions.

    ``judge`` builds the similarity/entailment judge on first use (see
    ``bench.judges``), so runs that need none never load one.
    """

    store: GenerationStore
    template: PromptTemplate
    greedy: GreedyConfig
    sampling: SamplingConfig
    seed: int
    judge: Callable[[], Any] | None = None


class Calculator(ABC):
    """Produces one statistic for a list of questions, with a cost per question."""

    produces: ClassVar[Statistic]
    depends: ClassVar[tuple[Statistic, ...]] = ()

    @abstractmethod
    def compute(self, questions: Sequence[Question], ctx: StatContext,
                inputs: dict[Statistic, list[Any]], desc: str) -> list[tuple[Any, Cost]]:
        """Values for ``questions`` in order; ``inputs`` holds the declared dependencies."""


class CachedCalculator(Calculator):
    """A calculator whose per-question values are cached records.

    The cache key is the model, the question's closed-book prompt, the
    decoding configuration of every statistic it depends on (transitively)
    and :meth:`params`. Subclasses implement :meth:`compute_batch`.
    """

    batch_size: ClassVar[int] = 16

    def params(self, ctx: StatContext) -> dict:
        """Extra inputs that determine the values (judge fingerprint, prompt text)."""
        return {}

    @abstractmethod
    def compute_batch(self, questions: Sequence[Question], inputs: dict[Statistic, list[Any]],
                      ctx: StatContext) -> list[tuple[Any, Cost]]:
        """Values and costs for a batch; ``inputs`` are aligned with ``questions``."""

    def compute(self, questions, ctx, inputs, desc):
        identity = {"stat": self.produces.name, "params": self.params(ctx),
                    **_upstream_identity(self.produces, ctx)}
        identities = [{**identity, "messages": ctx.template.closed(q.question)}
                      for q in questions]

        def compute(chunk: list[int]) -> list[Record]:
            batch = [questions[i] for i in chunk]
            values = self.compute_batch(batch, {s: [v[i] for i in chunk]
                                                for s, v in inputs.items()}, ctx)
            records = []
            for value, cost in values:
                meta, arrays = stat_types.to_record(value)
                records.append(Record({"value": meta, "cost": cost.to_dict()}, arrays))
            return records

        records = ctx.store.cached(self.produces.name, identities,
                                   [len(q.question) for q in questions], compute,
                                   self.batch_size, f"{desc} {self.produces.name}")
        return [(stat_types.from_record(self.produces.type, r.meta["value"], r.arrays),
                 Cost.from_dict(r.meta["cost"])) for r in records]


def _upstream_identity(stat: Statistic, ctx: StatContext) -> dict:
    """Decoding settings of the generations ``stat`` is (transitively) derived from."""
    identity: dict = {}
    for dep in CALCULATORS[stat].depends:
        identity.update(_upstream_identity(dep, ctx))
    if stat is GREEDY:
        identity["greedy"] = asdict(ctx.greedy)
    elif stat is SAMPLES:
        identity.update(sampling=asdict(ctx.sampling), seed=ctx.seed)
    return identity


CALCULATORS: dict[Statistic, type[Calculator]] = {}


def calculator(cls: type[Calculator]) -> type[Calculator]:
    """Class decorator: the calculator becomes the one producer of ``cls.produces``."""
    if cls.produces in CALCULATORS:
        raise ValueError(f"statistic {cls.produces.name!r} already has a calculator")
    CALCULATORS[cls.produces] = cls
    return cls


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


# The built-in calculators register themselves against the classes above.
import bench.calculators  # noqa: E402,F401
