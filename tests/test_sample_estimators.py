"""Tests for the sample-based estimators: Monte-Carlo entropies, answer entropy, EigenScore.

Every expected value is worked out by hand in the comment beside it.
Constants (natural logs):

    ln 2 = 0.693147180560     ln 10 = 2.302585092994    ln 0.001 = -6.907755278982
    ln 4 = 1.386294361120     ln 6  = 1.791759469228
    ln(1 + x) = x - x^2/2 + x^3/3 - ...  for the small x below
"""
from __future__ import annotations

import math

import numpy as np
import pytest

# Importing the modules registers their estimators (independent of estimators/__init__.py).
from bench.models.outputs import Generation, SampleSet
from estimators import answer_entropy as answer_entropy_module
from estimators import eigenscore as eigenscore_module
from estimators import monte_carlo_entropy, self_consistency  # noqa: F401
from estimators.answer_entropy import answer_frequencies
from estimators.base import (
    ESTIMATORS,
    SAMPLES,
    EstimatorOptions,
    StatBundle,
    create,
)
from estimators.eigenscore import middle_layer_embeddings

TOL = 1e-6     # token log-probs are stored as float32 (~1e-7 rounding)
EXACT = 1e-9   # eigenscore inputs are small integers, exact in float32

INCLUDE = EstimatorOptions(include_stop_token=True)
EXCLUDE = EstimatorOptions(include_stop_token=False)
NEW_ESTIMATORS = ("mc_sequence_entropy", "mc_normalized_sequence_entropy", "answer_entropy",
                  "eigenscore")


# --------------------------------------------------------------------------- helpers
def sample(token_logprobs=(-0.5,), *, text="answer", hidden=None, layers=(15, 30),
           stop_reason="eos", sampling_logprobs=None) -> Generation:
    """A sampled Generation built by hand; only the fields the estimators read matter.

    ``hidden`` is the (L, d) ``hidden_last``, one row per entry of ``layers``.
    ``sampling_logprobs`` default to 0 (p = 1) so that an estimator reading them
    instead of ``token_logprobs`` would fail the hand-computed assertions.
    """
    lp = np.asarray(token_logprobs, dtype=np.float32)
    n = lp.shape[0]
    hidden = np.zeros((len(layers), 3)) if hidden is None else np.asarray(hidden)
    return Generation(
        text=text,
        token_ids=np.arange(n, dtype=np.int64),
        token_logprobs=lp,
        entropies=np.zeros(n, dtype=np.float32),
        mean_logprobs=np.zeros(n, dtype=np.float32),
        logsumexp=np.zeros(n, dtype=np.float32),
        topk_ids=np.zeros((n, 2), dtype=np.int64),
        topk_logprobs=np.zeros((n, 2), dtype=np.float32),
        sampling_logprobs=(np.zeros(n, dtype=np.float32) if sampling_logprobs is None
                           else np.asarray(sampling_logprobs, dtype=np.float32)),
        root_mass_t2=np.zeros(n, dtype=np.float32),
        hidden_mean=np.full_like(hidden, 99.0, dtype=np.float32),  # must never be read
        hidden_last=hidden.astype(np.float32),
        prompt_hidden_mean=np.full_like(hidden, 99.0, dtype=np.float32),
        prompt_hidden_last=np.full_like(hidden, 99.0, dtype=np.float32),
        layers=np.asarray(layers, dtype=np.int64),
        token_texts=tuple(f"t{i}" for i in range(n)),
        stop_reason=stop_reason,
        prompt_tokens=5,
        vocab_size=4,
    )


def bundle(samples, qid: str = "q1") -> StatBundle:
    return StatBundle(qid, {SAMPLES: SampleSet(tuple(samples), temperature=1.0, top_k=50)})


def text_bundle(texts) -> StatBundle:
    return bundle(sample(text=t) for t in texts)


def hidden_bundle(vectors, *, layers=(15, 30), row=0) -> StatBundle:
    """Samples whose ``hidden_last[row]`` are ``vectors``; the other rows hold noise
    (rows of other layers must not change the score)."""
    out = []
    for k, v in enumerate(vectors):
        hidden = np.full((len(layers), len(v)), 7.0 + 13.0 * k)
        hidden[:, 0] += 3.0 * k * k  # not constant across features: centring keeps it
        hidden[row] = v
        out.append(sample(hidden=hidden, layers=layers))
    return bundle(out)


def score(name: str, stats: StatBundle, options: EstimatorOptions = INCLUDE) -> float:
    value = create(name, options).score(stats)
    assert isinstance(value, float)
    return value


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", NEW_ESTIMATORS)
def test_registered_with_declaration(name):
    cls = ESTIMATORS[name]
    assert cls.requires == (SAMPLES,)
    assert cls.family == ("internal" if name == "eigenscore" else "consistency")
    assert cls.summary and "\n" not in cls.summary
    assert cls.__doc__ and "References" in cls.__doc__


# --------------------------------------------------------------------------- Monte-Carlo entropy
# Three samples, the last step of each emitted EOS:
#   s1: log-probs [ln 1/2, ln 1/2]           log p = -2 ln 2,            |s| = 2
#   s2: log-probs [ln 1/4, ln 1/2, ln 1/8]   log p = -(2+1+3) ln 2 = -6 ln 2, |s| = 3
#   s3: log-probs [ln 1/10]                  log p = -ln 10,             |s| = 1
MC_SAMPLES = [[math.log(0.5), math.log(0.5)],
              [math.log(0.25), math.log(0.5), math.log(0.125)],
              [math.log(0.1)]]


def mc_bundle(logprob_lists=MC_SAMPLES, stop_reason="eos") -> StatBundle:
    return bundle(sample(lp, stop_reason=stop_reason) for lp in logprob_lists)


def test_mc_sequence_entropy_three_samples():
    # (2 ln 2 + 6 ln 2 + ln 10)/3 = (5.545177444480 + 2.302585092994)/3
    #                             = 7.847762537474/3 = 2.615920845825
    assert score("mc_sequence_entropy", mc_bundle()) == pytest.approx(2.615920845825, abs=TOL)


def test_mc_normalized_sequence_entropy_three_samples():
    # (2 ln 2/2 + 6 ln 2/3 + ln 10/1)/3 = (ln 2 + 2 ln 2 + ln 10)/3
    #   = (2.079441541680 + 2.302585092994)/3 = 4.382026634674/3 = 1.460675544891
    assert score("mc_normalized_sequence_entropy", mc_bundle()) == pytest.approx(
        1.460675544891, abs=TOL)


def test_mc_entropies_honour_exclude_stop():
    # EOS step dropped: s1 -> [ln 1/2] (ln 2, 1 token), s2 -> [ln 1/4, ln 1/2] (3 ln 2,
    # 2 tokens), s3 has one step only and keeps it (ln 10, 1 token).
    # plain:      (ln 2 + 3 ln 2 + ln 10)/3 = (2.772588722240 + 2.302585092994)/3
    #           = 5.075173815234/3 = 1.691724605078
    # normalised: (ln 2 + 1.5 ln 2 + ln 10)/3 = (1.732867951400 + 2.302585092994)/3
    #           = 4.035453044394/3 = 1.345151014798
    assert score("mc_sequence_entropy", mc_bundle(), EXCLUDE) == pytest.approx(
        1.691724605078, abs=TOL)
    assert score("mc_normalized_sequence_entropy", mc_bundle(), EXCLUDE) == pytest.approx(
        1.345151014798, abs=TOL)
    # a length stop keeps every step even under EXCLUDE: same values as INCLUDE
    assert score("mc_sequence_entropy", mc_bundle(stop_reason="length"), EXCLUDE) == \
        pytest.approx(2.615920845825, abs=TOL)


def test_mc_entropies_read_untempered_logprobs():
    # sampling_logprobs = ln 1/4 per token (a tempered distribution) must be ignored:
    # one sample [ln 1/2, ln 1/2] -> 2 ln 2 = 1.386294361120 (not 4 ln 2), normalised ln 2
    s = sample([math.log(0.5)] * 2, sampling_logprobs=[math.log(0.25)] * 2)
    assert score("mc_sequence_entropy", bundle([s])) == pytest.approx(1.386294361120, abs=TOL)
    assert score("mc_normalized_sequence_entropy", bundle([s])) == pytest.approx(
        0.693147180560, abs=TOL)


def test_mc_entropies_undefined_cases():
    assert math.isnan(score("mc_sequence_entropy", bundle([])))
    assert math.isnan(score("mc_normalized_sequence_entropy", bundle([])))
    # a sample with no tokens: log p = 0 (empty sum) but |s| = 0 -> 0/0
    empty = sample([], stop_reason="length")
    assert score("mc_sequence_entropy", bundle([empty])) == 0.0
    assert math.isnan(score("mc_normalized_sequence_entropy", bundle([empty])))
    # a -inf token log-prob gives +inf, mapped to NaN
    assert math.isnan(score("mc_sequence_entropy", bundle([sample([-np.inf])])))


@pytest.mark.parametrize("name", ["mc_sequence_entropy", "mc_normalized_sequence_entropy"])
def test_mc_sign_agree_below_disagree(name):
    # agreeing (peaked) samples: 3 tokens of p = 0.9 each -> 3 * 0.105361 = 0.316082
    #                            (normalised 0.105361)
    # disagreeing (flat) samples: 3 tokens of p = 0.2 each -> 3 * 1.609438 = 4.828314
    #                            (normalised 1.609438)
    agree = mc_bundle([[math.log(0.9)] * 3] * 4)
    disagree = mc_bundle([[math.log(0.2)] * 3] * 4)
    assert score(name, agree) < score(name, disagree)


# --------------------------------------------------------------------------- answer entropy
def test_answer_frequencies():
    # "Paris", "paris" -> "paris" (2/4); "Lyon" -> "lyon" (1/4); "London" -> "london" (1/4)
    assert answer_frequencies(["Paris", "paris", "Lyon", "London"]) == {
        "paris": 0.5, "lyon": 0.25, "london": 0.25}
    # articles and punctuation removed; "The" and "a" normalise to "" (its own class)
    assert answer_frequencies(["The Eiffel Tower.", "eiffel tower", "The", "a"]) == {
        "eiffel tower": 0.5, "": 0.5}
    assert answer_frequencies([]) == {}


def test_answer_entropy_paris():
    # f = 1/2, 1/4, 1/4: U = -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1/2 ln 2 + 1/2 * 2 ln 2
    #   = 1.5 ln 2 = 1.039720770840
    value = score("answer_entropy", text_bundle(["Paris", "paris", "Lyon", "London"]))
    assert value == pytest.approx(1.039720770840, abs=1e-12)


def test_answer_entropy_extremes():
    # all agree: -1 ln 1 = 0; all four differ: -4 * 1/4 ln 1/4 = ln 4 = 1.386294361120
    agree = score("answer_entropy", text_bundle(["Paris", "paris!", "The Paris", "PARIS"]))
    assert agree == 0.0 and math.copysign(1.0, agree) == 1.0  # +0.0, not -0.0
    assert score("answer_entropy", text_bundle(["a1", "b2", "c3", "d4"])) == pytest.approx(
        1.386294361120, abs=1e-12)
    # empty-normalised answers form one class: {"": 1/2, "paris": 1/2} -> ln 2
    assert score("answer_entropy", text_bundle(["The", "", "Paris", "paris"])) == pytest.approx(
        0.693147180560, abs=1e-12)
    assert math.isnan(score("answer_entropy", text_bundle([])))


@pytest.mark.parametrize("texts", [["Paris", "paris", "Lyon", "London"],
                                   ["a1", "b2", "c3"], ["x", "x", "y"], ["The", "an", "x"]])
def test_self_consistency_is_one_minus_max_frequency(texts):
    # the suggested refactor of self_consistency onto answer_frequencies is value-preserving
    expected = 1.0 - max(answer_frequencies(texts).values())
    assert score("self_consistency", text_bundle(texts)) == expected


def test_answer_entropy_sign_agree_below_disagree():
    # ln 1 = 0 (five "Paris") vs ln 5 = 1.609438 (five different cities)
    agree = text_bundle(["Paris"] * 5)
    disagree = text_bundle(["Paris", "Lyon", "London", "Rome", "Berlin"])
    assert score("answer_entropy", agree) < score("answer_entropy", disagree)
    assert score("answer_entropy", disagree) == pytest.approx(math.log(5), abs=1e-12)


# --------------------------------------------------------------------------- EigenScore
# Centring over the d = 3 features (Z J_d) removes each vector's own mean, so the
# vectors below are written as (centred part) + (constant offset).
#   a = (1, 0, -1)   |a|^2 = 2      b = (1, -2, 1)   |b|^2 = 6     a.b = 1 + 0 - 1 = 0
# ln 4.001 = ln 4 + ln(1.00025)  = 1.386294361120 + 0.000249968755 = 1.386544329875
# ln 2.001 = ln 2 + ln(1.0005)   = 0.693147180560 + 0.000499875042 = 0.693647055602
# ln 6.001 = ln 6 + ln(1 + 1/6000) = 1.791759469228 + 0.000166652779 = 1.791926122007


def test_eigenscore_identical_vectors_rank_one():
    # z1 = z2 = (1, 2, 3) = (-1, 0, 1) + 2: centred (-1, 0, 1), squared norm 2.
    # Sigma = [[2, 2], [2, 2]], eigenvalues 4 and 0 -> det(Sigma + aI) = 4.001 * 0.001
    # U = (1/2)(ln 4.001 + ln 0.001) = (1.386544329875 - 6.907755278982)/2
    #   = -5.521210949107/2 = -2.760605474554
    stats = hidden_bundle([[1, 2, 3], [1, 2, 3]])
    assert score("eigenscore", stats) == pytest.approx(-2.760605474554, abs=EXACT)


def test_eigenscore_orthogonal_vectors():
    # z1 = a + 5 = (6, 5, 4), z2 = b - 3 = (-2, -5, -2): centred a and b, orthogonal.
    # Sigma = diag(2, 6) -> det(Sigma + aI) = 2.001 * 6.001
    # U = (1/2)(ln 2.001 + ln 6.001) = (0.693647055602 + 1.791926122007)/2
    #   = 2.485573177609/2 = 1.242786588805
    stats = hidden_bundle([[6, 5, 4], [-2, -5, -2]])
    assert score("eigenscore", stats) == pytest.approx(1.242786588805, abs=EXACT)


def test_eigenscore_three_samples():
    # z1 = a, z2 = -a + 10 = (9, 10, 11), z3 = b + 1 = (2, -1, 2); centred a, -a, b.
    # Sigma = [[2, -2, 0], [-2, 2, 0], [0, 0, 6]]: the 2x2 block has eigenvalues 4 and 0,
    # so det(Sigma + aI) = 4.001 * 0.001 * 6.001 and
    # U = (1/3)(1.386544329875 - 6.907755278982 + 1.791926122007)
    #   = -3.729284827100/3 = -1.243094942367
    stats = hidden_bundle([[1, 0, -1], [9, 10, 11], [2, -1, 2]])
    assert score("eigenscore", stats) == pytest.approx(-1.243094942367, abs=EXACT)


def test_eigenscore_single_sample():
    # K = 1: Sigma = |(-1, 0, 1)|^2 = 2, U = ln 2.001 = 0.693647055602
    assert score("eigenscore", hidden_bundle([[1, 2, 3]])) == pytest.approx(
        0.693647055602, abs=EXACT)


def test_eigenscore_uses_smallest_layer_above_zero():
    # layers (0, 16, 32): the middle layer is 16, stored in row 1; rows 0 (embeddings)
    # and 2 (last layer) hold other values. Same vectors as the orthogonal case.
    stats = hidden_bundle([[6, 5, 4], [-2, -5, -2]], layers=(0, 16, 32), row=1)
    assert score("eigenscore", stats) == pytest.approx(1.242786588805, abs=EXACT)
    # unsorted record order: layers (30, 15), layer 15 in row 1
    stats = hidden_bundle([[6, 5, 4], [-2, -5, -2]], layers=(30, 15), row=1)
    assert score("eigenscore", stats) == pytest.approx(1.242786588805, abs=EXACT)
    z = middle_layer_embeddings(stats[SAMPLES])
    assert z.dtype == np.float64 and z.tolist() == [[6, 5, 4], [-2, -5, -2]]


def test_eigenscore_undefined_and_inconsistent():
    assert math.isnan(score("eigenscore", bundle([])))
    # only the embedding layer recorded
    assert math.isnan(score("eigenscore", hidden_bundle([[1, 2, 3]], layers=(0,))))
    # a non-finite hidden state
    assert math.isnan(score("eigenscore", hidden_bundle([[1, 2, np.nan], [1, 2, 3]])))
    mixed = bundle([sample(hidden=np.zeros((2, 3)), layers=(15, 30)),
                    sample(hidden=np.zeros((2, 3)), layers=(16, 32))])
    with pytest.raises(ValueError, match="different hidden-state layers"):
        score("eigenscore", mixed)


def test_eigenscore_sign_agree_below_disagree():
    # agreeing: three copies of (1, 2, 3), centred (-1, 0, 1) -> Sigma = 2 * ones(3, 3),
    #   eigenvalues 6, 0, 0: U = (ln 6.001 + 2 ln 0.001)/3
    #   = (1.791926122007 - 13.815510557964)/3 = -12.023584435957/3 = -4.007861478652
    # disagreeing: centred a, b, a + b = (2, -2, 0) (|.|^2 = 8, a.(a+b) = 2, b.(a+b) = 6):
    #   Sigma = [[2, 0, 2], [0, 6, 6], [2, 6, 8]], rank 2 (centred vectors span a plane),
    #   nonzero eigenvalues l1, l2 with l1 + l2 = trace = 16 and
    #   l1 l2 = sum of principal 2x2 minors = (12 - 0) + (16 - 4) + (48 - 36) = 36, so
    #   det(Sigma + aI) = (36 + 16a + a^2) a = 36.016001 * 0.001 and
    #   ln 36.016001 = 2 ln 6 + ln(1 + 0.000444472222) = 3.583518938456 + 0.000444373474
    #   U = (3.583963311930 - 6.907755278982)/3 = -3.323791967052/3 = -1.107930655684
    agree = hidden_bundle([[1, 2, 3]] * 3)
    disagree = hidden_bundle([[1, 0, -1], [1, -2, 1], [2, -2, 0]])
    assert score("eigenscore", agree) == pytest.approx(-4.007861478652, abs=EXACT)
    assert score("eigenscore", disagree) == pytest.approx(-1.107930655684, abs=EXACT)
    assert score("eigenscore", agree) < score("eigenscore", disagree)


def test_modules_expose_helpers():
    assert answer_entropy_module.answer_frequencies is answer_frequencies
    assert eigenscore_module.ALPHA == 1e-3
