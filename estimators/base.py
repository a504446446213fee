"""Typed statistics, the estimator interface and the estimator registry.

An estimator is a small class that declares the statistics it reads and maps
them to one float per question, **higher = more uncertain = more reason to
retrieve**. Statistics are produced once per question by the runner's
calculators (``bench.statistics``) and shared by every estimator.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from bench.models.outputs import Generation, SampleSet

T = TypeVar("T")


@dataclass(frozen=True)
class Statistic(Generic[T]):
    """A named, typed per-question statistic.

    Attributes
    ----------
    name : str
        Registry and cache name.
    type : type
        Python type of the value; checked when a bundle is built.
    extra_generate_calls : int or str
        LM cost over the baseline greedy pass, for listings ("N" = number of
        samples).
    """

    name: str
    type: type
    description: str
    extra_generate_calls: int | str = 0


GREEDY: Statistic[Generation] = Statistic(
    "greedy", Generation,
    "closed-book greedy answer with per-step log-probs, entropies, top-k and hidden states")
SAMPLES: Statistic[SampleSet] = Statistic(
    "samples", SampleSet, "N sampled closed-book answers with token log-probs", "N")


class StatBundle:
    """The statistics of one question, read by typed key."""

    def __init__(self, question_id: str, values: Mapping[Statistic, Any]) -> None:
        for stat, value in values.items():
            if not isinstance(value, stat.type):
                raise TypeError(f"statistic {stat.name!r} of {question_id!r} is "
                                f"{type(value).__name__}, expected {stat.type.__name__}")
        self.question_id = question_id
        self._values = dict(values)

    def __getitem__(self, stat: Statistic[T]) -> T:
        try:
            return self._values[stat]
        except KeyError:
            raise KeyError(f"statistic {stat.name!r} was not computed for "
                           f"{self.question_id!r}; does the estimator declare it?") from None

    def __contains__(self, stat: Statistic) -> bool:
        return stat in self._values


@dataclass(frozen=True)
class EstimatorOptions:
    """Global choices every estimator honours (recorded in the run config).

    Attributes
    ----------
    include_stop_token : bool
        Whether token-level aggregates include the step that emitted EOS or
        the newline (the study was inconsistent about this; STUDY §9.9).
    """

    include_stop_token: bool = True


class Estimator(ABC):
    """Base class: declare ``name``, ``family``, ``requires``; implement ``score``."""

    name: ClassVar[str]
    family: ClassVar[str]
    requires: ClassVar[tuple[Statistic, ...]]
    #: The study's column name when the estimator is one of its 27.
    study_name: ClassVar[str | None] = None
    #: Short formula/definition shown by listings.
    summary: ClassVar[str] = ""

    def __init__(self, options: EstimatorOptions | None = None) -> None:
        self.options = options or EstimatorOptions()

    @abstractmethod
    def score(self, stats: StatBundle) -> float:
        """Uncertainty of one question (NaN if undefined for this input)."""

    def steps(self, generation: Generation) -> slice:
        return generation.answer_steps(self.options.include_stop_token)


class GreedyStepAggregate(Estimator):
    """A per-step quantity of the greedy answer, reduced over the answer steps.

    Subclasses give :meth:`per_step` and a ``reduce`` function (mean, max, ...);
    the global EOS policy chooses the steps.
    """

    family = "logit"
    requires = (GREEDY,)
    reduce: ClassVar[Callable[[np.ndarray], float]] = staticmethod(np.mean)

    @abstractmethod
    def per_step(self, greedy: Generation) -> np.ndarray:
        """One value per generation step."""

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        return float(self.reduce(self.per_step(greedy)[self.steps(greedy)]))


ESTIMATORS: dict[str, type[Estimator]] = {}
#: Result-row names an estimator may not take.
RESERVED_NAMES = frozenset({"never", "always", "ideal"})

E = TypeVar("E", bound=type[Estimator])


def register(cls: E) -> E:
    """Class decorator adding an estimator to the registry, checking its declaration."""
    for attr in ("name", "family", "requires"):
        if not hasattr(cls, attr):
            raise TypeError(f"estimator {cls.__qualname__} does not declare {attr!r}")
    if not cls.requires or not all(isinstance(s, Statistic) for s in cls.requires):
        raise TypeError(f"estimator {cls.name!r}: requires must be a non-empty tuple of "
                        "Statistic")
    if cls.name in RESERVED_NAMES:
        raise ValueError(f"estimator name {cls.name!r} is reserved for a reference row")
    if cls.name in ESTIMATORS and ESTIMATORS[cls.name] is not cls:
        raise ValueError(f"estimator {cls.name!r} registered twice "
                         f"({ESTIMATORS[cls.name].__module__} and {cls.__module__})")
    ESTIMATORS[cls.name] = cls
    return cls


def create(name: str, options: EstimatorOptions | None = None) -> Estimator:
    """Instantiate a registered estimator by name."""
    try:
        return ESTIMATORS[name](options)
    except KeyError:
        raise KeyError(f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}"
                       ) from None


def finite_or_nan(value: float) -> float:
    """Map ±inf and NaN to NaN so that one NaN policy applies downstream."""
    return float(value) if math.isfinite(value) else math.nan


Reducer = Callable[..., float]
