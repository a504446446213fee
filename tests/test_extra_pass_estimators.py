"""Tests for the estimators that read statistics beyond the greedy pass and the samples.

Rényi / Fisher–Rao, PMI / CPMI, CCP, P(True), Verbalized-1S, introspection
stability, DRAGIN, TokenSAR and the R3 reflective confidence. Every expected
value is worked out by hand in the comment beside it (or recomputed with numpy
from the definition, independently of the estimator's code path). Natural logs:

    ln 2 = 0.693147181   ln 3 = 1.098612289   ln 4 = 1.386294361
    ln 0.5 = -0.693147181   ln 0.8 = -0.223143551   ln 0.9 = -0.105360516
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

# Importing the modules registers their estimators (independent of estimators/__init__.py).
from bench.models.outputs import Generation
from estimators import (  # noqa: F401
    ccp,
    divergence,
    dragin,
    introspection,
    pmi,
    reflective,
    token_sar,
    verbalized,
)
from estimators.base import ESTIMATORS, GREEDY, EstimatorOptions, StatBundle, create
from estimators.dragin import is_content_word, word_spans
from estimators.stat_types import (
    ANSWER_ATTENTION,
    GREEDY_ALTERNATIVES,
    GREEDY_RELEVANCE,
    P_TRUE,
    REFLECTIVE,
    REVISION,
    UNCONDITIONAL,
    VERBALIZED,
    AlternativeJudgement,
    AttentionMap,
    ForcedPass,
    Readout,
    ReflectiveScores,
    TokenRelevance,
)
from estimators.verbalized import parse_verbalized_probability
from tests.builders import generation_from_logits

TOL = 1e-6  # per-step statistics are stored as float32 (~1e-7 rounding)

INCLUDE = EstimatorOptions(include_stop_token=True)
EXCLUDE = EstimatorOptions(include_stop_token=False)

NEW_ESTIMATORS = {
    # name: (family, requires, study column)
    "renyi_neg": ("logit", (GREEDY,), "RenyiNeg"),
    "fisher_rao": ("logit", (GREEDY,), "FisherRao"),
    "mean_pmi": ("logit", (GREEDY, UNCONDITIONAL), "MeanPointwiseMutualInformation"),
    "mean_cpmi": ("logit", (GREEDY, UNCONDITIONAL),
                  "MeanConditionalPointwiseMutualInformation"),
    "ccp": ("logit+nli", (GREEDY, GREEDY_ALTERNATIVES), "CCP"),
    "p_true": ("verbalized", (P_TRUE,), "PTrue"),
    "verbalized_1s": ("verbalized", (VERBALIZED,), "Verbalized1S"),
    "introspection_stability": ("verbalized", (GREEDY, REVISION), None),
    "dragin_rind": ("logit+attention", (GREEDY, ANSWER_ATTENTION), None),
    "token_sar": ("logit+similarity", (GREEDY, GREEDY_RELEVANCE), None),
    "r3_reflective_confidence": ("consistency+logit", (REFLECTIVE,), None),
}


# --------------------------------------------------------------------------- helpers
def greedy(n: int = 3, *, stop_reason: str = "eos", k: int = 3, **fields) -> Generation:
    """A Generation of n steps whose named fields are replaced by hand-made values."""
    base = generation_from_logits(np.zeros((n, 4)), np.zeros(n, dtype=int),
                                  stop_reason=stop_reason, k=k)
    for name in ("token_logprobs", "entropies", "topk_logprobs", "root_mass_t2"):
        if name in fields:
            fields[name] = np.asarray(fields[name], dtype=np.float32)
    if "token_texts" in fields:
        fields["token_texts"] = tuple(fields["token_texts"])
    return dataclasses.replace(base, **fields)


def empty_greedy(k: int = 3) -> Generation:
    """A Generation with no step at all (nothing to aggregate)."""
    return dataclasses.replace(
        greedy(1, k=k), token_ids=np.zeros(0, dtype=np.int64),
        token_logprobs=np.zeros(0, dtype=np.float32), entropies=np.zeros(0, dtype=np.float32),
        topk_ids=np.zeros((0, k), dtype=np.int64), topk_logprobs=np.zeros((0, k), np.float32),
        root_mass_t2=np.zeros(0, dtype=np.float32), token_texts=(), text="")


def score(name: str, values: dict, options: EstimatorOptions = INCLUDE, qid: str = "q1"
          ) -> float:
    value = create(name, options).score(StatBundle(qid, values))
    assert isinstance(value, float)
    return value


# --------------------------------------------------------------------------- Rényi / Fisher–Rao
def test_divergence_extremes_one_hot_and_flat():
    # V = 4. One-hot (other logits -inf): p~ one-hot, S = ln 1 = 0.
    #   Renyi raw = -2*0 - ln 4 = -ln 4 -> U = ln 4 = 1.386294361
    #   FR raw = (2/pi) arccos(1/sqrt(4)) = (2/pi)(pi/3) = 2/3 -> U = -0.666666667
    one_hot = generation_from_logits([[0.0, -np.inf, -np.inf, -np.inf]] * 2, stop_reason="length")
    assert score("renyi_neg", {GREEDY: one_hot}) == pytest.approx(1.386294361, abs=TOL)
    assert score("fisher_rao", {GREEDY: one_hot}) == pytest.approx(-2 / 3, abs=TOL)
    # Flat: S = ln(4 * sqrt(1/4)) = ln 2.
    #   Renyi raw = -2 ln 2 - ln 4 = -2 ln 4 -> U = 2.772588722
    #   FR raw = (2/pi) arccos(2/2) = 0 (float32 S limits the resolution near 0 to ~1e-3)
    flat = generation_from_logits(np.zeros((2, 4)), stop_reason="length")
    assert score("renyi_neg", {GREEDY: flat}) == pytest.approx(2.772588722, abs=TOL)
    assert score("fisher_rao", {GREEDY: flat}) == pytest.approx(0.0, abs=1e-3)
    # Large vocabulary, one-hot: FR raw = (2/pi) arccos(1/100) = 0.993633696 ("1-ish").
    big = np.full((1, 10_000), -np.inf)
    big[0, 7] = 0.0
    assert score("fisher_rao", {GREEDY: generation_from_logits(big)}) == pytest.approx(
        -0.993633696, abs=TOL)


# Three steps over V = 3, the last one emitted EOS:
#   step 0: p~ = [4/9, 4/9, 1/9] (logits 2 ln p~), sqrt p~ = 2/3, 2/3, 1/3, sum 5/3,
#           S = ln(5/3) = 0.510825624
#           Renyi r = -2 S - ln 3 = -1.021651248 - 1.098612289 = -2.120263536
#           FR f = (2/pi) arccos((5/3)/sqrt 3) = (2/pi) arccos(0.962250449)
#                = (2/pi) 0.275642799 = 0.175479656
#   step 1: flat, r = -2 ln 3 = -2.197224577, f = 0
#   step 2: one-hot (EOS), r = -ln 3 = -1.098612289, f = (2/pi) arccos(1/sqrt 3)
#           = (2/pi) 0.955316618 = 0.608173448
HAND_LOGITS = [2 * np.log([4 / 9, 4 / 9, 1 / 9]), [0.0, 0.0, 0.0], [0.0, -np.inf, -np.inf]]


@pytest.fixture(params=["eos", "newline"])
def divergence_gen(request) -> Generation:
    return generation_from_logits(HAND_LOGITS, [0, 0, 0], stop_reason=request.param)


def test_divergence_root_mass_fixture(divergence_gen):
    np.testing.assert_allclose(divergence_gen.root_mass_t2,
                               [0.510825624, 0.549306144, 0.0], atol=TOL)  # ln(5/3), ln sqrt 3


def test_renyi_neg_hand(divergence_gen):
    # include: U = (2.120263536 + 2.197224577 + 1.098612289)/3 = 5.416100402/3 = 1.805366801
    assert score("renyi_neg", {GREEDY: divergence_gen}, INCLUDE) == pytest.approx(
        1.805366801, abs=TOL)
    # exclude: U = (2.120263536 + 2.197224577)/2 = 4.317488113/2 = 2.158744057
    assert score("renyi_neg", {GREEDY: divergence_gen}, EXCLUDE) == pytest.approx(
        2.158744057, abs=TOL)


def test_fisher_rao_hand(divergence_gen):
    # include: U = -(0.175479656 + 0 + 0.608173448)/3 = -0.783653104/3 = -0.261217701
    assert score("fisher_rao", {GREEDY: divergence_gen}, INCLUDE) == pytest.approx(
        -0.261217701, abs=2e-4)  # the flat step's f is ~1e-4, not 0, in float32
    # exclude: U = -(0.175479656 + 0)/2 = -0.087739828
    assert score("fisher_rao", {GREEDY: divergence_gen}, EXCLUDE) == pytest.approx(
        -0.087739828, abs=2e-4)


def test_divergences_match_definitions_on_random_logits():
    # From the full distribution: p~ = softmax(z/2), D_0.5 = -2 ln sum sqrt(p~) ... computed
    # here without root_mass_t2: Renyi r_t = (1/(0.5-1)) ln sum p~^0.5 - ln V and
    # FR f_t = (2/pi) arccos(sum sqrt(p~ / V)).
    rng = np.random.default_rng(0)
    for _ in range(10):
        z = rng.normal(scale=3.0, size=(5, 7))
        p_t = np.exp(z / 2 - np.log(np.exp(z / 2).sum(axis=1, keepdims=True)))
        renyi = -2.0 * np.log(np.sqrt(p_t).sum(axis=1)) - np.log(7)
        fr = (2 / np.pi) * np.arccos(np.minimum(np.sqrt(p_t / 7).sum(axis=1), 1.0))
        g = generation_from_logits(z, stop_reason="length")
        assert score("renyi_neg", {GREEDY: g}) == pytest.approx(-renyi.mean(), abs=1e-5)
        assert score("fisher_rao", {GREEDY: g}) == pytest.approx(-fr.mean(), abs=1e-3)


@pytest.mark.parametrize("name", ["renyi_neg", "fisher_rao"])
@pytest.mark.parametrize("options", [INCLUDE, EXCLUDE], ids=["include", "exclude"])
def test_divergence_sign_peaked_below_flat(name, options):
    # The study's raw values grow with confidence (STUDY §9.1); arbench's U must not.
    peaked = generation_from_logits([[4.0, 0.0, 0.0, 0.0]] * 3)
    flat = generation_from_logits(np.zeros((3, 4)))
    assert score(name, {GREEDY: peaked}, options) < score(name, {GREEDY: flat}, options)


@pytest.mark.parametrize("name", ["renyi_neg", "fisher_rao"])
def test_divergence_nan_without_steps(name):
    assert math.isnan(score(name, {GREEDY: empty_greedy()}))


# --------------------------------------------------------------------------- PMI / CPMI
# l_t (greedy) and u_t (teacher-forced without the question), last step EOS:
#   l = [-0.5, -1.0, -0.2, -0.1]    u = [-3.0, -2.0, -0.4, -0.05]    H = [2.0, 0.05, 0.5, 1.0]
PMI_L = [-0.5, -1.0, -0.2, -0.1]
PMI_U = [-3.0, -2.0, -0.4, -0.05]
PMI_H = [2.0, 0.05, 0.5, 1.0]


def pmi_stats(lp=PMI_L, u=PMI_U, h=PMI_H, stop_reason="eos") -> dict:
    u = np.asarray(u, dtype=np.float32)
    return {GREEDY: greedy(len(lp), token_logprobs=lp, entropies=h, stop_reason=stop_reason),
            UNCONDITIONAL: ForcedPass(u, np.zeros_like(u))}


def test_mean_pmi_hand():
    # PMI = [l_0, l_1 - u_1, l_2 - u_2, l_3 - u_3] = [-0.5, -1.0 + 2.0, -0.2 + 0.4, -0.1 + 0.05]
    #     = [-0.5, 1.0, 0.2, -0.05]
    # include: U = -(-0.5 + 1.0 + 0.2 - 0.05)/4 = -0.65/4 = -0.1625
    assert score("mean_pmi", pmi_stats(), INCLUDE) == pytest.approx(-0.1625, abs=TOL)
    # exclude: U = -(-0.5 + 1.0 + 0.2)/3 = -0.7/3 = -0.233333333
    assert score("mean_pmi", pmi_stats(), EXCLUDE) == pytest.approx(-0.233333333, abs=TOL)


def test_mean_pmi_alignment_ignores_u0_and_pairs_u_t_with_l_t():
    # u_0 has no meaning (no prefix) and must not enter: changing it leaves U = -0.1625.
    u = [-50.0, -2.0, -0.4, -0.05]
    assert score("mean_pmi", pmi_stats(u=u)) == pytest.approx(-0.1625, abs=TOL)
    # A one-position shift (u_{t-1} paired with l_t, the study's defect) would give
    # -(-0.5 + (-1.0 + 3.0) + (-0.2 + 2.0) + (-0.1 + 0.4))/4 = -3.6/4 = -0.9, not -0.1625.
    assert score("mean_pmi", pmi_stats()) != pytest.approx(-0.9, abs=1e-3)


def test_mean_cpmi_hand():
    # gate 1[t >= 1 and H_t >= 0.0656]: t=0 never; H_1 = 0.05 < tau; H_2, H_3 >= tau.
    # c = [-0.5, -1.0, -0.2 - 3.599*(-0.4), -0.1 - 3.599*(-0.05)]
    #   = [-0.5, -1.0, -0.2 + 1.4396, -0.1 + 0.17995] = [-0.5, -1.0, 1.2396, 0.07995]
    # include: U = -(-0.5 - 1.0 + 1.2396 + 0.07995)/4 = 0.18045/4 = 0.0451125
    assert score("mean_cpmi", pmi_stats(), INCLUDE) == pytest.approx(0.0451125, abs=TOL)
    # exclude: U = -(-0.5 - 1.0 + 1.2396)/3 = 0.2604/3 = 0.0868
    assert score("mean_cpmi", pmi_stats(), EXCLUDE) == pytest.approx(0.0868, abs=TOL)


def test_mean_cpmi_low_entropy_everywhere_is_minus_mean_logprob():
    # every H_t < tau: no unconditional term, U = -mean l = 1.8/4 = 0.45
    stats = pmi_stats(h=[0.01] * 4)
    assert score("mean_cpmi", stats, INCLUDE) == pytest.approx(0.45, abs=TOL)


@pytest.mark.parametrize("name", ["mean_pmi", "mean_cpmi"])
def test_pmi_sign_question_informative_answer_less_uncertain(name):
    # Same greedy answer (l = -0.2 per token, H = 1); the question makes it much more likely
    # (u = -5) vs not at all (u = l): PMI_t 4.8 vs 0 for t >= 1, so U(informative) is lower.
    informative = pmi_stats([-0.2] * 3, [-5.0] * 3, [1.0] * 3, "length")
    generic = pmi_stats([-0.2] * 3, [-0.2] * 3, [1.0] * 3, "length")
    assert score(name, informative) < score(name, generic)


@pytest.mark.parametrize("name", ["mean_pmi", "mean_cpmi"])
def test_pmi_length_mismatch_names_question(name):
    stats = pmi_stats(u=[-1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="q-mismatch"):
        score(name, stats, qid="q-mismatch")


@pytest.mark.parametrize("name", ["mean_pmi", "mean_cpmi"])
def test_pmi_nan(name):
    empty = {GREEDY: empty_greedy(), UNCONDITIONAL: ForcedPass(np.zeros(0, np.float32),
                                                               np.zeros(0, np.float32))}
    assert math.isnan(score(name, empty))
    # an unconditional probability of 0 (log -inf) is not a finite score
    assert math.isnan(score("mean_pmi", pmi_stats(u=[-1.0, -np.inf, -1.0, -1.0])))


# --------------------------------------------------------------------------- CCP
# K = 3 alternatives per step (k = 0 is the greedy token), last step EOS:
#   step 0: p = [0.6, 0.3, 0.1]   k1 e=.7 c=.2 -> entail, k2 e=.1 c=.8 -> contra
#           CCP_0 = (0.6 + 0.3)/(0.6 + 0.3 + 0.1) = 0.9
#   step 1: p = [0.5, 0.25, 0.25] k1 e=.4 c=.3 -> neutral (e < 0.5), k2 e=.3 c=.6 -> contra
#           CCP_1 = 0.5/(0.5 + 0.25) = 2/3
#   step 2: p = [0.8, 0.15, 0.05] k1 e=.5 c=.5 -> neutral (tie), k2 e=.2 c=.5 -> contra
#           CCP_2 = 0.8/(0.8 + 0.05) = 0.941176471
# k0's judge values (e=0, c=1) are ignored: the greedy token always entails itself.
CCP_P = [[0.6, 0.3, 0.1], [0.5, 0.25, 0.25], [0.8, 0.15, 0.05]]
CCP_E = [[0.0, 0.7, 0.1], [0.0, 0.4, 0.3], [0.0, 0.5, 0.2]]
CCP_C = [[1.0, 0.2, 0.8], [1.0, 0.3, 0.6], [1.0, 0.5, 0.5]]


def ccp_stats(p=CCP_P, e=CCP_E, c=CCP_C, stop_reason="eos") -> dict:
    g = greedy(len(p), k=3, topk_logprobs=np.log(p), stop_reason=stop_reason)
    return {GREEDY: g, GREEDY_ALTERNATIVES: AlternativeJudgement(
        np.asarray(e, dtype=np.float32), np.asarray(c, dtype=np.float32), "judge")}


def test_ccp_hand():
    # include: U = -(0.9 * 2/3 * 0.941176471) = -0.6 * 0.941176471 = -0.564705882
    assert score("ccp", ccp_stats(), INCLUDE) == pytest.approx(-0.564705882, abs=TOL)
    # exclude: U = -(0.9 * 2/3) = -0.6
    assert score("ccp", ccp_stats(), EXCLUDE) == pytest.approx(-0.6, abs=TOL)
    # the 2-step, K = 3 case as a length-stopped answer: -0.6 under both policies
    two = ccp_stats(CCP_P[:2], CCP_E[:2], CCP_C[:2], "length")
    for options in (INCLUDE, EXCLUDE):
        assert score("ccp", two, options) == pytest.approx(-0.6, abs=TOL)


def test_ccp_sign_and_extremes():
    # all alternatives entail (paraphrases): CCP_t = 1, U = -1, the most certain value
    entail_all = ccp_stats(e=[[0.0, 0.9, 0.9]] * 3, c=[[0.0, 0.05, 0.05]] * 3)
    assert score("ccp", entail_all) == pytest.approx(-1.0, abs=TOL)
    # all alternatives neutral: left out of both sums, U = -1 as well
    neutral = ccp_stats(e=[[0.0, 0.3, 0.3]] * 3, c=[[0.0, 0.3, 0.3]] * 3)
    assert score("ccp", neutral) == pytest.approx(-1.0, abs=TOL)
    # all contradict: U = -(0.6/1.0)(0.5/1.0)(0.8/1.0) = -0.24 > -1
    contra_all = ccp_stats(e=[[0.0, 0.1, 0.1]] * 3, c=[[0.0, 0.9, 0.9]] * 3)
    assert score("ccp", contra_all) == pytest.approx(-0.24, abs=TOL)
    assert score("ccp", contra_all) > score("ccp", entail_all)


def test_ccp_shape_mismatch_and_nan():
    stats = ccp_stats(e=np.zeros((3, 2)), c=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="q-ccp"):
        score("ccp", stats, qid="q-ccp")
    empty = {GREEDY: empty_greedy(), GREEDY_ALTERNATIVES: AlternativeJudgement(
        np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), "judge")}
    assert math.isnan(score("ccp", empty))


# --------------------------------------------------------------------------- P(True)
def test_p_true_hand_and_sign():
    # U = -ln 0.8 = 0.223143551
    sure = {P_TRUE: Readout({"true": math.log(0.8), "false": math.log(0.2)})}
    assert score("p_true", sure) == pytest.approx(0.223143551, abs=1e-9)
    # P(True) = 0.3: U = -ln 0.3 = 1.203972804 > 0.223143551
    unsure = {P_TRUE: Readout({"true": math.log(0.3), "false": math.log(0.7)})}
    assert score("p_true", unsure) == pytest.approx(1.203972804, abs=1e-9)
    assert score("p_true", unsure) > score("p_true", sure)


def test_p_true_nan_and_missing_label():
    assert math.isnan(score("p_true", {P_TRUE: Readout({"true": -math.inf})}))
    assert math.isnan(score("p_true", {P_TRUE: Readout({"true": math.nan})}))
    with pytest.raises(KeyError, match="q-pt"):
        score("p_true", {P_TRUE: Readout({"false": -0.1})}, qid="q-pt")


# --------------------------------------------------------------------------- Verbalized-1S
@pytest.mark.parametrize("text, expected", [
    ("Guess: Paris\nProbability: 0.85", 0.85),
    ("Guess: Paris Probability: 0.85", 0.85),
    ("probability: 1", 1.0),
    ("PROBABILITY:0.3", 0.3),
    ("Probability: 1.0", 1.0),
    ("Probability: 1.00", 1.0),
    ("Probability: 0", 0.0),
    ("Probability: 0.0", 0.0),
    ("Probability: .7", 0.7),
    ("Probability:\n0.6", 0.6),
    ("Probability: 0.9.", 0.9),             # sentence-final period
    ("Probability: 80%", 0.8),
    ("Probability: 80 %", 0.8),
    ("Probability: 100%", 1.0),
    ("Probability: 0%", 0.0),
    ("Probability: 12.5%", 0.125),
    ("**Probability:** 0.9", 0.9),          # markdown emphasis
    ("Probability: 0.8, then Probability: 0.2", 0.8),  # the first statement counts
])
def test_parse_verbalized_probability(text, expected):
    assert parse_verbalized_probability(text) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("text", [
    "", "Guess: Paris", "0.8", "Probability:", "Probability: high", "Probability: 1.5",
    "Probability: 10", "Probability: 2", "Probability: 120%", "Probability -> 0.4",
])
def test_parse_verbalized_probability_failures(text):
    assert math.isnan(parse_verbalized_probability(text))


def test_verbalized_1s_hand_sign_and_nan():
    def stats(text):
        return {VERBALIZED: greedy(2, text=text)}
    # U = 1 - 0.85 = 0.15;  1 - 0.2 = 0.8
    assert score("verbalized_1s", stats("Guess: Paris\nProbability: 0.85")) == pytest.approx(
        0.15, abs=1e-12)
    assert score("verbalized_1s", stats("Guess: Lyon\nProbability: 0.2")) == pytest.approx(
        0.8, abs=1e-12)
    # unparsable: NaN, not 0 ("fully confident", the study's defect)
    assert math.isnan(score("verbalized_1s", stats("Guess: Paris")))


# --------------------------------------------------------------------------- introspection
@pytest.mark.parametrize("first, revised, expected", [
    # normalize: lower-case, punctuation -> space, articles dropped: both "eiffel tower"
    ("The Eiffel Tower", "Eiffel Tower.", 0.0),
    ("Paris, France", "Lyon", 1.0),                      # disjoint tokens: F1 0
    # [barack, obama] vs [michelle, obama]: 1 common, P = R = 1/2, F1 = 1/2
    ("Barack Obama", "Michelle Obama", 0.5),
    # [george, washington, carver] vs [george, washington]: 2 common, P = 2/2, R = 2/3,
    # F1 = 2 * 1 * (2/3) / (5/3) = 0.8 -> U = 0.2
    ("George Washington Carver", "George Washington", 0.2),
    ("", "the", 0.0),                                    # both normalise to nothing: kept
    ("", "Paris", 1.0),
])
def test_introspection_stability_hand(first, revised, expected):
    stats = {GREEDY: greedy(2, text=first), REVISION: greedy(2, text=revised)}
    assert score("introspection_stability", stats) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- DRAGIN
# Tokens "The", " Eif", "fel", " tower", then the EOS token; words The | Eiffel | tower.
#   H = [0.2, 1.0, 0.6, 0.4, 2.0]
#   attention rows j (causal, each sums to 1):
#     j=0 [1,   0,   0,    0,    0  ]
#     j=1 [0.6, 0.4, 0,    0,    0  ]
#     j=2 [0.3, 0.5, 0.2,  0,    0  ]
#     j=3 [0.2, 0.3, 0.1,  0.4,  0  ]
#     j=4 [0.1, 0.1, 0.05, 0.45, 0.3]
DRAGIN_TEXTS = ("The", " Eif", "fel", " tower", "<|im_end|>")
DRAGIN_H = [0.2, 1.0, 0.6, 0.4, 2.0]
DRAGIN_W = [[1.0, 0.0, 0.0, 0.0, 0.0],
            [0.6, 0.4, 0.0, 0.0, 0.0],
            [0.3, 0.5, 0.2, 0.0, 0.0],
            [0.2, 0.3, 0.1, 0.4, 0.0],
            [0.1, 0.1, 0.05, 0.45, 0.3]]


def dragin_stats(h=DRAGIN_H, w=DRAGIN_W, texts=DRAGIN_TEXTS, stop_reason="eos") -> dict:
    g = greedy(len(texts), entropies=h, token_texts=texts, stop_reason=stop_reason)
    return {GREEDY: g, ANSWER_ATTENTION: AttentionMap(np.asarray(w, dtype=np.float32))}


def test_dragin_exclude_hand():
    # stop step dropped: rows/columns 0..3. Words and a_i = max of weights[j >= start, word]:
    #   The    [0,1): a = max(1, .6, .3, .2) = 1.0        H = 0.2  stopword -> s = 0
    #   Eiffel [1,3): a = max(.4, .5, .2, .3, .1) = 0.5   H = (1.0 + 0.6)/2 = 0.8
    #   tower  [3,4): a = 0.4 (row 4 unused)              H = 0.4
    #   sum a = 1.9, |words| = 3
    #   S_Eiffel = 3 * (0.5/1.9) * 0.8 = 1.2/1.9 = 0.631578947
    #   S_tower  = 3 * (0.4/1.9) * 0.4 = 0.48/1.9 = 0.252631579
    assert score("dragin_rind", dragin_stats(), EXCLUDE) == pytest.approx(0.631578947, abs=TOL)


def test_dragin_include_hand():
    # stop step kept as a word of its own (content). a_i now also read row 4:
    #   The 1.0, Eiffel max(.5, .1, .05) = 0.5, tower max(.4, .45) = 0.45, stop 0.3
    #   sum a = 2.25, |words| = 4
    #   S_Eiffel = 4 * (0.5/2.25) * 0.8  = 1.6/2.25 = 0.711111111
    #   S_tower  = 4 * (0.45/2.25) * 0.4 = 0.72/2.25 = 0.32
    #   S_stop   = 4 * (0.3/2.25) * 2.0  = 2.4/2.25 = 1.066666667  <- max
    assert score("dragin_rind", dragin_stats(), INCLUDE) == pytest.approx(1.066666667, abs=TOL)


def test_dragin_words_and_content():
    assert word_spans(DRAGIN_TEXTS, 4) == [(0, 1), (1, 3), (3, 4)]
    assert word_spans(("Paris", ",", " France", "\n"), 4) == [(0, 2), (2, 3), (3, 4)]
    assert word_spans((), 0) == []
    for word in ("Eiffel", " tower", "1889", "U.S.", "Paris,"):
        assert is_content_word(word)
    for word in ("The", " of", ",", " ", "", "the."):
        assert not is_content_word(word)


def test_dragin_sign_and_stopwords_only():
    # doubling every entropy doubles every S_i: U = 2 * 0.631578947 = 1.263157895
    doubled = dragin_stats(h=[2 * x for x in DRAGIN_H])
    assert score("dragin_rind", doubled, EXCLUDE) == pytest.approx(1.263157895, abs=TOL)
    assert score("dragin_rind", doubled, EXCLUDE) > score("dragin_rind", dragin_stats(), EXCLUDE)
    # only stopwords (length stop, so no stop word either): U = 0
    stop_only = dragin_stats(texts=("The", " of", " it", " is", " a"), stop_reason="length")
    for options in (INCLUDE, EXCLUDE):
        assert score("dragin_rind", stop_only, options) == 0.0


def test_dragin_nan_and_shape():
    empty = {GREEDY: empty_greedy(), ANSWER_ATTENTION: AttentionMap(np.zeros((0, 0)))}
    assert math.isnan(score("dragin_rind", empty))
    zero = dragin_stats(w=np.zeros((5, 5)))
    assert math.isnan(score("dragin_rind", zero))   # no attention mass to normalise
    with pytest.raises(ValueError, match="q-attn"):
        score("dragin_rind", dragin_stats(w=np.eye(4)), qid="q-attn")


# --------------------------------------------------------------------------- TokenSAR
# p(y_t) = [0.5, 0.8, 0.9 (EOS)]: -l = [0.693147181, 0.223143551, 0.105360516]; R = [.6, .2, .2]
def sar_stats(relevance=(0.6, 0.2, 0.2), probs=(0.5, 0.8, 0.9)) -> dict:
    g = greedy(len(probs), token_logprobs=np.log(probs))
    return {GREEDY: g, GREEDY_RELEVANCE: TokenRelevance(
        (np.asarray(relevance, dtype=np.float32),), "judge")}


def test_token_sar_hand():
    # include: (0.6*0.693147181 + 0.2*0.223143551 + 0.2*0.105360516)/1.0
    #        = 0.415888308 + 0.044628710 + 0.021072103 = 0.481589122
    assert score("token_sar", sar_stats(), INCLUDE) == pytest.approx(0.481589122, abs=TOL)
    # exclude: (0.415888308 + 0.044628710)/0.8 = 0.460517019/0.8 = 0.575646273
    assert score("token_sar", sar_stats(), EXCLUDE) == pytest.approx(0.575646273, abs=TOL)
    # R all 0: uniform weights, the mean NLL (0.693147181 + 0.223143551 + 0.105360516)/3
    #        = 1.021651248/3 = 0.340550416
    assert score("token_sar", sar_stats((0, 0, 0)), INCLUDE) == pytest.approx(
        0.340550416, abs=TOL)


def test_token_sar_sign_nan_and_shape():
    confident = sar_stats(probs=(0.95, 0.9, 0.99))
    assert score("token_sar", confident) < score("token_sar", sar_stats())
    empty = {GREEDY: empty_greedy(),
             GREEDY_RELEVANCE: TokenRelevance((np.zeros(0, np.float32),), "judge")}
    assert math.isnan(score("token_sar", empty))
    with pytest.raises(ValueError, match="q-sar"):
        score("token_sar", sar_stats((0.5, 0.5)), qid="q-sar")


# --------------------------------------------------------------------------- R3 reflective
def reflective_stats(logprobs) -> dict:
    lp = np.asarray(logprobs, dtype=np.float64).reshape(len(logprobs), -1)
    return {REFLECTIVE: ReflectiveScores(lp, tuple(f"chain {i}" for i in range(lp.shape[0])))}


def test_r3_hand():
    # 2 chains x 3 tokens: l = [[-0.5, -1.0, -0.2], [-1.5, -1.0, -0.6]]
    #   sigma (ddof 0) = [0.5, 0, 0.2], sum 0.7, w = [5/7, 0, 2/7]
    #   chain 0: (5/7)(-0.5) + (2/7)(-0.2) = -2.9/7;  chain 1: (5/7)(-1.5) + (2/7)(-0.6) = -8.7/7
    #   U = -(-2.9/7 - 8.7/7)/2 = 11.6/14 = 0.828571429
    stats = reflective_stats([[-0.5, -1.0, -0.2], [-1.5, -1.0, -0.6]])
    assert score("r3_reflective_confidence", stats) == pytest.approx(11.6 / 14, abs=1e-12)
    # 3 chains, only token 1 varies: w = [0, 1], U = -mean(-1, -3, -2) = 2
    stats = reflective_stats([[-0.1, -1.0], [-0.1, -3.0], [-0.1, -2.0]])
    assert score("r3_reflective_confidence", stats) == pytest.approx(2.0, abs=1e-12)


def test_r3_uniform_fallback_sign_and_nan():
    # one chain: sigma = 0, uniform weights, U = (0.5 + 1.0 + 0.3)/3 = 0.6
    one = reflective_stats([[-0.5, -1.0, -0.3]])
    assert score("r3_reflective_confidence", one) == pytest.approx(0.6, abs=1e-12)
    # chains that support the answer (higher l) give lower U
    supported = reflective_stats([[-0.1, -0.2], [-0.3, -0.2]])
    unsupported = reflective_stats([[-2.0, -0.2], [-4.0, -0.2]])
    assert (score("r3_reflective_confidence", supported)
            < score("r3_reflective_confidence", unsupported))
    no_chain = {REFLECTIVE: ReflectiveScores(np.zeros((0, 3)), ())}
    no_token = {REFLECTIVE: ReflectiveScores(np.zeros((2, 0)), ("a", "b"))}
    assert math.isnan(score("r3_reflective_confidence", no_chain))
    assert math.isnan(score("r3_reflective_confidence", no_token))


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", sorted(NEW_ESTIMATORS))
def test_registered(name):
    family, requires, study_name = NEW_ESTIMATORS[name]
    est = create(name, EXCLUDE)
    assert ESTIMATORS[name] is type(est)
    assert est.name == name
    assert est.family == family
    assert est.requires == requires
    assert est.study_name == study_name
    assert est.summary and "\n" not in est.summary
    assert "arXiv" in type(est).__doc__


def test_study_names_unique_across_registry():
    names = [cls.study_name for cls in ESTIMATORS.values() if cls.study_name]
    assert len(names) == len(set(names))
