"""The lockstep driver: batching across questions, per-question costs, caching,
and the pipeline result row."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from bench.cache import Cache
from bench.ledger import Cost
from bench.metrics import self_knowledge
from bench.models.hf_backend import CONTINUATION, GreedyConfig
from bench.pipelines.base import (
    Generate,
    Judge,
    Outcome,
    Pipeline,
    PipelineSettings,
    Retrieve,
    Trace,
)
from bench.pipelines.driver import PipelineError, Services, drive
from bench.pipelines.evaluate import pipeline_row
from bench.stores import GenerationStore, RetrievalStore
from retrievers.base import Corpus, Hit, Passage, Retriever
from tests.pipeline_harness import context, question
from tests.scripted import ScriptedBackend


class EchoRetriever(Retriever):
    """Returns passages p0..p(k-1) for any query; counts queries."""

    name = "echo"

    def __init__(self):
        self.queries: list[str] = []

    def fingerprint(self) -> str:
        return "echo"

    def search(self, queries, k):
        self.queries.extend(queries)
        return [[Hit(f"p{i}", 1.0 - i / 10) for i in range(k)] for _ in queries]


class FixedJudge:
    def compare(self, pairs):
        return np.array([[0, 0, 1.0 if a == b else 0.25] for a, b in pairs])


@dataclass(frozen=True)
class ToySettings(PipelineSettings):
    k: int = 2


class Toy(Pipeline):
    """Answer; retrieve twice (as one list) when the answer is 'olleh'; judge."""

    name = "toy"
    Settings = ToySettings

    def run(self, q):
        first = yield Generate((("user", q.question),), GreedyConfig())
        retrieve = first.text == "olleh"
        queries: tuple[str, ...] = ()
        if retrieve:
            queries = (q.question, first.text)
            passages = yield [Retrieve(query, self.settings.k) for query in queries]
            assert [p.id for p in passages[0]] == ["p0", "p1"]
            again = yield Generate((("user", q.question), (CONTINUATION, "so")),
                                   GreedyConfig())
            first = again
        similarity = yield Judge(((first.text, first.text), (first.text, "x")))
        return Outcome(first.text, retrieve, float(1 - similarity.mean()), queries, 1)


def _services(tmp_path, backend):
    cache = Cache(tmp_path)
    store = GenerationStore(cache, "m", lambda: backend, batch_size=8, progress=False)
    corpus = Corpus.from_rows([Passage(f"p{i}", f"T{i}", f"text {i}") for i in range(3)], "t")
    retriever = EchoRetriever()
    services = Services({"main": store}, RetrievalStore(cache, retriever), corpus,
                        lambda: FixedJudge(), progress=False)
    return services, retriever


def test_drive_batches_each_round_and_charges_each_question(tmp_path):
    backend = ScriptedBackend()
    services, retriever = _services(tmp_path, backend)
    questions = [question("hello", qid="a"), question("bye", qid="b"),
                 question("hello", qid="c")]
    traces = drive(Toy(context()), questions, services, "demo")
    # Round 1: one greedy batch for all three questions (two distinct prompts, shortest
    # first; the duplicate shares one computation); round 3: the continuation.
    assert backend.prompts_seen == ["bye", "hello", "hello|so"]
    assert retriever.queries == ["hello", "olleh"]  # a and c share cached queries
    assert [t.outcome.answer for t in traces] == ["os", "eyb", "os"]
    assert [t.outcome.queries for t in traces] == [("hello", "olleh"), (), ("hello", "olleh")]
    a, b = traces[0].cost, traces[1].cost
    assert (a.generate_calls, a.prefills, a.retrieval_calls, a.aux_calls) == (2, 2, 2, 2)
    assert (b.generate_calls, b.prefills, b.retrieval_calls, b.aux_calls) == (1, 1, 0, 2)
    # Judge similarities (1, 0.25) → trigger 1 - 0.625.
    assert traces[1].outcome.trigger_score == pytest.approx(0.375)


def test_rerun_is_served_from_the_cache_with_identical_costs(tmp_path):
    backend = ScriptedBackend()
    services, _ = _services(tmp_path, backend)
    questions = [question("hello", qid="a"), question("bye", qid="b")]
    first = drive(Toy(context()), questions, services, "demo")
    again_backend = ScriptedBackend()
    services2, retriever2 = _services(tmp_path, again_backend)
    second = drive(Toy(context()), questions, services2, "demo")
    assert again_backend.prompts_seen == [] and retriever2.queries == []
    strip = [Cost.from_dict({**t.cost.to_dict(), "seconds": 0}) for t in first]
    assert [Cost.from_dict({**t.cost.to_dict(), "seconds": 0}) for t in second] == strip


def test_a_pipeline_yielding_a_non_request_fails_loudly(tmp_path):
    class Broken(Pipeline):
        name = "broken"

        def run(self, q):
            yield "generate please"
            return Outcome("x")

    services, _ = _services(tmp_path, ScriptedBackend())
    with pytest.raises(PipelineError, match="not a request"):
        drive(Broken(context()), [question("q")], services, "demo")


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match="no setting"):
        ToySettings().updated({"top": 3})


def test_pipeline_row_by_hand():
    golds = [("paris",), ("1945",), ("tokyo",), ("rome",)]
    outcomes = [Outcome("Paris", True, 0.9), Outcome("1944", True, 0.8),
                Outcome("Tokyo", False, 0.1), Outcome("it is Rome", False, 0.2)]
    costs = [Cost(generate_calls=3, prefills=2, retrieval_calls=2),
             Cost(generate_calls=1, prefills=1, retrieval_calls=1),
             Cost(generate_calls=1, prefills=1), Cost(generate_calls=1, prefills=1)]
    traces = [Trace(str(i), o, c) for i, (o, c) in enumerate(zip(outcomes, costs))]
    need = np.array([1, 1, 0, 1])
    row = pipeline_row(traces, golds, need)
    assert row["in_accuracy"] == pytest.approx(0.75)  # "it is Rome" contains the gold
    assert row["em"] == pytest.approx(0.5)
    assert row["rc"] == pytest.approx(0.75)  # (2 + 1 + 0 + 0) / 4
    assert row["lmc"] == pytest.approx(1.25)  # prefills (2 + 1 + 1 + 1) / 4
    assert row["generate_calls"] == pytest.approx(1.5)
    # decisions (1, 1, 0, 0) vs need (1, 1, 0, 1): accuracy 3/4, over-confidence 1/4.
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["over_confidence"] == pytest.approx(0.25)
    # scores (.9, .8, .1, .2) rank the need-0 question lowest → AUC 1.
    assert row["roc_auc"] == pytest.approx(1.0)
    assert row == {**row, **self_knowledge(need, np.array([1, 1, 0, 0]),
                                           np.array([.9, .8, .1, .2]))}
    assert row["kind"] == "pipeline"


def test_pipeline_row_without_a_first_decision_has_no_self_knowledge():
    traces = [Trace("0", Outcome("a", None, None), Cost(retrieval_calls=3, prefills=4))]
    row = pipeline_row(traces, [("a",)], np.array([1]))
    assert "roc_auc" not in row and row["rc"] == 3 and row["lmc"] == 4
