"""Typed statistics, the estimator interface and the estimator registry.

An estimator is a small class that declares the statistics it reads and maps
them to one float per question, **higher = more uncertain = more reason to
retrieve**. Statistics are produced once per question by the runner's
calculators (``bench.statistics``) and shared by every estimator.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
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
    generate_calls : int or str
        Extra decoded sequences over the baseline greedy pass ("N" = the
        number of samples).
    forward_passes : int or str
        Extra teacher-forced or one-token scoring passes.
    aux : str
        Auxiliary-model work (judge pairs), for listings.
    derived_from : tuple of Statistic
        Statistics it is computed from; their cost is part of its cost.
    """

    name: str
    type: type
    description: str
    generate_calls: int | str = 0
    forward_passes: int | str = 0
    aux: str = ""
    derived_from: tuple[Statistic, ...] = ()


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
    # Typed as the staticmethod descriptor it is: a ClassVar[Callable] would make
    # mypy bind `self` as the first argument on access.
    reduce: ClassVar[staticmethod[[np.ndarray], Any]] = staticmethod(np.mean)

    @abstractmethod
    def per_step(self, greedy: Generation) -> np.ndarray:
        """One value per generation step."""

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        return float(self.reduce(self.per_step(greedy)[self.steps(greedy)]))


@dataclass(frozen=True)
class BackgroundEmbeddings:
    """Hidden states of generic text (corpus passages), for relative density.

    ``hidden_mean[m, l]`` is the mean over passage m's tokens of the layer
    ``layers[l]`` hidden state (padding masked).
    """

    hidden_mean: np.ndarray
    layers: np.ndarray


@dataclass(frozen=True)
class FitData:
    """What a trained estimator may see: train questions only, never test.

    Attributes
    ----------
    bundles : sequence of StatBundle
        Statistics of the train questions.
    needs_retrieval : (n,) int array
        1 where the closed-book answer is wrong (In-Accuracy 0), from gold
        answers. Label-free estimators must not read it.
    seed : int
        Seeds every random choice (dev split, initialisation).
    dev_fraction : float
        Share of ``bundles`` held out to select hyper-parameters.
    background : callable or None
        Returns :class:`BackgroundEmbeddings` (computed on first call).
    """

    bundles: Sequence[StatBundle]
    needs_retrieval: np.ndarray
    seed: int = 0
    dev_fraction: float = 0.2
    background: Callable[[], BackgroundEmbeddings] | None = None


@dataclass
class FittedState:
    """A fitted estimator's parameters: JSON ``meta`` and named arrays (no pickle)."""

    meta: dict
    arrays: dict[str, np.ndarray]


class TrainedEstimator(Estimator):
    """An estimator fitted on train statistics before it scores.

    ``training`` is ``"fit"`` (unsupervised density), ``"supervised"`` (gold
    labels) or ``"label-free"`` (pseudo-labels from the model's own outputs).
    """

    training: ClassVar[str] = "supervised"

    @abstractmethod
    def fit(self, data: FitData) -> None:
        """Fit on train; must be deterministic for ``data.seed``."""

    @abstractmethod
    def get_state(self) -> FittedState:
        """The fitted parameters, enough for :meth:`set_state` to score identically."""

    @abstractmethod
    def set_state(self, state: FittedState) -> None:
        """Restore parameters saved by :meth:`get_state`."""


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


def lm_cost(requires: Sequence[Statistic]) -> dict[str, str]:
    """Extra work over the closed-book greedy pass, summed over the statistics.

    Terms are kept symbolic ("N" = number of samples): e.g. ``{"generate_calls": "N",
    "forward_passes": "1", "aux": "N^2 pairs"}``; each statistic is counted once.
    """
    def total(values: list[int | str]) -> str:
        numbers = sum(v for v in values if isinstance(v, int))
        symbols = [v for v in values if isinstance(v, str)]
        return "+".join(symbols + ([str(numbers)] if numbers or not symbols else []))

    def expand(stats) -> list[Statistic]:
        return [x for s in stats for x in (*expand(s.derived_from), s)]

    unique = list(dict.fromkeys(expand(requires)))
    return {"generate_calls": total([s.generate_calls for s in unique]),
            "forward_passes": total([s.forward_passes for s in unique]),
            "aux": ", ".join(s.aux for s in unique if s.aux)}


def finite_or_nan(value: float) -> float:
    """Map ±inf and NaN to NaN so that one NaN policy applies downstream."""
    return float(value) if math.isfinite(value) else math.nan


Reducer = Callable[..., float]
