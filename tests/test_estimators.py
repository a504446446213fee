"""Tests for the estimators: every expected value is worked out by hand.

The fixtures build :class:`Generation` objects from small explicit next-token
distributions (vocabulary V = 4 unless stated). ``make_generation`` derives the
fields the backend records from those probabilities with numpy, exactly as the
backend would; the assertions, however, compare against numbers computed by
hand in the comment next to them, never against the same formula re-applied.

Constants used in the hand computations (natural logs):

    ln 2   = 0.693147180560    ln 0.7 = -0.356674943939
    ln 4   = 1.386294361120    ln 0.5 = -0.693147180560
    ln 10  = 2.302585092994    ln 0.25 = -1.386294361120
    ln 0.1 = -2.302585092994   ln 0.125 = -3 ln 2 = -2.079441541680
"""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

import estimators  # noqa: F401  (registers the built-in estimators)
from bench.models.outputs import Generation, SampleSet
from estimators import base
from estimators.base import (
    GREEDY,
    SAMPLES,
    Estimator,
    EstimatorOptions,
    StatBundle,
    Statistic,
    create,
    register,
)
from estimators.lexical_similarity import lcs_length, rouge_l_f1, rouge_tokens
from tests.builders import generation_from_logits

TOL = 1e-6  # the backend stores float32; its rounding error is ~1e-7 here

LOGIT_ESTIMATORS = ("perplexity", "maximum_sequence_probability", "mean_token_entropy",
                    "max_token_entropy", "self_certainty")
CONSISTENCY_ESTIMATORS = ("lexical_similarity", "self_consistency")
BUILT_IN = LOGIT_ESTIMATORS + CONSISTENCY_ESTIMATORS

INCLUDE = EstimatorOptions(include_stop_token=True)
EXCLUDE = EstimatorOptions(include_stop_token=False)


# --------------------------------------------------------------------------- helpers
def make_generation(dists, chosen=None, *, stop_reason="eos", text="answer",
                    k=2) -> Generation:
    """A Generation whose per-step fields derive from explicit distributions.

    ``dists`` is (n, V): row t is p_t. ``chosen`` are the emitted token ids
    (default: the greedy argmax). The logits are taken to be log p, so the
    logsumexp is log sum p = 0. Zero probabilities contribute 0 to the entropy
    (0 log 0 = 0) and -inf to the mean log-probability.
    """
    p = np.asarray(dists, dtype=np.float64)
    assert np.allclose(p.sum(axis=1), 1.0)
    with np.errstate(divide="ignore"):
        return generation_from_logits(np.log(p), chosen, stop_reason=stop_reason, text=text,
                                      k=k)


def greedy_bundle(generation: Generation, qid: str = "q1") -> StatBundle:
    return StatBundle(qid, {GREEDY: generation})


def text_generation(text: str) -> Generation:
    """A one-step sample whose only content that matters is its text."""
    return make_generation([[0.25] * 4], text=text)


def samples_bundle(texts, qid: str = "q1") -> StatBundle:
    sample_set = SampleSet(tuple(text_generation(t) for t in texts), temperature=1.0, top_k=50)
    return StatBundle(qid, {SAMPLES: sample_set})


def score(name: str, bundle: StatBundle, options: EstimatorOptions = INCLUDE) -> float:
    value = create(name, options).score(bundle)
    assert isinstance(value, float)
    return value


# The main fixture: three steps over V = 4, the last one emitted EOS.
#   step 1: p = [0.7, 0.1, 0.1, 0.1]        chosen token 0 (p = 0.7)
#   step 2: p = [0.5, 0.25, 0.125, 0.125]   chosen token 0 (p = 0.5)
#   step 3: p = [0.25, 0.25, 0.25, 0.25]    chosen token 3 (p = 0.25), the EOS step
# The stop step is the flattest one so that dropping it changes every aggregate,
# the max entropy included.
THREE_STEPS = [[0.7, 0.1, 0.1, 0.1],
               [0.5, 0.25, 0.125, 0.125],
               [0.25, 0.25, 0.25, 0.25]]
THREE_CHOSEN = [0, 0, 3]


@pytest.fixture(params=["eos", "newline"])
def stopped(request) -> Generation:
    return make_generation(THREE_STEPS, THREE_CHOSEN, stop_reason=request.param)


@pytest.fixture
def truncated() -> Generation:
    return make_generation(THREE_STEPS, THREE_CHOSEN, stop_reason="length")


# --------------------------------------------------------------------------- fixture sanity
def test_fixture_fields_match_hand_values(stopped):
    g = stopped
    # log p_t(y_t) = ln 0.7, ln 0.5, ln 0.25
    np.testing.assert_allclose(g.token_logprobs, [-0.356674944, -0.693147181, -1.386294361],
                               atol=TOL)
    # H_1 = -(0.7 ln 0.7 + 3 * 0.1 ln 0.1) = 0.249672461 + 0.690775528 = 0.940447989
    # H_2 = 0.5 ln 2 + 0.25 * 2 ln 2 + 2 * 0.125 * 3 ln 2 = 1.75 ln 2 = 1.213007566
    # H_3 = ln 4 = 1.386294361
    np.testing.assert_allclose(g.entropies, [0.940447989, 1.213007566, 1.386294361], atol=TOL)
    # mean_v log p_t(v):
    #   step 1: (ln 0.7 + 3 ln 0.1)/4 = (-0.356674944 - 6.907755279)/4 = -1.816107556
    #   step 2: (-1 - 2 - 3 - 3) ln 2 / 4 = -2.25 ln 2 = -1.559581156
    #   step 3: ln 0.25 = -1.386294361
    np.testing.assert_allclose(g.mean_logprobs, [-1.816107556, -1.559581156, -1.386294361],
                               atol=TOL)
    np.testing.assert_allclose(g.logsumexp, [0.0, 0.0, 0.0], atol=TOL)
    # top-2 ids: step 1 -> 0 then 1 (ties broken by index), step 2 -> 0, 1; step 3 -> 0, 1
    np.testing.assert_array_equal(g.topk_ids, [[0, 1], [0, 1], [0, 1]])
    np.testing.assert_allclose(g.topk_logprobs, [[-0.356674944, -2.302585093],
                                                 [-0.693147181, -1.386294361],
                                                 [-1.386294361, -1.386294361]], atol=TOL)
    assert g.n_tokens == 3 and g.vocab_size == 4


# --------------------------------------------------------------------------- sequence probability
def test_perplexity_includes_stop_step(stopped):
    # U = -(ln 0.7 + ln 0.5 + ln 0.25)/3 = (0.356674944 + 0.693147181 + 1.386294361)/3
    #   = 2.436116486 / 3 = 0.812038829
    assert score("perplexity", greedy_bundle(stopped), INCLUDE) == pytest.approx(
        0.812038829, abs=TOL)


def test_perplexity_excludes_stop_step(stopped):
    # EOS/newline step dropped: U = -(ln 0.7 + ln 0.5)/2 = 1.049822124 / 2 = 0.524911062
    assert score("perplexity", greedy_bundle(stopped), EXCLUDE) == pytest.approx(
        0.524911062, abs=TOL)


def test_perplexity_length_stop_keeps_last_step(truncated):
    # stop_reason "length": the last step emitted a content token, so nothing is
    # dropped under either policy: U = 2.436116486 / 3 = 0.812038829
    for options in (INCLUDE, EXCLUDE):
        assert score("perplexity", greedy_bundle(truncated), options) == pytest.approx(
            0.812038829, abs=TOL)


def test_single_step_is_never_dropped():
    # One step, p = [0.5, 0.5, 0, 0], EOS emitted at once (token 0, p = 0.5).
    # Dropping it would leave nothing, so it is kept: U = -ln 0.5 = ln 2 = 0.693147181
    # and H = -(0.5 ln 0.5 + 0.5 ln 0.5 + 0 + 0) = ln 2 = 0.693147181.
    g = make_generation([[0.5, 0.5, 0.0, 0.0]], [0], stop_reason="eos")
    for options in (INCLUDE, EXCLUDE):
        assert score("perplexity", greedy_bundle(g), options) == pytest.approx(
            0.693147181, abs=TOL)
        assert score("max_token_entropy", greedy_bundle(g), options) == pytest.approx(
            0.693147181, abs=TOL)
        assert score("mean_token_entropy", greedy_bundle(g), options) == pytest.approx(
            0.693147181, abs=TOL)


def test_maximum_sequence_probability(stopped, truncated):
    # include: U = -(ln 0.7 + ln 0.5 + ln 0.25) = 2.436116486
    # exclude: U = -(ln 0.7 + ln 0.5) = 1.049822124
    assert score("maximum_sequence_probability", greedy_bundle(stopped), INCLUDE) == \
        pytest.approx(2.436116486, abs=TOL)
    assert score("maximum_sequence_probability", greedy_bundle(stopped), EXCLUDE) == \
        pytest.approx(1.049822124, abs=TOL)
    assert score("maximum_sequence_probability", greedy_bundle(truncated), EXCLUDE) == \
        pytest.approx(2.436116486, abs=TOL)


# --------------------------------------------------------------------------- token entropy
def test_mean_token_entropy(stopped, truncated):
    # include: (0.940447989 + 1.213007566 + 1.386294361)/3 = 3.539749916/3 = 1.179916639
    # exclude: (0.940447989 + 1.213007566)/2 = 2.153455555/2 = 1.076727777
    assert score("mean_token_entropy", greedy_bundle(stopped), INCLUDE) == pytest.approx(
        1.179916639, abs=TOL)
    assert score("mean_token_entropy", greedy_bundle(stopped), EXCLUDE) == pytest.approx(
        1.076727777, abs=TOL)
    assert score("mean_token_entropy", greedy_bundle(truncated), EXCLUDE) == pytest.approx(
        1.179916639, abs=TOL)


def test_max_token_entropy_include_stop(stopped):
    # max(0.940447989, 1.213007566, 1.386294361) = ln 4 = 1.386294361 (the EOS step)
    assert score("max_token_entropy", greedy_bundle(stopped), INCLUDE) == pytest.approx(
        1.386294361, abs=TOL)


def test_max_token_entropy_exclude_stop(stopped):
    # EOS/newline step dropped: max(0.940447989, 1.213007566) = 1.75 ln 2 = 1.213007566
    assert score("max_token_entropy", greedy_bundle(stopped), EXCLUDE) == pytest.approx(
        1.213007566, abs=TOL)


def test_max_token_entropy_length_stop(truncated):
    # stop_reason "length": nothing dropped, max stays ln 4 = 1.386294361
    assert score("max_token_entropy", greedy_bundle(truncated), EXCLUDE) == pytest.approx(
        1.386294361, abs=TOL)


def test_entropy_with_zero_probabilities():
    # p = [0.5, 0.5, 0, 0]: H = -(2 * 0.5 ln 0.5) - 0 log 0 terms (= 0) = ln 2 = 0.693147181
    # p = [1, 0, 0, 0]:     H = -(1 ln 1) = 0
    g = make_generation([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], stop_reason="length")
    # mean = (0.693147181 + 0)/2 = 0.346573590; max = 0.693147181
    assert score("mean_token_entropy", greedy_bundle(g)) == pytest.approx(0.346573590, abs=TOL)
    assert score("max_token_entropy", greedy_bundle(g)) == pytest.approx(0.693147181, abs=TOL)


# --------------------------------------------------------------------------- self-certainty
def test_self_certainty_uniform_is_zero():
    # p_t = Uniform(4) at every step: U = ln 4 + mean_v ln(1/4) = ln 4 - ln 4 = 0 exactly
    # (the test allows float32 rounding of ln(1/4)).
    g = make_generation([[0.25] * 4] * 3, stop_reason="length")
    assert score("self_certainty", greedy_bundle(g)) == pytest.approx(0.0, abs=TOL)


def test_self_certainty_binary_equals_minus_kl():
    # V = 2, p = [0.9, 0.1]:
    # KL(U || p) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5 ln(5/9) + 0.5 ln 5
    #            = 0.5 ln(25/9) = ln(5/3) = 0.510825624
    # U = ln 2 + (ln 0.9 + ln 0.1)/2 = ln 2 + 0.5 ln 0.09 = ln(2 * 0.3) = ln 0.6 = -ln(5/3)
    g = make_generation([[0.9, 0.1]], stop_reason="length")
    assert score("self_certainty", greedy_bundle(g)) == pytest.approx(-0.510825624, abs=TOL)


def test_self_certainty_one_hot_ish():
    # V = 4, p = [1 - 3e, e, e, e] with e = 1e-3:
    # U = ln 4 + (ln 0.997 + 3 ln 0.001)/4
    #   = 1.386294361 + (-0.003004509 - 20.723265837)/4
    #   = 1.386294361 - 5.181567587 = -3.795273226
    e = 1e-3
    g = make_generation([[1 - 3 * e, e, e, e]], stop_reason="length")
    assert score("self_certainty", greedy_bundle(g)) == pytest.approx(-3.795273226, abs=TOL)


def test_self_certainty_is_minus_mean_kl(stopped):
    # KL(U || p) = sum_v (1/4) ln((1/4) / p(v)) for each step of THREE_STEPS:
    #   step 1: 0.25 ln(0.25/0.7) + 3 * 0.25 ln(0.25/0.1)
    #         = 0.25 * (-1.029619417) + 0.75 * 0.916290732
    #         = -0.257404854 + 0.687218049 = 0.429813195
    #   step 2: 0.25 ln(0.25/0.5) + 0.25 ln(1) + 2 * 0.25 ln(0.25/0.125)
    #         = -0.25 ln 2 + 0 + 0.5 ln 2 = 0.25 ln 2 = 0.173286795
    #   step 3: uniform, KL = 0
    # include: U = -(0.429813195 + 0.173286795 + 0)/3 = -0.603099990/3 = -0.201033330
    # exclude: U = -(0.429813195 + 0.173286795)/2 = -0.301549995
    assert score("self_certainty", greedy_bundle(stopped), INCLUDE) == pytest.approx(
        -0.201033330, abs=TOL)
    assert score("self_certainty", greedy_bundle(stopped), EXCLUDE) == pytest.approx(
        -0.301549995, abs=TOL)


# --------------------------------------------------------------------------- sign (§0.2)
# Peaked: p = [0.97, 0.01, 0.01, 0.01] at three steps (greedy picks 0.97).
#   perplexity = -ln 0.97 = 0.030459      vs flat ln 4 = 1.386294
#   MSP        = -3 ln 0.97 = 0.091378    vs flat 3 ln 4 = 4.158883
#   H          = 0.97 * 0.030459 + 0.03 * 4.605170 = 0.167701  vs flat ln 4
#   self_cert. = ln 4 + (ln 0.97 + 3 ln 0.01)/4 = 1.386294 - 3.461492 = -2.075198  vs flat 0
PEAKED = [[0.97, 0.01, 0.01, 0.01]] * 3
FLAT = [[0.25] * 4] * 3


@pytest.mark.parametrize("name", LOGIT_ESTIMATORS)
@pytest.mark.parametrize("options", [INCLUDE, EXCLUDE], ids=["include", "exclude"])
def test_logit_sign_peaked_below_flat(name, options):
    peaked = score(name, greedy_bundle(make_generation(PEAKED, [0, 0, 0])), options)
    flat = score(name, greedy_bundle(make_generation(FLAT, [0, 0, 0])), options)
    assert peaked < flat


def test_logit_sign_values():
    peaked = greedy_bundle(make_generation(PEAKED, [0, 0, 0], stop_reason="length"))
    flat = greedy_bundle(make_generation(FLAT, [0, 0, 0], stop_reason="length"))
    assert score("perplexity", peaked) == pytest.approx(0.030459207, abs=TOL)
    assert score("perplexity", flat) == pytest.approx(1.386294361, abs=TOL)
    assert score("maximum_sequence_probability", peaked) == pytest.approx(0.091377622, abs=TOL)
    assert score("maximum_sequence_probability", flat) == pytest.approx(4.158883083, abs=TOL)
    assert score("mean_token_entropy", peaked) == pytest.approx(0.167700537, abs=TOL)
    assert score("max_token_entropy", flat) == pytest.approx(1.386294361, abs=TOL)
    assert score("self_certainty", peaked) == pytest.approx(-2.075198080, abs=TOL)


AGREE = ["Paris", "Paris", "Paris", "Paris", "Paris"]
DISAGREE = ["Paris", "Lyon", "London", "Rome", "Berlin"]


@pytest.mark.parametrize("name", CONSISTENCY_ESTIMATORS)
def test_consistency_sign_agree_below_disagree(name):
    # lexical_similarity: -1 (all pairs F1 = 1) vs 0 (all pairs F1 = 0)
    # self_consistency:   1 - 5/5 = 0 vs 1 - 1/5 = 0.8
    assert score(name, samples_bundle(AGREE)) < score(name, samples_bundle(DISAGREE))


# --------------------------------------------------------------------------- ROUGE-L helpers
def test_rouge_tokens_punctuation_and_case():
    # lower-cased runs of letters/digits; punctuation and apostrophes split words
    assert rouge_tokens("The Cat, sat!") == ["the", "cat", "sat"]
    assert rouge_tokens("It's 3.14 -- OK?") == ["it", "s", "3", "14", "ok"]
    assert rouge_tokens("  ...  ") == []
    assert rouge_tokens("") == []


def test_rouge_tokens_unicode_letters():
    assert rouge_tokens("Café Müller, NAÏVE") == ["café", "müller", "naïve"]
    assert rouge_tokens("ΩΜΈΓΑ δέλτα") == ["ωμέγα", "δέλτα"]
    assert rouge_tokens("東京 Tower") == ["東京", "tower"]
    # Decomposed (NFD) letters keep their combining marks inside the word:
    # "mu" + U+0308 + "ller" is one token, not "mu" and "ller".
    assert rouge_tokens("Mu\u0308ller") == ["mu\u0308ller"]
    # Devanagari vowel signs and the virama are marks (\p{M}) even in NFC text:
    # "नमस्ते दुनिया" is two words, not ["नमस", "त", "द", "न", "य"].
    assert rouge_tokens("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    # and a word never matches a fragment of another: LCS 0 -> F1 0
    assert rouge_l_f1("नमस्ते", "नमस") == 0.0


def test_lcs_length():
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["a"], []) == 0
    assert lcs_length(["a", "b"], ["c", "d"]) == 0
    assert lcs_length(["a", "b", "c"], ["a", "b", "c"]) == 3
    # classic example: ABCBDAB vs BDCABA -> one LCS is B C B A, length 4
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length(list("BDCABA"), list("ABCBDAB")) == 4
    # subsequence, not substring: "the cat sat" in "the big cat sat" -> 3
    assert lcs_length(["the", "cat", "sat"], ["the", "big", "cat", "sat"]) == 3


def test_rouge_l_f1():
    # a = [the, cat, sat] (3), b = [the, cat, sat, on, the, mat] (6): LCS = 3
    # P = 3/6 = 0.5, R = 3/3 = 1, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert rouge_l_f1("the cat sat", "The cat sat on the mat.") == pytest.approx(2 / 3)
    assert rouge_l_f1("The cat sat on the mat.", "the cat sat") == pytest.approx(2 / 3)
    # no common token -> 0
    assert rouge_l_f1("the cat sat", "a dog") == 0.0
    # either side without tokens -> 0 (rouge-score's convention), even both empty
    assert rouge_l_f1("", "cat") == 0.0
    assert rouge_l_f1("?!", "") == 0.0
    # same tokens up to case and punctuation -> 1
    assert rouge_l_f1("Paris.", "paris") == pytest.approx(1.0)


# --------------------------------------------------------------------------- lexical similarity
def test_lexical_similarity_three_samples():
    # s1 = "the cat sat"            -> [the, cat, sat]                 (3 tokens)
    # s2 = "The cat sat on the mat." -> [the, cat, sat, on, the, mat]  (6 tokens)
    # s3 = "A cat on a mat"         -> [a, cat, on, a, mat]            (5 tokens)
    # (1,2): LCS = the cat sat = 3;  P = 3/6, R = 3/3 -> F1 = 2(1/2)(1)/(3/2) = 2/3
    # (1,3): LCS = cat = 1;          P = 1/5, R = 1/3 -> F1 = 2(1/15)/(8/15) = 1/4
    # (2,3): LCS = cat on mat = 3;   P = 3/5, R = 3/6 -> F1 = 2(3/10)/(11/10) = 6/11
    # U = -(2/3 + 1/4 + 6/11)/3 = -(88 + 33 + 72)/(132 * 3) = -193/396 = -0.487373737
    texts = ["the cat sat", "The cat sat on the mat.", "A cat on a mat"]
    assert score("lexical_similarity", samples_bundle(texts)) == pytest.approx(-193 / 396)
    assert score("lexical_similarity", samples_bundle(texts)) == pytest.approx(-0.487373737,
                                                                               abs=1e-9)


def test_lexical_similarity_disjoint_pair():
    # "the cat sat" vs "a dog": LCS 0 -> F1 0; with "the cat sat on the mat" as third:
    # U = -(2/3 + 0 + 0)/3 = -2/9
    texts = ["the cat sat", "the cat sat on the mat", "a dog"]
    assert score("lexical_similarity", samples_bundle(texts)) == pytest.approx(-2 / 9)


def test_lexical_similarity_identical_and_single():
    # every pair F1 = 1 -> U = -1
    assert score("lexical_similarity", samples_bundle(["Paris"] * 4)) == pytest.approx(-1.0)
    # no pair -> NaN
    assert math.isnan(score("lexical_similarity", samples_bundle(["Paris"])))
    assert math.isnan(score("lexical_similarity", samples_bundle([])))


# --------------------------------------------------------------------------- self-consistency
def test_self_consistency_normalised_majority():
    # normalize: "Paris" -> "paris", "paris." -> "paris", "The Paris" -> "paris",
    # "Lyon" -> "lyon", "London" -> "london". Majority "paris" has 3 of 5:
    # c = 3/5, U = 1 - 0.6 = 0.4
    texts = ["Paris", "paris.", "The Paris", "Lyon", "London"]
    assert score("self_consistency", samples_bundle(texts)) == pytest.approx(0.4)


def test_self_consistency_all_distinct_and_all_equal():
    # N = 5 distinct: c = 1/5, U = 1 - 1/5 = 0.8; N = 4: U = 0.75
    assert score("self_consistency", samples_bundle(DISAGREE)) == pytest.approx(0.8)
    assert score("self_consistency", samples_bundle(["a1", "b2", "c3", "d4"])) == \
        pytest.approx(0.75)
    assert score("self_consistency", samples_bundle(AGREE)) == pytest.approx(0.0)
    # one sample: c = 1, U = 0; no sample: NaN
    assert score("self_consistency", samples_bundle(["Paris"])) == pytest.approx(0.0)
    assert math.isnan(score("self_consistency", samples_bundle([])))


def test_self_consistency_empty_answers_form_one_class():
    # "", "The" (article deleted) and "?!" (punctuation -> spaces) all normalise to "":
    # classes {"": 3, "paris": 1}: c = 3/4, U = 0.25
    texts = ["", "The", "?!", "Paris"]
    assert score("self_consistency", samples_bundle(texts)) == pytest.approx(0.25)


# --------------------------------------------------------------------------- registry
def test_built_ins_registered():
    for name in BUILT_IN:
        est = create(name)
        assert est.name == name
        assert est.requires and all(isinstance(s, Statistic) for s in est.requires)
        assert est.summary
        assert est.options == EstimatorOptions()
    assert {create(n).family for n in LOGIT_ESTIMATORS} == {"logit"}
    assert {create(n).family for n in CONSISTENCY_ESTIMATORS} == {"consistency"}


def test_create_passes_options():
    est = create("perplexity", EXCLUDE)
    assert est.options.include_stop_token is False
    assert create("perplexity").options.include_stop_token is True


def test_create_unknown_lists_known_names():
    with pytest.raises(KeyError) as err:
        create("no_such_estimator")
    message = str(err.value)
    assert "no_such_estimator" in message
    for name in BUILT_IN:
        assert name in message


@pytest.fixture
def isolated_registry(monkeypatch):
    registry = dict(base.ESTIMATORS)
    monkeypatch.setattr(base, "ESTIMATORS", registry)
    return registry


def test_register_rejects_missing_requires(isolated_registry):
    with pytest.raises(TypeError, match="requires"):
        @register
        class NoRequires(Estimator):
            name = "no_requires"
            family = "logit"

            def score(self, stats):
                return 0.0
    assert "no_requires" not in isolated_registry


@pytest.mark.parametrize("requires", [(), ("greedy",), (GREEDY, "samples")])
def test_register_rejects_bad_requires(isolated_registry, requires):
    with pytest.raises(TypeError, match="Statistic"):
        register(type("BadRequires", (Estimator,), {
            "name": "bad_requires", "family": "logit", "requires": requires,
            "score": lambda self, stats: 0.0}))
    assert "bad_requires" not in isolated_registry


def test_register_rejects_duplicate_name(isolated_registry):
    original = isolated_registry["perplexity"]
    with pytest.raises(ValueError, match="registered twice"):
        @register
        class Impostor(Estimator):
            name = "perplexity"
            family = "logit"
            requires = (GREEDY,)

            def score(self, stats):
                return 0.0
    assert isolated_registry["perplexity"] is original
    # re-registering the same class is a no-op
    assert register(original) is original


def test_register_and_create_new_estimator(isolated_registry):
    @register
    class Constant(Estimator):
        name = "test_constant"
        family = "logit"
        requires = (GREEDY,)

        def score(self, stats):
            return 1.5

    assert create("test_constant").score(greedy_bundle(make_generation(FLAT))) == 1.5


def test_registry_cleanup_left_no_trace():
    # runs after the tests above (file order): the real registry was never touched
    assert "test_constant" not in base.ESTIMATORS
    assert "no_requires" not in base.ESTIMATORS
    assert base.ESTIMATORS["perplexity"].__name__ == "Perplexity"


# --------------------------------------------------------------------------- StatBundle
def test_stat_bundle_rejects_wrong_type():
    with pytest.raises(TypeError, match="greedy"):
        StatBundle("q7", {GREEDY: "not a generation"})
    with pytest.raises(TypeError, match="samples"):
        StatBundle("q7", {SAMPLES: make_generation(FLAT)})


def test_stat_bundle_missing_statistic_names_it():
    bundle = greedy_bundle(make_generation(FLAT), qid="q7")
    assert GREEDY in bundle and SAMPLES not in bundle
    with pytest.raises(KeyError) as err:
        bundle[SAMPLES]
    assert "samples" in str(err.value) and "q7" in str(err.value)
    with pytest.raises(KeyError, match="samples"):
        create("self_consistency").score(bundle)


# --------------------------------------------------------------------------- serialisation
def assert_generation_equal(a: Generation, b: Generation) -> None:
    for field in Generation._SCALARS:
        assert getattr(a, field) == getattr(b, field), field
    for field in ("token_ids", "token_logprobs", "entropies", "mean_logprobs", "logsumexp",
                  "topk_ids", "topk_logprobs", "sampling_logprobs", "hidden_mean",
                  "hidden_last", "layers"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape, field
        np.testing.assert_array_equal(x, y, err_msg=field)


def through_disk(meta: dict, arrays: dict) -> tuple[dict, dict]:
    """JSON for the scalars, a pickle-free .npz for the arrays."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files}
    return json.loads(json.dumps(meta)), loaded


def test_generation_round_trip():
    g = make_generation(THREE_STEPS, THREE_CHOSEN, stop_reason="newline", text="Zürich")
    meta, arrays = g.to_record()
    assert set(meta) == {"text", "token_texts", "stop_reason", "prompt_tokens", "vocab_size"}
    assert_generation_equal(Generation.from_record(meta, arrays), g)
    assert_generation_equal(Generation.from_record(*through_disk(meta, arrays)), g)
    # prefixed records
    meta, arrays = g.to_record(prefix="x.")
    assert all(k.startswith("x.") for k in [*meta, *arrays])
    assert_generation_equal(Generation.from_record(meta, arrays, prefix="x."), g)


def test_sample_set_round_trip():
    samples = (make_generation(THREE_STEPS, THREE_CHOSEN, text="Paris"),
               make_generation(PEAKED, [0, 0, 0], stop_reason="length", text="Lyon"),
               make_generation([[0.5, 0.5, 0.0, 0.0]], [1], text=""))
    ss = SampleSet(samples, temperature=1.0, top_k=50)
    meta, arrays = ss.to_record()
    assert meta["n"] == 3 and meta["temperature"] == 1.0 and meta["top_k"] == 50
    for restored in (SampleSet.from_record(meta, arrays),
                     SampleSet.from_record(*through_disk(meta, arrays))):
        assert restored.temperature == 1.0 and restored.top_k == 50
        assert restored.texts == ["Paris", "Lyon", ""]
        assert len(restored.samples) == 3
        for a, b in zip(restored.samples, samples):
            assert_generation_equal(a, b)
    # empty sample set
    empty = SampleSet((), temperature=0.7, top_k=10)
    restored = SampleSet.from_record(*empty.to_record())
    assert restored.samples == () and restored.temperature == 0.7 and restored.top_k == 10
