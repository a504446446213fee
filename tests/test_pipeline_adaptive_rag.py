"""Adaptive-RAG: silver labels, the router fit, routing and each branch's requests."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bench.cache import Cache
from bench.data.schema import Question
from bench.pipelines import PIPELINES
from bench.pipelines.adaptive_rag import (
    AdaptiveRAG,
    Router,
    fit_router,
    silver_label,
)
from bench.pipelines.base import Generate, Retrieve
from bench.pipelines.driver import Services, drive
from bench.pipelines.text import COT_SYSTEM, cot_messages
from bench.stores import GenerationStore, RetrievalStore
from retrievers.base import Corpus, Hit, Passage, Retriever
from tests.pipeline_harness import context, generation, passage, script
from tests.scripted import ScriptedBackend

# Question text → one-hot embedding; the hand-set router below maps axis i to STRATEGIES[i].
AXES = {"alpha?": 0, "beta?": 1, "gamma?": 2}


def one_hot(texts):
    out = np.zeros((len(texts), 3))
    for row, text in enumerate(texts):
        out[row, AXES[text]] = 1.0
    return out


def q(qid: str, text: str, gold: str, dataset: str = "nq") -> Question:
    return Question(qid, text, (gold,), dataset, "train")


HAND_ROUTER = Router(("A", "B", "C"), 10.0 * np.eye(3), np.zeros(3))


def routed(**settings) -> AdaptiveRAG:
    pipeline = AdaptiveRAG(context(), AdaptiveRAG.Settings(**settings), embed=one_hot)
    pipeline.router = HAND_ROUTER
    return pipeline


def respond(request):
    if isinstance(request, Retrieve):
        return [passage(f"{request.query}-{i}", "t") for i in range(request.k)]
    if request.messages[0] == ("system", COT_SYSTEM):
        return generation("So the answer is: y.")
    return generation("answer")


def test_registered():
    assert PIPELINES["adaptive_rag"] is AdaptiveRAG
    assert AdaptiveRAG.study_name == "AdaptiveRAG"
    assert AdaptiveRAG.Settings().single_top_k is None


@pytest.mark.parametrize("answers, dataset, expected", [
    ({"A": "it is gold"}, "nq", ("A", "silver")),
    ({"A": "no", "B": "gold"}, "hotpotqa", ("B", "silver")),
    ({"A": "no", "B": "no", "C": "Gold."}, "nq", ("C", "silver")),
    ({"A": "gold", "B": "no", "C": "gold"}, "musique", ("A", "silver")),
    ({"A": "no", "B": "no", "C": "no"}, "nq", ("B", "inductive")),
    ({"A": "no", "B": "no", "C": "no"}, "squad", ("B", "inductive")),
    ({"A": "no", "B": "no", "C": "no"}, "hotpotqa", ("C", "inductive")),
    ({"A": "no", "B": "no", "C": "no"}, "2wikimultihopqa", ("C", "inductive")),
    ({"A": "no", "B": "no", "C": "no"}, "musique", ("C", "inductive")),
])
def test_silver_label_rule(answers, dataset, expected):
    assert silver_label(q("x", "?", "gold", dataset), answers) == expected


def test_no_retrieval_branch():
    pipeline = routed()
    outcome, log = script(pipeline, q("1", "alpha?", "x"), respond)
    assert log == [Generate(pipeline.context.template.closed("alpha?"), pipeline.context.greedy)]
    assert outcome.answer == "answer" and outcome.queries == () and outcome.steps == 0
    assert outcome.retrieve_first is False
    # P(A) = e^10 / (e^10 + 2) for the one-hot embedding of axis A.
    assert outcome.trigger_score == pytest.approx(2 / (np.exp(10) + 2), rel=1e-12)


@pytest.mark.parametrize("settings, k", [({}, 5), ({"single_top_k": 15}, 15)])
def test_single_step_branch(settings, k):
    pipeline = routed(**settings)
    outcome, log = script(pipeline, q("1", "beta?", "x"), respond)
    retrieved = [passage(f"beta?-{i}", "t") for i in range(k)]
    assert log == [Retrieve("beta?", k),
                   Generate(pipeline.context.template.augmented("beta?", retrieved),
                            pipeline.context.greedy)]
    assert outcome.queries == ("beta?",) and outcome.steps == 1
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(1 - 1 / (np.exp(10) + 2), rel=1e-12)


def test_multi_step_branch_is_ircot():
    pipeline = routed(ircot_max_steps=2)
    ctx = pipeline.context
    first = [passage(f"gamma?-{i}", "t") for i in range(6)]
    second = [passage(f"Gamma fact.-{i}", "t") for i in range(6)]

    def ircot_respond(request):
        if isinstance(request, Generate) and request.messages[0] == ("system", COT_SYSTEM):
            return generation("Gamma fact. More.")
        return respond(request)

    outcome, log = script(pipeline, q("1", "gamma?", "x"), ircot_respond)
    collected = first + second[:9]
    assert log == [Retrieve("gamma?", 6),
                   Generate(cot_messages("gamma?", first, ""), ctx.greedy),
                   Retrieve("Gamma fact.", 6),
                   Generate(cot_messages("gamma?", collected, "Gamma fact."), ctx.greedy),
                   Generate(ctx.template.augmented("gamma?", collected), ctx.greedy)]
    assert outcome.queries == ("gamma?", "Gamma fact.") and outcome.steps == 2
    assert outcome.retrieve_first is True


def test_run_needs_router():
    pipeline = AdaptiveRAG(context(), embed=one_hot)
    with pytest.raises(RuntimeError, match="prepare"):
        script(pipeline, q("1", "alpha?", "x"), respond)


def clusters(n_per: int = 12, seed: int = 3):
    rng = np.random.default_rng(seed)
    centres = np.eye(3) * 2.0
    x = np.concatenate([c + 0.3 * rng.standard_normal((n_per, 3)) for c in centres])
    labels = [s for s in "ABC" for _ in range(n_per)]
    return x, labels


def test_fit_router_selects_c_on_seeded_dev_part_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    x, labels = clusters()
    grid = (0.001, 1.0, 100.0)
    router, report = fit_router(x, labels, seed=7, dev_fraction=0.25, c_grid=grid)
    order = np.random.default_rng(7).permutation(36)
    dev, fit = order[:9], order[9:]
    assert (report["n_fit"], report["n_dev"]) == (27, 9)
    accuracies = []
    for c in grid:
        model = LogisticRegression(C=c, max_iter=5000).fit(x[fit], np.array(labels)[fit])
        accuracies.append(float(np.mean(model.predict(x[dev]) == np.array(labels)[dev])))
    assert report["dev_accuracy"] == {str(c): a for c, a in zip(grid, accuracies)}
    assert report["C"] == grid[int(np.argmax(accuracies))]
    model = LogisticRegression(C=report["C"], max_iter=5000).fit(x[fit], np.array(labels)[fit])
    for point in (x[0], x[15], x[30]):
        probs = router.probabilities(point)
        assert [probs[s] for s in "ABC"] == pytest.approx(model.predict_proba([point])[0])
    assert [router.route(np.eye(3)[i] * 2)[0] for i in range(3)] == ["A", "B", "C"]
    assert Router.from_dict(json.loads(json.dumps(router.to_dict()))).probabilities(x[3]) == \
        pytest.approx(router.probabilities(x[3]))


def test_fit_router_binary_and_constant_cases():
    from sklearn.linear_model import LogisticRegression

    x, labels = clusters()
    keep = [i for i, s in enumerate(labels) if s != "A"]
    router, report = fit_router(x[keep], [labels[i] for i in keep], 0, 0.25, (1.0,))
    assert router.classes == ("B", "C") and report["C"] == 1.0
    order = np.random.default_rng(0).permutation(24)[6:]
    model = LogisticRegression(C=1.0, max_iter=5000).fit(
        x[keep][order], np.array([labels[i] for i in keep])[order])
    probs = router.probabilities(x[keep][0])
    assert (probs["A"], [probs["B"], probs["C"]]) == (0.0, pytest.approx(
        model.predict_proba([x[keep][0]])[0]))
    assert router.route(x[keep][0])[1] == 1.0  # no A label: always needs retrieval

    constant, report = fit_router(x[:5], ["C"] * 5, 0, 0.2, (1.0,))
    assert constant.classes == ("C",) and report["C"] is None
    assert constant.route(x[0]) == ("C", 1.0)
    constant, _ = fit_router(x[:4], ["A", "A", "C", "C"], 0, 0.0, (1.0,))
    assert constant.route(x[0]) == ("A", 0.0)  # no dev part: majority, ties to simpler


class TopicRetriever(Retriever):
    """A question "topic?" finds "topic-1"; any other query about topic finds "topic-2"."""

    name = "topic"

    def fingerprint(self) -> str:
        return "topic-retriever"

    def search(self, queries, k):
        return [[Hit(f"{_topic(query)}-{1 if query.endswith('?') else 2}", 1.0)]
                for query in queries]


def _topic(text: str) -> str:
    return text.split()[0].strip("?.").lower()


def scripted_answer(prompt: str) -> str:
    """Closed book knows alpha; one passage answers beta; gamma needs the second hop."""
    if prompt.startswith(COT_SYSTEM):
        if "Question:" in prompt.split("|")[-1]:
            topic = re.findall(r"Question: (\w+)\?", prompt)[-1]
            return f"{topic.capitalize()} bridge. Next."
        return "So the answer is: no idea."
    if "Use the passages below" not in prompt:
        return "alpha answer" if "alpha?" in prompt else "no idea"
    if "beta?" in prompt or ("gamma?" in prompt and "more on gamma" in prompt):
        return re.findall(r"Question: (\w+)", prompt)[-1] + " answer"
    return "no idea"


@pytest.fixture
def services(tmp_path):
    topics = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
    rows = [Passage(f"{t}-{i}", t, f"{'about' if i == 1 else 'more on'} {t}")
            for t in topics for i in (1, 2)]
    corpus = Corpus.from_rows(rows, "topics")
    backend = ScriptedBackend(scripted_answer)
    cache = Cache(tmp_path)
    store = GenerationStore(cache, "scripted", lambda: backend, progress=False)
    retrieval = RetrievalStore(cache, TopicRetriever(corpus))
    yield Services({"main": store}, retrieval, corpus, judge=lambda: None, progress=False), backend
    cache.close()


def test_prepare_labels_train_runs_only_needed_strategies_and_routes(services):
    services, backend = services
    train = [q("qa", "alpha?", "alpha answer"), q("qb", "beta?", "beta answer"),
             q("qc", "gamma?", "gamma answer", "hotpotqa"), q("qd", "delta?", "delta answer"),
             q("qe", "epsilon?", "epsilon answer", "musique")]
    embedded = []
    pipeline = AdaptiveRAG(context(), AdaptiveRAG.Settings(dev_fraction=0.0),
                           embed=lambda texts: embedded.append(list(texts)) or np.eye(5)[
                               :len(texts)])
    state = pipeline.prepare(train, services)
    json.dumps(state)
    assert state["labels"] == {"qa": "A", "qb": "B", "qc": "C", "qd": "B", "qe": "C"}
    assert state["label_counts"] == {"A": 1, "B": 2, "C": 2}
    assert state["label_sources"] == {"silver": 3, "inductive": 2}
    assert embedded == [[t.question for t in train]]
    # A on 5; B on the 4 A missed; C (2 CoT steps + reader) on the 3 both missed.
    assert backend.counter.generate_calls == 5 + 4 + 3 * 3
    assert services.retrieval.queries == 4 + 3 * 2
    # No dev part: every question goes to the majority label (B ties C, simpler wins).
    assert state["router"] == {"classes": ["B"], "coef": None, "intercept": None}

    test = [Question("t1", "zeta?", ("about zeta",), "nq", "test")]
    traces = drive(pipeline, test, services, "test")
    assert traces[0].outcome.queries == ("zeta?",)
    assert (traces[0].outcome.retrieve_first, traces[0].outcome.trigger_score) == (True, 1.0)
    assert traces[0].cost.retrieval_calls == 1 and traces[0].cost.prefills == 1

    restored = AdaptiveRAG(context(), embed=one_hot)
    restored.restore(state)
    assert restored.router == pipeline.router
