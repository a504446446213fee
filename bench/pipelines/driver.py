"""Advance every question's pipeline coroutine in lockstep, batching equal requests.

Each round collects the pending request of every unfinished question, groups
them by kind and decoding configuration, serves each group with one call to
the cached stores, and sends each question its result. Generations and
retrievals are content-cached, so an interrupted run resumes where it
stopped and a rerun makes no LM call.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from tqdm import tqdm

from bench.cache import Record
from bench.data.schema import Question
from bench.ledger import Cost
from bench.pipelines.base import (
    MAIN,
    Attend,
    Attention,
    Generate,
    Judge,
    Outcome,
    Pipeline,
    Retrieve,
    Sample,
    Trace,
)
from bench.stores import GenerationStore, RetrievalStore
from retrievers.base import Corpus

if TYPE_CHECKING:
    from bench.judges import Judge as PairJudge


class PipelineError(RuntimeError):
    """A pipeline yielded something the driver cannot serve."""


@dataclass
class Services:
    """What the driver serves requests with.

    Attributes
    ----------
    stores : dict of str to GenerationStore
        One store per model role (``main``; ``verifier`` for Rowen-CM).
    retrieval : RetrievalStore
    corpus : Corpus
    judge : callable
        Returns the run's :class:`bench.judges.Judge` (built on first use).
    seed : int
        Base seed of every sample request.
    progress : bool
    """

    stores: dict[str, GenerationStore]
    retrieval: RetrievalStore
    corpus: Corpus
    judge: Callable[[], PairJudge]
    seed: int = 0
    progress: bool = True

    def store(self, role: str) -> GenerationStore:
        if role not in self.stores:
            raise PipelineError(f"no model configured for role {role!r} "
                                f"(have {sorted(self.stores)})")
        return self.stores[role]


def drive(pipeline: Pipeline, questions: Sequence[Question], services: Services,
          desc: str) -> list[Trace]:
    """Run ``pipeline`` on every question; one :class:`Trace` per question, in order."""
    runs = [pipeline.run(q) for q in questions]
    costs = [Cost() for _ in questions]
    outcomes: list[Outcome | None] = [None] * len(questions)
    pending: dict[int, object] = {}
    for i, run in enumerate(runs):
        _advance(i, run, None, pending, outcomes, first=True)
    bar = tqdm(total=len(questions), desc=f"{desc} {pipeline.name}", unit="q",
               disable=not services.progress, dynamic_ncols=True)
    bar.update(len(questions) - len(pending))
    while pending:
        flat: list[tuple[int, int, object]] = []
        for i, request in pending.items():
            items = request if isinstance(request, list) else [request]
            flat += [(i, j, r) for j, r in enumerate(items)]
        answers: dict[tuple[int, int], object] = {}
        groups: dict[tuple, list[tuple[int, int, object]]] = defaultdict(list)
        for item in flat:
            groups[_group_key(item[2])].append(item)
        for key in sorted(groups, key=repr):
            members = groups[key]
            results = _serve([r for _, _, r in members], services, f"{desc} {pipeline.name}")
            for (i, j, _), (value, cost) in zip(members, results):
                answers[(i, j)] = value
                costs[i] = costs[i] + cost
        before = len(pending)
        for i, request in list(pending.items()):
            reply: object
            if isinstance(request, list):
                reply = [answers[(i, j)] for j in range(len(request))]
            else:
                reply = answers[(i, 0)]
            _advance(i, runs[i], reply, pending, outcomes)
        bar.update(before - len(pending))
    bar.close()
    # The loop ends when no run is pending, so every outcome is set.
    return [Trace(q.id, cast(Outcome, outcome), cost)
            for q, outcome, cost in zip(questions, outcomes, costs)]


def _advance(i: int, run, reply, pending: dict, outcomes: list, first: bool = False) -> None:
    try:
        request = next(run) if first else run.send(reply)
    except StopIteration as stop:
        if not isinstance(stop.value, Outcome):
            raise PipelineError(f"pipeline returned {type(stop.value).__name__}, "
                                "expected Outcome") from None
        outcomes[i] = stop.value
        pending.pop(i, None)
        return
    if isinstance(request, list) and not request:
        raise PipelineError("pipeline yielded an empty request list")
    pending[i] = request


def _group_key(request) -> tuple:
    if isinstance(request, (Generate, Sample)):
        return (type(request).__name__, request.model, request.config)
    if isinstance(request, Retrieve):
        return ("Retrieve", request.k)
    if isinstance(request, (Attend, Judge)):
        return (type(request).__name__,)
    raise PipelineError(f"pipeline yielded {request!r}, which is not a request")


def _serve(requests: list, services: Services, desc: str) -> list[tuple[Any, Cost]]:
    first = requests[0]
    if isinstance(first, Generate):
        store = services.store(first.model)
        return store.greedy([r.messages for r in requests], first.config, desc)
    if isinstance(first, Sample):
        store = services.store(first.model)
        return store.samples([r.messages for r in requests], first.config, services.seed,
                             desc)
    if isinstance(first, Retrieve):
        hits = services.retrieval.search([r.query for r in requests], first.k)
        return [([services.corpus.get(h.passage_id) for h in hs], Cost(retrieval_calls=1))
                for hs in hits]
    if isinstance(first, Attend):
        return _attention(services.store(MAIN), [r.text for r in requests], desc)
    if isinstance(first, Judge):
        pairs = [p for r in requests for p in r.pairs]
        similarity = services.judge().compare(pairs)[:, 2] if pairs else np.zeros(0)
        out, start = [], 0
        for r in requests:
            out.append((np.asarray(similarity[start:start + len(r.pairs)], dtype=np.float64),
                        Cost(aux_calls=len(r.pairs))))
            start += len(r.pairs)
        return out
    raise PipelineError(f"cannot serve {first!r}")


def _attention(store: GenerationStore, texts: list[str], desc: str
               ) -> list[tuple[Attention, Cost]]:
    from bench.models.passes import last_layer_attention

    def compute(chunk: list[int]) -> list[Record]:
        backend = store.backend
        ids = [backend.tokenizer(texts[i], add_special_tokens=False)["input_ids"]
               for i in chunk]
        maps = last_layer_attention(backend, ids)
        return [Record({"tokens": backend.token_texts(row),
                        "cost": Cost(forward_passes=1, prompt_tokens=len(row)).to_dict()},
                       {"weights": m}) for row, m in zip(ids, maps)]

    records = store.cached("pipeline_attention", [{"text": t} for t in texts],
                           [len(t) for t in texts], compute, 8, f"{desc} attention")
    return [(Attention(tuple(r.meta["tokens"]), r.arrays["weights"]),
             Cost.from_dict(r.meta["cost"])) for r in records]
