"""The pipeline interface: each method is a per-question coroutine of requests.

A pipeline's :meth:`Pipeline.run` is a generator. It ``yield``s a request (or a
list of requests) and receives the result(s); it ``return``s an
:class:`Outcome`. The method's control flow therefore reads like the paper's
pseudo-code, while :func:`bench.pipelines.driver.drive` advances every
question in lockstep and batches equal requests across questions through the
cached stores, charging each question's :class:`~bench.ledger.Cost`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from bench.data.schema import Question
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.prompts import Messages

#: Model roles a request can address; "verifier" is Rowen-CM's second model.
MAIN, VERIFIER = "main", "verifier"


@dataclass(frozen=True)
class Generate:
    """One greedy answer to ``messages`` → :class:`~bench.models.outputs.Generation`."""

    messages: Messages
    config: GreedyConfig
    model: str = MAIN


@dataclass(frozen=True)
class Sample:
    """``config.n`` samples from one prefill → :class:`~bench.models.outputs.SampleSet`."""

    messages: Messages
    config: SamplingConfig
    model: str = MAIN


@dataclass(frozen=True)
class Retrieve:
    """Top-``k`` passages for ``query`` → list of :class:`~retrievers.base.Passage`."""

    query: str
    k: int


@dataclass(frozen=True)
class Attend:
    """Last-layer, head-averaged attention over ``text`` alone → :class:`Attention`."""

    text: str


@dataclass(frozen=True)
class Judge:
    """Similarity in [0, 1] of each text pair, by the run's judge → (P,) float array."""

    pairs: tuple[tuple[str, str], ...]


Request = Generate | Sample | Retrieve | Attend | Judge


@dataclass(frozen=True)
class Attention:
    """``weights[j, i]``: how much token j attends to token i (rows sum to 1)."""

    tokens: tuple[str, ...]
    weights: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """What a pipeline returns for one question.

    Attributes
    ----------
    answer : str
        The final, graded answer.
    retrieve_first : bool or None
        The first retrieve/no-retrieve decision, made before any retrieval;
        None for methods that never make one (they always retrieve).
    trigger_score : float or None
        The score behind that decision, higher = more need (ROC-AUC); None
        when the decision has no graded score.
    queries : tuple of str
        Retrieval queries in the order issued (the control-flow trace tests
        assert and the per-question output records).
    steps : int
        Reasoning or generation steps taken.
    """

    answer: str
    retrieve_first: bool | None = None
    trigger_score: float | None = None
    queries: tuple[str, ...] = ()
    steps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PipelineSettings:
    """Base of every pipeline's settings; subclasses add fields with the study's values."""

    def updated(self, overrides: dict) -> PipelineSettings:
        """A copy with ``overrides`` applied; an unknown key is an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no setting(s) {unknown}; "
                             f"known: {sorted(known)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PipelineContext:
    """Run-level inputs pipelines may read: the graded prompt template, decoding,
    the top-k of the Always row, and a seed."""

    template: Any
    greedy: GreedyConfig
    top_k: int
    seed: int


QuestionRun = Generator["Request | list[Request]", Any, Outcome]


class Pipeline(ABC):
    """An adaptive-retrieval method; subclasses register with :func:`register_pipeline`.

    Attributes
    ----------
    name : str
        Registry key and result-row name.
    study_name : str or None
        The method's name in the reference study.
    Settings : type
        The settings dataclass; ``settings`` is an instance.
    """

    name: ClassVar[str]
    study_name: ClassVar[str | None] = None
    Settings: ClassVar[type[PipelineSettings]] = PipelineSettings
    #: Model roles the method calls besides MAIN.
    models: ClassVar[tuple[str, ...]] = (MAIN,)

    def __init__(self, context: PipelineContext, settings: PipelineSettings | None = None
                 ) -> None:
        self.context = context
        self.settings = settings if settings is not None else self.Settings()

    def prepare(self, train: Sequence[Question], services) -> dict | None:
        """Fit on train questions before test (Adaptive-RAG's router); returns a
        JSON-able state to save, or None. The default needs no training."""
        return None

    @abstractmethod
    def run(self, question: Question) -> QuestionRun:
        """Answer one question, yielding requests for the driver."""


PIPELINES: dict[str, type[Pipeline]] = {}


def register_pipeline(cls: type[Pipeline]) -> type[Pipeline]:
    """Class decorator: makes ``cls`` selectable by ``cls.name``."""
    if cls.name in PIPELINES:
        raise ValueError(f"pipeline {cls.name!r} is already registered")
    PIPELINES[cls.name] = cls
    return cls


def create_pipeline(name: str, context: PipelineContext, overrides: dict | None = None
                    ) -> Pipeline:
    """The registered pipeline ``name`` with optional setting overrides."""
    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r}; registered: {sorted(PIPELINES)}")
    cls = PIPELINES[name]
    settings = cls.Settings().updated(overrides or {})
    return cls(context, settings)


@dataclass(frozen=True)
class Trace:
    """A pipeline's outcome for one question together with what it cost."""

    question_id: str
    outcome: Outcome
    cost: Any

    def to_dict(self) -> dict:
        return {"id": self.question_id, **self.outcome.to_dict(), "cost": self.cost.to_dict()}
