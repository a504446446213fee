"""Tests for the token-probability, token-entropy aggregate, FLARE and energy estimators.

Generations are built from explicit raw logits z_t (vocabulary V = 4 unless
stated). ``from_logits`` derives what the backend records with numpy:
log p_t = z_t - logsumexp(z_t), the chosen log-probs, entropies, mean
log-probs and logsumexp of z_t. The expected values are worked out by hand in
the comment next to each assertion, never by re-applying the estimator.

Most fixtures give logits z_t = ln p_t (so logsumexp = ln 1 = 0) for these
next-token distributions, with the greedy token first and its entropy:

    HALF   = [0.5, 0.25, 0.125, 0.125]  p(y) = 0.5   H = 0.5 ln 2 + 0.25 * 2 ln 2
                                                         + 2 * 0.125 * 3 ln 2 = 1.75 ln 2
                                                         = 1.213007566
    SEVEN  = [0.7, 0.1, 0.1, 0.1]       p(y) = 0.7   H = -(0.7 ln 0.7 + 0.3 ln 0.1)
                                                         = 0.249672461 + 0.690775528
                                                         = 0.940447989
    PEAK   = [0.97, 0.01, 0.01, 0.01]   p(y) = 0.97  H = 0.97 * 0.030459207 + 0.03 * 4.605170186
                                                         = 0.029545431 + 0.138155106
                                                         = 0.167700537
    FLAT   = [0.25] * 4                 p(y) = 0.25  H = ln 4 = 1.386294361
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import estimators  # noqa: F401  (registers the built-in estimators)
from bench.models.outputs import Generation
from estimators.base import GREEDY, EstimatorOptions, StatBundle, create
from tests.builders import generation_from_logits

TOL = 1e-6  # the backend stores float32; its rounding error is ~1e-7 here

INCLUDE = EstimatorOptions(include_stop_token=True)
EXCLUDE = EstimatorOptions(include_stop_token=False)

NEW_ESTIMATORS = {
    # name: study column (None: not one of the study's 27)
    "median_token_entropy": "MedianTokenEntropy",
    "min_token_entropy": "MinTokenEntropy",
    "neg_mean_token_prob": "MeanMaximumTokenProbability",
    "neg_min_token_prob": "MaxMaximumTokenProbability",
    "neg_median_token_prob": "MedianMaximumTokenProbability",
    "neg_max_token_prob": "MinMaximumTokenProbability",
    "flare_min_prob": None,
    "energy_score": None,
}


# --------------------------------------------------------------------------- helpers
def from_logits(logits, chosen=None, *, stop_reason="eos", k=2) -> Generation:
    """A Generation whose per-step fields derive from raw logits ``(n, V)``."""
    return generation_from_logits(logits, chosen, stop_reason=stop_reason, k=k)


def from_probs(dists, chosen=None, **kwargs) -> Generation:
    """Logits z_t = ln p_t (no zero probabilities in these fixtures)."""
    return from_logits(np.log(np.asarray(dists, dtype=np.float64)), chosen, **kwargs)


def score(name: str, generation: Generation, options: EstimatorOptions = INCLUDE) -> float:
    value = create(name, options).score(StatBundle("q1", {GREEDY: generation}))
    assert isinstance(value, float)
    return value


HALF = [0.5, 0.25, 0.125, 0.125]
SEVEN = [0.7, 0.1, 0.1, 0.1]
PEAK = [0.97, 0.01, 0.01, 0.01]
FLAT = [0.25] * 4

# Fixture A: the stop step (last) is the flattest one; greedy token 0 except at
# the flat stop step, which emits token 3.
#   p(y_t) = 0.5, 0.7, 0.97, 0.25     H_t = 1.213007566, 0.940447989, 0.167700537, 1.386294361
FLAT_STOP = ([HALF, SEVEN, PEAK, FLAT], [0, 0, 0, 3])
# Fixture B: the stop step is the most peaked one.
#   p(y_t) = 0.5, 0.7, 0.25, 0.97     H_t = 1.213007566, 0.940447989, 1.386294361, 0.167700537
PEAK_STOP = ([HALF, SEVEN, FLAT, PEAK], [0, 0, 3, 0])


@pytest.fixture(params=["eos", "newline"])
def flat_stop(request) -> Generation:
    return from_probs(*FLAT_STOP, stop_reason=request.param)


@pytest.fixture(params=["eos", "newline"])
def peak_stop(request) -> Generation:
    return from_probs(*PEAK_STOP, stop_reason=request.param)


def test_fixture_fields_match_hand_values(flat_stop):
    # ln 0.5, ln 0.7, ln 0.97, ln 0.25
    np.testing.assert_allclose(flat_stop.token_logprobs,
                               [-0.693147181, -0.356674944, -0.030459207, -1.386294361],
                               atol=TOL)
    np.testing.assert_allclose(flat_stop.entropies,
                               [1.213007566, 0.940447989, 0.167700537, 1.386294361], atol=TOL)
    np.testing.assert_allclose(flat_stop.logsumexp, [0.0] * 4, atol=TOL)


# --------------------------------------------------------------------------- token entropy
def test_median_token_entropy(flat_stop, peak_stop):
    # Both fixtures include the same four entropies; sorted:
    #   0.167700537, 0.940447989, 1.213007566, 1.386294361
    #   median = (0.940447989 + 1.213007566)/2 = 2.153455555/2 = 1.076727778
    for g in (flat_stop, peak_stop):
        assert score("median_token_entropy", g, INCLUDE) == pytest.approx(1.076727778, abs=TOL)
    # A, stop dropped: {1.213007566, 0.940447989, 0.167700537} -> median 0.940447989
    assert score("median_token_entropy", flat_stop, EXCLUDE) == pytest.approx(
        0.940447989, abs=TOL)
    # B, stop dropped: {1.213007566, 0.940447989, 1.386294361} -> median 1.213007566
    assert score("median_token_entropy", peak_stop, EXCLUDE) == pytest.approx(
        1.213007566, abs=TOL)


def test_min_token_entropy(flat_stop, peak_stop):
    # include: min of the four = H(PEAK) = 0.167700537
    for g in (flat_stop, peak_stop):
        assert score("min_token_entropy", g, INCLUDE) == pytest.approx(0.167700537, abs=TOL)
    # A, stop dropped: the PEAK step is kept -> 0.167700537
    assert score("min_token_entropy", flat_stop, EXCLUDE) == pytest.approx(0.167700537, abs=TOL)
    # B, stop dropped: PEAK was the stop step -> min(1.213007566, 0.940447989, 1.386294361)
    #   = 0.940447989
    assert score("min_token_entropy", peak_stop, EXCLUDE) == pytest.approx(0.940447989, abs=TOL)


# --------------------------------------------------------------------------- token probability
def test_neg_mean_token_prob(flat_stop, peak_stop):
    # include (both): -(0.5 + 0.7 + 0.97 + 0.25)/4 = -2.42/4 = -0.605
    for g in (flat_stop, peak_stop):
        assert score("neg_mean_token_prob", g, INCLUDE) == pytest.approx(-0.605, abs=TOL)
    # A, stop dropped: -(0.5 + 0.7 + 0.97)/3 = -2.17/3 = -0.723333333
    assert score("neg_mean_token_prob", flat_stop, EXCLUDE) == pytest.approx(
        -0.723333333, abs=TOL)
    # B, stop dropped: -(0.5 + 0.7 + 0.25)/3 = -1.45/3 = -0.483333333
    assert score("neg_mean_token_prob", peak_stop, EXCLUDE) == pytest.approx(
        -0.483333333, abs=TOL)


def test_neg_min_token_prob(flat_stop, peak_stop):
    # max_t q_t = -min_t p: include (both) -min(0.5, 0.7, 0.97, 0.25) = -0.25
    for g in (flat_stop, peak_stop):
        assert score("neg_min_token_prob", g, INCLUDE) == pytest.approx(-0.25, abs=TOL)
    # A, stop (p = 0.25) dropped: -min(0.5, 0.7, 0.97) = -0.5
    assert score("neg_min_token_prob", flat_stop, EXCLUDE) == pytest.approx(-0.5, abs=TOL)
    # B, stop (p = 0.97) dropped: -min(0.5, 0.7, 0.25) = -0.25
    assert score("neg_min_token_prob", peak_stop, EXCLUDE) == pytest.approx(-0.25, abs=TOL)


def test_neg_median_token_prob(flat_stop, peak_stop):
    # include (both): sorted p = 0.25, 0.5, 0.7, 0.97 -> -(0.5 + 0.7)/2 = -0.6
    for g in (flat_stop, peak_stop):
        assert score("neg_median_token_prob", g, INCLUDE) == pytest.approx(-0.6, abs=TOL)
    # A, stop dropped: -median(0.5, 0.7, 0.97) = -0.7
    assert score("neg_median_token_prob", flat_stop, EXCLUDE) == pytest.approx(-0.7, abs=TOL)
    # B, stop dropped: -median(0.5, 0.7, 0.25) = -0.5
    assert score("neg_median_token_prob", peak_stop, EXCLUDE) == pytest.approx(-0.5, abs=TOL)


def test_neg_max_token_prob(flat_stop, peak_stop):
    # min_t q_t = -max_t p: include (both) -max(0.5, 0.7, 0.97, 0.25) = -0.97
    for g in (flat_stop, peak_stop):
        assert score("neg_max_token_prob", g, INCLUDE) == pytest.approx(-0.97, abs=TOL)
    # A, stop dropped: -max(0.5, 0.7, 0.97) = -0.97
    assert score("neg_max_token_prob", flat_stop, EXCLUDE) == pytest.approx(-0.97, abs=TOL)
    # B, stop (p = 0.97) dropped: -max(0.5, 0.7, 0.25) = -0.7
    assert score("neg_max_token_prob", peak_stop, EXCLUDE) == pytest.approx(-0.7, abs=TOL)


def test_flare_min_prob(flat_stop, peak_stop):
    # include (both): 1 - min(0.5, 0.7, 0.97, 0.25) = 1 - 0.25 = 0.75
    for g in (flat_stop, peak_stop):
        assert score("flare_min_prob", g, INCLUDE) == pytest.approx(0.75, abs=TOL)
    # A, stop dropped: 1 - 0.5 = 0.5;   B, stop dropped: 1 - 0.25 = 0.75
    assert score("flare_min_prob", flat_stop, EXCLUDE) == pytest.approx(0.5, abs=TOL)
    assert score("flare_min_prob", peak_stop, EXCLUDE) == pytest.approx(0.75, abs=TOL)


def test_length_stop_keeps_last_step():
    # stop_reason "length": the last step is a content token, kept under both policies.
    # Fixture A's steps: -min p = -0.25, 1 - min p = 0.75, min H = 0.167700537,
    # -mean p = -0.605.
    g = from_probs(*FLAT_STOP, stop_reason="length")
    for options in (INCLUDE, EXCLUDE):
        assert score("neg_min_token_prob", g, options) == pytest.approx(-0.25, abs=TOL)
        assert score("flare_min_prob", g, options) == pytest.approx(0.75, abs=TOL)
        assert score("neg_mean_token_prob", g, options) == pytest.approx(-0.605, abs=TOL)
        assert score("median_token_entropy", g, options) == pytest.approx(1.076727778, abs=TOL)


def test_single_step_is_never_dropped():
    # One EOS step, p = SEVEN, token 0: dropping it would leave nothing.
    #   every -p aggregate = -0.7, FLARE = 1 - 0.7 = 0.3, every H aggregate = 0.940447989,
    #   energy = -ln 1 = 0
    g = from_probs([SEVEN], [0], stop_reason="eos")
    for options in (INCLUDE, EXCLUDE):
        for name in ("neg_mean_token_prob", "neg_min_token_prob", "neg_median_token_prob",
                     "neg_max_token_prob"):
            assert score(name, g, options) == pytest.approx(-0.7, abs=TOL)
        assert score("flare_min_prob", g, options) == pytest.approx(0.3, abs=TOL)
        for name in ("median_token_entropy", "min_token_entropy"):
            assert score(name, g, options) == pytest.approx(0.940447989, abs=TOL)
        assert score("energy_score", g, options) == pytest.approx(0.0, abs=TOL)


# --------------------------------------------------------------------------- AdaRAGUE mapping
def test_neg_min_is_minus_min_prob_and_neg_max_is_minus_max_prob():
    # The study's token score is -p_t(y_t): "Max"MaximumTokenProbability = -min p and
    # "Min"MaximumTokenProbability = -max p. Two steps, p(y) = 0.5 and 0.7 (length stop):
    g = from_probs([HALF, SEVEN], [0, 0], stop_reason="length")
    assert score("neg_min_token_prob", g) == pytest.approx(-0.5, abs=TOL)   # -min(0.5, 0.7)
    assert score("neg_max_token_prob", g) == pytest.approx(-0.7, abs=TOL)   # -max(0.5, 0.7)
    assert create("neg_min_token_prob").study_name == "MaxMaximumTokenProbability"
    assert create("neg_max_token_prob").study_name == "MinMaximumTokenProbability"
    # and on random answers, exactly -min / -max of the recorded chosen-token probabilities
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 8))
        g = from_logits(rng.normal(scale=3.0, size=(n, 6)), rng.integers(0, 6, size=n),
                        stop_reason="length")
        p = np.exp(g.token_logprobs.astype(np.float64))
        assert score("neg_min_token_prob", g) == pytest.approx(-p.min(), abs=1e-12)
        assert score("neg_max_token_prob", g) == pytest.approx(-p.max(), abs=1e-12)


@pytest.mark.parametrize("options", [INCLUDE, EXCLUDE], ids=["include", "exclude"])
def test_flare_ranks_like_neg_min_token_prob(options):
    # FLARE's score is 1 + neg_min_token_prob, so it orders questions identically.
    rng = np.random.default_rng(1)
    gens = []
    for _ in range(30):
        n = int(rng.integers(1, 8))
        gens.append(from_logits(rng.normal(scale=2.0, size=(n, 5)),
                                rng.integers(0, 5, size=n),
                                stop_reason=str(rng.choice(["eos", "newline", "length"]))))
    flare = np.array([score("flare_min_prob", g, options) for g in gens])
    neg_min = np.array([score("neg_min_token_prob", g, options) for g in gens])
    np.testing.assert_allclose(flare, 1.0 + neg_min, atol=1e-12)
    assert len(set(neg_min.round(9))) == len(gens)  # no ties, so the ranking is strict
    np.testing.assert_array_equal(np.argsort(flare), np.argsort(neg_min))


# --------------------------------------------------------------------------- energy
# Raw logits over V = 3, the last step emitted EOS:
#   step 1: z = [2, 0, 0]  logsumexp = ln(e^2 + 1 + 1) = ln(7.389056099 + 2)
#                                    = ln 9.389056099 = 2.239544766
#   step 2: z = [0, 0, 0]  logsumexp = ln 3 = 1.098612289
#   step 3: z = [1, 1, 1]  logsumexp = 1 + ln 3 = 2.098612289   (EOS step)
ENERGY_LOGITS = [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


@pytest.fixture(params=["eos", "newline"])
def energy_gen(request) -> Generation:
    return from_logits(ENERGY_LOGITS, [0, 0, 0], stop_reason=request.param)


def test_energy_fixture_logsumexp(energy_gen):
    np.testing.assert_allclose(energy_gen.logsumexp, [2.239544766, 1.098612289, 2.098612289],
                               atol=TOL)


def test_energy_score(energy_gen):
    # include: U = -(2.239544766 + 1.098612289 + 2.098612289)/3 = -5.436769344/3 = -1.812256448
    assert score("energy_score", energy_gen, INCLUDE) == pytest.approx(-1.812256448, abs=TOL)
    # exclude: U = -(2.239544766 + 1.098612289)/2 = -3.338157055/2 = -1.669078528
    assert score("energy_score", energy_gen, EXCLUDE) == pytest.approx(-1.669078528, abs=TOL)


def test_energy_score_depends_on_logit_scale_not_only_on_probabilities():
    # Adding c = 5 to every logit leaves p_t unchanged (so every log-prob estimator) but
    # shifts each logsumexp by 5: U = -1.812256448 - 5 = -6.812256448.
    base = from_logits(ENERGY_LOGITS, [0, 0, 0], stop_reason="length")
    shifted = from_logits(np.asarray(ENERGY_LOGITS) + 5.0, [0, 0, 0], stop_reason="length")
    assert score("energy_score", shifted) == pytest.approx(-6.812256448, abs=TOL)
    for name in ("neg_mean_token_prob", "flare_min_prob", "median_token_entropy"):
        assert score(name, shifted) == pytest.approx(score(name, base), abs=TOL)


# --------------------------------------------------------------------------- sign (§0.2)
# Three steps each, greedy token 0:
#   peaked z = [4, 0, 0, 0]: logsumexp = ln(e^4 + 3) = ln 57.598150033 = 4.053490450,
#                            p(y) = 54.598150033/57.598150033 = 0.947914994,
#                            H = -(0.947915 ln 0.947915 + 3 * 0.017362 ln 0.017362) = 0.261830474
#   flat   z = [0, 0, 0, 0]: logsumexp = ln 4 = 1.386294361, p(y) = 0.25, H = ln 4
# so every -p aggregate is -0.947915 < -0.25, FLARE 0.052085 < 0.75, every H aggregate
# 0.261830 < 1.386294 and energy -4.053490 < -1.386294.
PEAKED_LOGITS = [[4.0, 0.0, 0.0, 0.0]] * 3
FLAT_LOGITS = [[0.0, 0.0, 0.0, 0.0]] * 3


@pytest.mark.parametrize("name", sorted(NEW_ESTIMATORS))
@pytest.mark.parametrize("options", [INCLUDE, EXCLUDE], ids=["include", "exclude"])
def test_sign_peaked_below_flat(name, options):
    peaked = score(name, from_logits(PEAKED_LOGITS, [0, 0, 0]), options)
    flat = score(name, from_logits(FLAT_LOGITS, [0, 0, 0]), options)
    assert peaked < flat


def test_sign_values():
    peaked = from_logits(PEAKED_LOGITS, [0, 0, 0], stop_reason="length")
    flat = from_logits(FLAT_LOGITS, [0, 0, 0], stop_reason="length")
    assert score("neg_min_token_prob", peaked) == pytest.approx(-0.947914994, abs=TOL)
    assert score("neg_min_token_prob", flat) == pytest.approx(-0.25, abs=TOL)
    assert score("flare_min_prob", peaked) == pytest.approx(0.052085006, abs=TOL)
    assert score("min_token_entropy", peaked) == pytest.approx(0.261830474, abs=TOL)
    assert score("median_token_entropy", flat) == pytest.approx(1.386294361, abs=TOL)
    assert score("energy_score", peaked) == pytest.approx(-4.053490450, abs=TOL)
    assert score("energy_score", flat) == pytest.approx(-1.386294361, abs=TOL)


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", sorted(NEW_ESTIMATORS))
def test_registered(name):
    est = create(name, EXCLUDE)
    assert est.name == name
    assert est.family == "logit"
    assert est.requires == (GREEDY,)
    assert est.study_name == NEW_ESTIMATORS[name]
    assert est.summary and "\n" not in est.summary
    assert type(est).__doc__
    assert est.options.include_stop_token is False
    value = est.score(StatBundle("q1", {GREEDY: from_probs(*FLAT_STOP)}))
    assert isinstance(value, float) and math.isfinite(value)


def test_study_names_unique_across_registry():
    names = [cls.study_name for cls in estimators.ESTIMATORS.values() if cls.study_name]
    assert len(names) == len(set(names))
