"""Tests for the NLI/similarity consistency estimators, SAR and SeaKR's EigenScore.

Expected values are worked out by hand in the comments (closed-form eigenvalues of
small structured matrices) or recomputed in the test from the formula written a
different way (probability domain instead of log space, random-walk matrix instead
of the normalised Laplacian, scipy's expm instead of an eigendecomposition).
Constants (natural logs): ln 2 = 0.693147180560, ln 3 = 1.098612288668,
ln 0.06 = -2.813410716760, ln 0.6 = -0.510825623766.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

# Importing the modules registers their estimators (independent of estimators/__init__.py).
from bench.models.outputs import Generation, SampleSet
from estimators import eigenscore, graph_uncertainty, sar  # noqa: F401
from estimators.base import ESTIMATORS, SAMPLES, EstimatorOptions, StatBundle, create
from estimators.semantic import entailment_labels, semantic_classes
from estimators.stat_types import (
    SAMPLE_RELEVANCE,
    SEMANTIC_MATRIX,
    SemanticMatrix,
    TokenRelevance,
)

TOL = 1e-6     # token log-probs are stored as float32
EXACT = 1e-9
INCLUDE = EstimatorOptions(include_stop_token=True)
EXCLUDE = EstimatorOptions(include_stop_token=False)
LN = math.log

STUDY = {"semantic_entropy": "SemanticEntropy", "num_sem_sets": "NumSemSets",
         "label_prob": None, "eig_val_laplacian": "EigValLaplacian_NLI_score_entail",
         "deg_mat": "DegMat_NLI_score_entail", "eccentricity": "Eccentricity_NLI_score_entail",
         "kernel_language_entropy": None, "sentence_sar": "SentenceSAR", "sar": "SAR",
         "seakr_eigen_score": None}


# --------------------------------------------------------------------------- helpers
def sample(token_logprobs=(-0.5,), *, text="answer", hidden=None, layers=(15, 30)) -> Generation:
    """A hand-built sample; only the fields the estimators read matter."""
    lp = np.asarray(token_logprobs, dtype=np.float32)
    n = lp.shape[0]
    hidden = np.zeros((len(layers), 3)) if hidden is None else np.asarray(hidden)
    zeros = np.zeros(n, dtype=np.float32)
    return Generation(
        text=text, token_ids=np.arange(n, dtype=np.int64), token_logprobs=lp,
        entropies=zeros, mean_logprobs=zeros, logsumexp=zeros,
        topk_ids=np.zeros((n, 2), dtype=np.int64), topk_logprobs=np.zeros((n, 2), np.float32),
        sampling_logprobs=zeros, root_mass_t2=zeros,  # sampling log-probs 0 must never be read
        hidden_mean=np.full_like(hidden, 99.0, dtype=np.float32),
        hidden_last=hidden.astype(np.float32),
        prompt_hidden_mean=np.full_like(hidden, 99.0, dtype=np.float32),
        prompt_hidden_last=np.full_like(hidden, 99.0, dtype=np.float32),
        layers=np.asarray(layers, dtype=np.int64), token_texts=tuple(f"t{i}" for i in range(n)),
        stop_reason="eos", prompt_tokens=5, vocab_size=4)


def matrix(entail, contra=None, similarity=None) -> SemanticMatrix:
    entail = np.asarray(entail, dtype=np.float32)
    contra = np.zeros_like(entail) if contra is None else np.asarray(contra, np.float32)
    similarity = np.eye(len(entail)) if similarity is None else similarity
    return SemanticMatrix(entail, contra, np.asarray(similarity, np.float32), "test")


def bundle(samples=None, semantic=None, relevance=None) -> StatBundle:
    values = {}
    if samples is not None:
        values[SAMPLES] = SampleSet(tuple(samples), temperature=1.0, top_k=50)
    if semantic is not None:
        values[SEMANTIC_MATRIX] = semantic
    if relevance is not None:
        values[SAMPLE_RELEVANCE] = TokenRelevance(
            tuple(np.asarray(r, np.float32) for r in relevance), "test")
    return StatBundle("q1", values)


def score(name: str, stats: StatBundle, options: EstimatorOptions = INCLUDE) -> float:
    value = create(name, options).score(stats)
    assert isinstance(value, float)
    return value


def agree(n):      # every pair entails both ways
    return matrix(np.ones((n, n)))


def disagree(n):   # every distinct pair contradicts
    return matrix(np.eye(n), 1.0 - np.eye(n))


def uniform_w(b, n=3):  # W = (E + E^T)/2 with off-diagonal b
    return matrix(np.full((n, n), b) + (1 - b) * np.eye(n))


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", sorted(STUDY))
def test_registered_with_declaration(name):
    cls = ESTIMATORS[name]
    assert cls.study_name == STUDY[name]
    assert cls.family == ("internal" if name == "seakr_eigen_score" else "consistency")
    assert cls.summary and "\n" not in cls.summary
    assert cls.__doc__ and "References" in cls.__doc__
    assert {"sar": 3, "semantic_entropy": 2, "sentence_sar": 2}.get(
        name, 1) == len(cls.requires)


# --------------------------------------------------------------------------- semantic classes
# premise row i, hypothesis column j.
#  0 <-> 1 entail both ways; 0 -> 2 is E .4, C .1, neutral .5 (argmax neutral: no, though
#  E > C); 2 -> 0 entails; 1 <-> 2 and 3 <-> {0, 1} contradict; 2 <-> 3 entail
#  (2 -> 3: E .6, C .2, N .2; 3 -> 2: E .5, C .1, N .4).
E4 = [[1, .9, .4, .1], [.8, 1, .2, .1], [.7, .2, 1, .6], [.1, .1, .5, 1]]
C4 = [[0, .05, .1, .8], [.05, 0, .7, .8], [.1, .7, 0, .2], [.8, .8, .1, 0]]
M4 = matrix(E4, C4)


def test_semantic_classes_greedy_bidirectional():
    # 1 joins 0; 2 fails the representative 0 (0 -> 2 neutral): new class; 3 fails 0,
    # then joins 2's class.
    assert semantic_classes(M4) == [0, 0, 1, 1]
    # 2 entails 1's class mate both ways is not enough: only the representative counts.
    e = [[1, .1, 0], [.1, 1, .9], [0, .9, 1]]  # 1 <-> 2 entail, 0 is alone
    assert semantic_classes(matrix(e)) == [0, 1, 1]
    e = [[1, .9, 0], [.9, 1, .9], [0, .9, 1]]  # 2 entails 1 but not the representative 0
    assert semantic_classes(matrix(e)) == [0, 0, 1]
    assert semantic_classes(matrix(np.zeros((0, 0)))) == []


def test_entailment_labels_argmax_ties():
    # (values exact in float32) E .375 = neutral .375 > C .25: entailment (tie with
    # neutral); E = C = .5 (neutral 0): not entailment
    labels = entailment_labels(matrix([[1, .375], [.5, 1]], [[0, .25], [.5, 0]]))
    assert labels.tolist() == [[True, True], [False, True]]
    with pytest.raises(ValueError, match="shape"):
        semantic_classes(M4, n=3)


LP4 = [[LN(.5), LN(.4)], [LN(.1)], [LN(.5), LN(.1)], [LN(.5), LN(.3)]]  # p = .2, .1, .05, .15


def test_semantic_entropy_hand_value():
    # P(C0) = .2 + .1 = .3, P(C1) = .05 + .15 = .2; U = -(2 ln .3 + 2 ln .2)/4 = -ln(.06)/2
    #   = 1.406705358380; also -sum_C (|C|/N) ln P(C)
    stats = bundle([sample(lp) for lp in LP4], M4)
    assert score("semantic_entropy", stats) == pytest.approx(1.406705358380, abs=TOL)
    assert score("semantic_entropy", stats) == pytest.approx(
        -(0.5 * LN(.3) + 0.5 * LN(.2)), abs=TOL)
    # stop step dropped: p = .5, .1 (one step, kept), .5, .5 -> P(C0) = .6, P(C1) = 1
    #   U = -(2 ln .6 + 0)/4 = 0.255412811883
    assert score("semantic_entropy", stats, EXCLUDE) == pytest.approx(0.255412811883, abs=TOL)


def test_semantic_entropy_sign_and_edges():
    same = [sample([LN(.1)])] * 4
    # agree: -ln .4 = 0.916290731874 < disagree: -ln .1 = 2.302585092994
    assert score("semantic_entropy", bundle(same, agree(4))) == pytest.approx(-LN(.4), abs=TOL)
    assert score("semantic_entropy", bundle(same, disagree(4))) == pytest.approx(
        -LN(.1), abs=TOL)
    assert score("semantic_entropy", bundle([sample([LN(.25)])], agree(1))) == pytest.approx(
        2 * LN(2), abs=TOL)
    assert math.isnan(score("semantic_entropy", bundle([], matrix(np.zeros((0, 0))))))
    assert math.isnan(score("semantic_entropy", bundle([sample([-np.inf])], agree(1))))
    with pytest.raises(ValueError, match="shape"):
        score("semantic_entropy", bundle(same, agree(3)))


def test_num_sem_sets_and_label_prob():
    # E > C both ways on (0,1), (0,2), (2,3): one component (neutral is ignored here)
    assert score("num_sem_sets", bundle(semantic=M4)) == 1.0
    # label_prob: largest class {0, 1} or {2, 3}: 1 - 2/4
    assert score("label_prob", bundle(semantic=M4)) == 0.5
    # blocks {0, 1}, {2}, {3, 4}: 3 components; largest class 2 of 5
    e = np.eye(5)
    e[0, 1] = e[1, 0] = e[3, 4] = e[4, 3] = 0.9
    e[2, 0] = 0.9  # one-way only: no edge
    assert score("num_sem_sets", bundle(semantic=matrix(e))) == 3.0
    assert score("label_prob", bundle(semantic=matrix(e))) == pytest.approx(0.6, abs=EXACT)
    for name, low, high in [("num_sem_sets", 1.0, 4.0), ("label_prob", 0.0, 0.75)]:
        assert score(name, bundle(semantic=agree(4))) == low
        assert score(name, bundle(semantic=disagree(4))) == high
        assert score(name, bundle(semantic=agree(1))) == low
        assert math.isnan(score(name, bundle(semantic=matrix(np.zeros((0, 0))))))


# --------------------------------------------------------------------------- graph estimators
def test_graph_block_matrix():
    # W = [[1, .9, 0], [.9, 1, 0], [0, 0, 1]] (E01 = 1, E10 = .8 symmetrised). Block
    # {0, 1}: degrees 1.9, L = [[.9, -.9], [-.9, .9]]/1.9 -> eigenvalues 0, 1.8/1.9;
    # block {2}: L = 0. Eigenvalues 0, 0, 0.947368.
    stats = bundle(semantic=matrix([[1, 1, 0], [.8, 1, 0], [0, 0, 1]]))
    # eig: 1 + 1 + max(0, 1 - 1.8/1.9) = 2 + 0.1/1.9 = 2.052631578947
    # (tolerance TOL: .8 is rounded to float32 in the matrix)
    assert score("eig_val_laplacian", stats) == pytest.approx(2.052631578947, abs=TOL)
    # deg_mat: 1 - (3 + 2 * .9)/9 = 1 - 4.8/9 = 0.466666666667
    assert score("deg_mat", stats) == pytest.approx(0.466666666667, abs=TOL)
    # eccentricity keeps the eigenvalue-0 space: u_0 = u_1 = (1/sqrt 2, 0), u_2 = (0, 1),
    # mean (sqrt 2/3, 1/3); sum ||u_i - mean||^2 = 2(1/18 + 1/9) + (2/9 + 4/9) = 1 -> U = 1
    assert score("eccentricity", stats) == pytest.approx(1.0, abs=EXACT)


@pytest.mark.parametrize("b, eig, ecc", [
    # W off-diagonal b: L eigenvalues 0 and 3b/(1 + 2b) (twice); eig U = 1 + 2(1 - b)/(1 + 2b)
    (0.5, 1.5, math.sqrt(2)),       # 3b/(1+2b) = .75 < .9: every eigenvector kept
    (0.8, 1 + 0.4 / 2.6, 0.0),      # .923 >= .9: only the constant eigenvector
    (1.0, 1.0, 0.0), (0.0, 3.0, math.sqrt(2)),
])
def test_graph_uniform_closed_form(b, eig, ecc):
    stats = bundle(semantic=uniform_w(b))  # b = .8 is rounded to float32: tolerance TOL
    assert score("eig_val_laplacian", stats) == pytest.approx(eig, abs=TOL)
    assert score("eccentricity", stats) == pytest.approx(ecc, abs=TOL)
    assert score("deg_mat", stats) == pytest.approx(1 - (3 + 6 * b) / 9, abs=TOL)


def test_graph_random_matrix_against_other_forms():
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 1, (6, 6)).astype(np.float32)
    np.fill_diagonal(e, 1)
    stats = bundle(semantic=matrix(e))
    w = (e.astype(np.float64) + e.T) / 2
    # random-walk matrix D^-1 W has eigenvalues 1 - lambda_k(L)
    mu = np.linalg.eigvals(w / w.sum(axis=1, keepdims=True)).real
    assert score("eig_val_laplacian", stats) == pytest.approx(np.clip(mu, 0, None).sum(), abs=1e-9)
    assert score("deg_mat", stats) == pytest.approx(1 - w.mean(), abs=1e-9)
    # LM-Polygraph's form: 2-norm of the per-eigenvector norms ||v_k - mean(v_k)||
    d = np.diag(1 / np.sqrt(w.sum(axis=1)))
    lam, vec = scipy.linalg.eigh(np.eye(6) - d @ w @ d)
    norms = [np.linalg.norm(v - v.mean()) for v in vec[:, lam < 0.9].T]
    assert score("eccentricity", stats) == pytest.approx(np.linalg.norm(norms), abs=1e-9)


def test_graph_sign_and_edges():
    for name in ("eig_val_laplacian", "deg_mat", "eccentricity"):
        assert score(name, bundle(semantic=agree(4))) < score(name, bundle(semantic=disagree(4)))
        assert math.isnan(score(name, bundle(semantic=matrix(np.zeros((0, 0))))))
    # N = 1: one zero eigenvalue -> 1; deg_mat 1 - 1 = 0; eccentricity 0
    assert score("eig_val_laplacian", bundle(semantic=agree(1))) == pytest.approx(1.0)
    assert score("deg_mat", bundle(semantic=agree(1))) == 0.0
    assert score("eccentricity", bundle(semantic=agree(1))) == 0.0
    # a zero degree (no self-entailment, nothing else) leaves L undefined
    zero = bundle(semantic=matrix(np.zeros((2, 2))))
    assert math.isnan(score("eig_val_laplacian", zero))
    assert math.isnan(score("eccentricity", zero))
    assert math.isnan(score("deg_mat", bundle(semantic=matrix([[1, np.nan], [1, 1]]))))


# --------------------------------------------------------------------------- kernel language entropy
def kle_closed_form(a):
    # K = P_1 + a (I - P_1) for N = 3: rho eigenvalues 1/(1+2a), a/(1+2a) (twice)
    return LN(1 + 2 * a) - 2 * a * LN(a) / (1 + 2 * a)


def test_kernel_language_entropy_closed_forms():
    # all entail: W = ones, L = 3I - J, eigenvalues 0, 3, 3 -> a = exp(-0.9)
    #   ln 1.813139319481 + 0.813139319481 * 0.9/1.813139319481 = 0.998688...
    assert score("kernel_language_entropy", bundle(semantic=agree(3))) == pytest.approx(
        kle_closed_form(math.exp(-0.9)), abs=1e-9)
    # all neutral (E = C = 0): W = .5 off-diagonal, L = 1.5 I - .5 J -> a = exp(-0.45)
    neutral = bundle(semantic=matrix(np.eye(3)))
    assert score("kernel_language_entropy", neutral) == pytest.approx(
        kle_closed_form(math.exp(-0.45)), abs=1e-9)
    # all contradict: W = I, L = 0, K = I, rho = I/3 -> ln 3
    assert score("kernel_language_entropy", bundle(semantic=disagree(3))) == pytest.approx(
        LN(3), abs=1e-9)
    assert score("kernel_language_entropy", bundle(semantic=agree(3))) < score(
        "kernel_language_entropy", neutral) < LN(3)
    assert score("kernel_language_entropy", bundle(semantic=agree(1))) == 0.0
    assert math.isnan(score("kernel_language_entropy", bundle(semantic=matrix(np.zeros((0, 0))))))


def test_kernel_language_entropy_against_expm():
    rng = np.random.default_rng(1)
    e = rng.uniform(0, .6, (5, 5))
    c = rng.uniform(0, .4, (5, 5))
    np.fill_diagonal(e, 1)
    np.fill_diagonal(c, 0)
    sm = matrix(e, c)
    a = sm.entail.astype(np.float64) + 0.5 * (1 - sm.entail - sm.contra.astype(np.float64))
    w = (a + a.T) / 2
    k = scipy.linalg.expm(-0.3 * (np.diag(w.sum(axis=1)) - w))
    rho = k / np.sqrt(np.outer(np.diag(k), np.diag(k))) / 5
    mu = np.linalg.eigvalsh(rho)
    assert score("kernel_language_entropy", bundle(semantic=sm)) == pytest.approx(
        -np.sum(mu * np.log(mu)), abs=1e-9)


# --------------------------------------------------------------------------- SAR
G3 = [[1, .5, 0], [.5, 1, .1], [0, .1, 1]]


def test_sentence_sar_hand_value():
    # p = .2, .1, .05; 1/t = 1000
    #   j=0: .2 + 1000(.5 * .1 + 0) = 50.2;  j=1: .1 + 1000(.5 * .2 + .1 * .05) = 105.1
    #   j=2: .05 + 1000(0 + .1 * .1) = 10.05
    stats = bundle([sample([LN(.5), LN(.4)]), sample([LN(.1)]), sample([LN(.5), LN(.1)])],
                   matrix(np.eye(3), similarity=G3))
    expected = -(LN(50.2) + LN(105.1) + LN(10.05)) / 3   # = -3.626166...
    assert score("sentence_sar", stats) == pytest.approx(expected, abs=TOL)


def test_sentence_sar_log_space_and_edges():
    # p = exp(-800) underflows in float64; log space keeps it.
    # g = 0: U = 800;  g = .5: each term p(1 + 1000 * .5 * 2) -> U = 800 - ln 1001
    tiny = [sample([-400.0, -400.0])] * 3
    assert score("sentence_sar", bundle(tiny, matrix(np.eye(3)))) == pytest.approx(800, abs=1e-9)
    half = np.full((3, 3), .5)
    assert score("sentence_sar", bundle(tiny, matrix(np.eye(3), similarity=half))) == \
        pytest.approx(800 - LN(1001), abs=1e-9)
    same = [sample([LN(.1)])] * 3
    agreeing = bundle(same, matrix(np.eye(3), similarity=np.ones((3, 3))))
    differing = bundle(same, matrix(np.eye(3)))
    # agree: -ln(.1 + 1000 * .2) = -5.299817; differ: -ln .1 = 2.302585
    assert score("sentence_sar", agreeing) == pytest.approx(-LN(200.1), abs=TOL)
    assert score("sentence_sar", agreeing) < score("sentence_sar", differing)
    assert score("sentence_sar", bundle([sample([LN(.25)])], agree(1))) == pytest.approx(
        2 * LN(2), abs=TOL)
    assert math.isnan(score("sentence_sar", bundle([], matrix(np.zeros((0, 0))))))
    assert math.isnan(score("sentence_sar", bundle([sample([-np.inf])], agree(1))))


SAR_LP = [[LN(.5), LN(.25)], [LN(.5)], [LN(.125), LN(.5), LN(.5)]]
SAR_R = [[.2, .6], [0.0], [1, 0, 1]]


def test_sar_hand_value():
    # TokenSAR: s0 weights (.25, .75): .25 ln 2 + .75 * 2 ln 2 = 1.75 ln 2 -> p^ = 2^-1.75
    #   = 0.297301778751; s1 sum R = 0 -> uniform: ln 2 -> .5; s2 weights (.5, 0, .5):
    #   .5 * 3 ln 2 + .5 ln 2 = 2 ln 2 -> .25
    #   j=0: p0 + 1000(.5 * .5) = 250.297301778751
    #   j=1: .5 + 1000(.5 * p0 + .1 * .25) = 174.150889375501;  j=2: .25 + 1000(.1 * .5) = 50.25
    stats = bundle([sample(lp) for lp in SAR_LP], matrix(np.eye(3), similarity=G3), SAR_R)
    expected = -(LN(250.297301778751) + LN(174.150889375501) + LN(50.25)) / 3
    assert score("sar", stats) == pytest.approx(expected, abs=TOL)
    # stop step dropped: s0 [ln .5] -> .5; s1 keeps its only step -> .5; s2 [ln 1/8, ln .5]
    #   with R (1, 0) -> 1/8. j=0: .5 + 250 = 250.5; j=1: .5 + 1000(.25 + .0125) = 263;
    #   j=2: .125 + 50 = 50.125
    expected = -(LN(250.5) + LN(263) + LN(50.125)) / 3
    assert score("sar", stats, EXCLUDE) == pytest.approx(expected, abs=TOL)


def test_sar_sign_and_errors():
    same = [sample([LN(.5), LN(.5)])] * 3
    rel = [[1, 1]] * 3
    assert score("sar", bundle(same, matrix(np.eye(3), similarity=np.ones((3, 3))), rel)) < \
        score("sar", bundle(same, matrix(np.eye(3)), rel))
    assert math.isnan(score("sar", bundle([], matrix(np.zeros((0, 0))), [])))
    assert math.isnan(score("sar", bundle([sample([])], agree(1), [[]])))
    with pytest.raises(ValueError, match="relevance weights"):
        score("sar", bundle(same, matrix(np.eye(3)), [[1, 1], [1], [1, 1]]))
    with pytest.raises(ValueError, match="sequences"):
        score("sar", bundle(same, matrix(np.eye(3)), rel[:2]))


# --------------------------------------------------------------------------- SeaKR
def hidden_sample(vector, text="answer"):
    hidden = np.full((2, 3), 50.0)
    hidden[0] = vector  # row 0 = layer 15, the middle recorded layer
    return sample(text=text, hidden=hidden)


def test_seakr_eigen_score_drops_blank_samples():
    # kept: z1 = (6, 5, 4), z2 = (-2, -5, -2): centred (1, 0, -1), (1, -2, 1), orthogonal,
    # Sigma = diag(2, 6): U = (ln 2.001 + ln 6.001)/2 = 1.242786588805
    kept = [hidden_sample([6, 5, 4], "Paris"), hidden_sample([-2, -5, -2], "Lyon")]
    blank = hidden_sample([9, -7, 3], "  \n")
    stats = bundle([kept[0], blank, kept[1]])
    assert score("seakr_eigen_score", stats) == pytest.approx(1.242786588805, abs=EXACT)
    assert score("eigenscore", stats) != pytest.approx(1.242786588805, abs=1e-3)
    assert score("eigenscore", bundle(kept)) == pytest.approx(1.242786588805, abs=EXACT)
    assert math.isnan(score("seakr_eigen_score", bundle([kept[0], blank])))
    assert math.isnan(score("seakr_eigen_score", bundle([])))
    # agreeing embeddings score lower than diverse ones
    assert score("seakr_eigen_score", bundle([hidden_sample([1, 2, 3])] * 3)) < \
        score("seakr_eigen_score", bundle(kept))
