"""Tests for the trained estimators: density (MD, RMD, RDE), probes and hybrids.

Hand-computed values use tiny 2-D sequence embeddings. With train points
(0,0), (2,0), (0,2), (2,2):

    mu = (1, 1),  Sigma = (1/3) sum (x-mu)(x-mu)^T = (4/3) I   (unbiased, n - 1 = 3)
    jitter = 1e-6 * mean(diag Sigma) = 1e-6 * 4/3, and Sigma + jitter I is PD at once, so
    Sigma + jitter I = (4/3)(1 + 1e-6) I
    MD((3,1)) = sqrt(|(2,0)|^2 / ((4/3)(1 + 1e-6))) = sqrt(3 / (1 + 1e-6))

The same points shifted by (10, 0) as background give MD_bg((3,1)) =
sqrt(64 * 3/4 / (1 + 1e-6)) = sqrt(48 / (1 + 1e-6)).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.covariance import MinCovDet
from sklearn.decomposition import KernelPCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier

from bench.models.outputs import Generation, SampleSet
from estimators import density, hybrid, probes  # noqa: F401  (registers the estimators)
from estimators.base import (
    ESTIMATORS,
    GREEDY,
    SAMPLES,
    BackgroundEmbeddings,
    FitData,
    FittedState,
    StatBundle,
    TrainedEstimator,
    create,
)
from estimators.density import kpca_project
from estimators.fitting import (
    Model,
    cholesky_with_jitter,
    dev_split,
    export_logistic,
    export_mlp,
    fraction_split,
    logistic_proba,
    mlp_proba,
    select_and_refit,
)
from estimators.hybrid import (
    CLASSIFIERS,
    HybridUE,
    build_classifier,
    classifier_proba,
    export_classifier,
    union_requires,
)
from estimators.probes import majority_agreement, pseudo_labels

GARBAGE = 99.0   # fills hidden-state rows an estimator must not read
JIT = 1 + 1e-6   # the (1 + jitter / variance) factor of the isotropic examples
TRAINED = ("mahalanobis_distance", "relative_mahalanobis_distance", "rde", "saplma",
           "linear_probe", "label_free_probe", "hybrid_ue", "ppl_md")


# --------------------------------------------------------------------------- builders
def gen(emb=(0.0, 0.0), *, last=None, prompt_last=None, logprobs=(-0.5,), text="a",
        entropies=None) -> Generation:
    """A Generation with layers (1, 2): layer 2 (last) carries the sequence embedding
    ``emb`` exactly, layer 1 (middle) carries ``last`` / ``prompt_last``.

    sequence_hidden_mean = (5 emb + n emb - emb) / (5 + n - 1) = emb for n steps.
    """
    emb = np.asarray(emb, dtype=np.float32)
    d = emb.shape[0]
    junk = np.full(d, GARBAGE, dtype=np.float32)
    last = np.zeros(d, np.float32) if last is None else np.asarray(last, np.float32)
    prompt_last = (np.zeros(d, np.float32) if prompt_last is None
                   else np.asarray(prompt_last, np.float32))
    lp = np.asarray(logprobs, dtype=np.float32)
    n = lp.shape[0]
    return Generation(
        text=text, token_ids=np.arange(n, dtype=np.int64), token_logprobs=lp,
        entropies=(-lp if entropies is None else np.asarray(entropies, np.float32)),
        mean_logprobs=np.zeros(n, np.float32), logsumexp=np.zeros(n, np.float32),
        topk_ids=np.zeros((n, 2), np.int64), topk_logprobs=np.zeros((n, 2), np.float32),
        sampling_logprobs=lp, root_mass_t2=np.zeros(n, np.float32),
        hidden_mean=np.stack([junk, emb]), hidden_last=np.stack([last, junk]),
        prompt_hidden_mean=np.stack([junk, emb]), prompt_hidden_last=np.stack([prompt_last, emb]),
        layers=np.array([1, 2], np.int64), token_texts=tuple(f"t{i}" for i in range(n)),
        stop_reason="eos", prompt_tokens=5, vocab_size=4)


def bundle(greedy: Generation, samples=(), qid="q") -> StatBundle:
    return StatBundle(qid, {GREEDY: greedy,
                            SAMPLES: SampleSet(tuple(samples), temperature=1.0, top_k=50)})


def points_data(points, **kwargs) -> FitData:
    bundles = [bundle(gen(p), qid=f"q{i}") for i, p in enumerate(points)]
    return FitData(bundles, np.zeros(len(bundles), np.int64), **kwargs)


def toy(n: int, seed: int, d: int = 6):
    """Questions every trained estimator can fit on; label 1 (needs retrieval) questions
    have shifted hidden states, lower log-probs and samples that disagree."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    bundles = []
    for i, label in enumerate(y):
        shift = 4.0 * label
        emb, last, prompt = (rng.normal(size=d) + shift for _ in range(3))
        if label:
            texts, greedy_text = ["london", "berlin", "rome"], "madrid"
        else:
            texts, greedy_text = ["Paris", "paris.", "The Paris"], "paris"
        samples = [gen(emb, last=rng.normal(size=d) * (1 + 3 * label), text=t,
                       logprobs=(-0.2 - label,)) for t in texts]
        greedy = gen(emb, last=last, prompt_last=prompt, text=greedy_text,
                     logprobs=(-0.1 - 2 * label - rng.uniform(), -0.3))
        bundles.append(bundle(greedy, samples, qid=f"q{i}"))
    return bundles, y


def background(seed: int, m: int = 30, d: int = 6):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(m, 2, d)).astype(np.float32)
    return lambda: BackgroundEmbeddings(hidden, np.array([1, 2]))


def toy_fit(n=40, seed=0, labels=None) -> tuple[FitData, np.ndarray]:
    bundles, y = toy(n, seed)
    return FitData(bundles, y if labels is None else labels, seed=seed,
                   background=background(seed)), y


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", TRAINED)
def test_declarations(name):
    cls = ESTIMATORS[name]
    assert issubclass(cls, TrainedEstimator)
    assert cls.training in ("fit", "supervised", "label-free")
    assert cls.summary and cls.__doc__ and GREEDY in cls.requires


def test_declared_kinds_and_study_names():
    kinds = {n: (ESTIMATORS[n].family, ESTIMATORS[n].training, ESTIMATORS[n].study_name)
             for n in TRAINED}
    assert kinds["mahalanobis_distance"] == ("internal", "fit", "MahalanobisDistanceSeq_decoder")
    assert kinds["relative_mahalanobis_distance"][2] == "RelativeMahalanobisDistanceSeq_decoder"
    assert kinds["rde"] == ("internal", "fit", "RDESeq_decoder")
    assert kinds["saplma"][:2] == kinds["linear_probe"][:2] == ("probe", "supervised")
    assert kinds["label_free_probe"][1] == "label-free"
    assert ESTIMATORS["label_free_probe"].requires == (GREEDY, SAMPLES)
    assert kinds["hybrid_ue"] == ("hybrid", "supervised", "hybrid")
    assert kinds["ppl_md"][:2] == ("hybrid", "fit")


@pytest.mark.parametrize("name", TRAINED)
def test_score_before_fit_raises(name):
    bundles, _ = toy(2, 0)
    est = create(name)
    with pytest.raises(RuntimeError, match="not fitted"):
        est.score(bundles[0])
    with pytest.raises(RuntimeError, match="not fitted"):
        est.get_state()


# --------------------------------------------------------------------------- density
SQUARE = [(0, 0), (2, 0), (0, 2), (2, 2)]


def test_mahalanobis_hand_values():
    est = create("mahalanobis_distance")
    est.fit(points_data(SQUARE))
    assert est.get_state().meta["jitter"] == pytest.approx(1e-6 * 4 / 3, rel=1e-12)
    assert est.score(bundle(gen((3, 1)))) == pytest.approx(math.sqrt(3 / JIT), abs=1e-12)
    assert est.score(bundle(gen((1, 3)))) == pytest.approx(math.sqrt(3 / JIT), abs=1e-12)
    assert est.score(bundle(gen((1, 1)))) == pytest.approx(0.0, abs=1e-12)
    # (3, 3): |d|^2 = 8 -> MD = sqrt(8 * 3/4 / JIT) = sqrt(6 / JIT)
    assert est.score(bundle(gen((3, 3)))) == pytest.approx(math.sqrt(6 / JIT), abs=1e-12)


def test_mahalanobis_correlated_hand_values():
    # mu = (1,1); centred rows (-1,-1),(0,0),(1,1),(0,-1),(0,1): Sigma = [[.5,.5],[.5,1]],
    # Sigma^-1 = [[4,-2],[-2,2]]. d = (1,0): d'S^-1 d = 4 -> 2; d = (1,1): 4-4+2 = 2 -> sqrt 2.
    # jitter 1e-6 * 0.75 shifts these by < 1e-5.
    est = create("mahalanobis_distance")
    est.fit(points_data([(0, 0), (1, 1), (2, 2), (1, 0), (1, 2)]))
    assert est.score(bundle(gen((2, 1)))) == pytest.approx(2.0, abs=1e-5)
    assert est.score(bundle(gen((2, 2)))) == pytest.approx(math.sqrt(2), abs=1e-5)


def test_jitter_grows_tenfold_until_cholesky_succeeds():
    cov = np.array([[1.0, 0.0], [0.0, -1e-3]])   # indefinite: needs jitter > 1e-3
    lower, jitter = cholesky_with_jitter(cov)
    # start 1e-6 * mean diag = 4.995e-7; x10 four times -> 4.995e-3 (x10 three times: 4.995e-4 < 1e-3)
    assert jitter == pytest.approx(4.995e-3, rel=1e-9)
    np.testing.assert_allclose(lower @ lower.T, cov + jitter * np.eye(2), atol=1e-15)


def test_relative_mahalanobis_hand_values():
    train = points_data(SQUARE).bundles
    bg = np.full((4, 2, 2), GARBAGE, np.float32)   # layer-1 rows must not be read
    bg[:, 1] = np.array(SQUARE) + np.array([10, 0])
    data = FitData(train, np.zeros(4, np.int64),
                   background=lambda: BackgroundEmbeddings(bg, np.array([1, 2])))
    est = create("relative_mahalanobis_distance")
    est.fit(data)
    # MD_train((3,1)) = sqrt(3/JIT); background mean (11,1): d = (-8,0), MD = sqrt(48/JIT)
    assert est.score(bundle(gen((3, 1)))) == pytest.approx(
        math.sqrt(3 / JIT) - math.sqrt(48 / JIT), abs=1e-12)
    # at the background mean: MD_train = sqrt(100 * 3/4 / JIT), MD_bg = 0
    assert est.score(bundle(gen((11, 1)))) == pytest.approx(math.sqrt(75 / JIT), abs=1e-12)


def test_relative_mahalanobis_background_errors():
    with pytest.raises(ValueError, match="background"):
        create("relative_mahalanobis_distance").fit(points_data(SQUARE))
    wrong_layer = FitData(points_data(SQUARE).bundles, np.zeros(4),
                          background=lambda: BackgroundEmbeddings(np.zeros((3, 1, 2)),
                                                                  np.array([7])))
    with pytest.raises(ValueError, match="layer 2"):
        create("relative_mahalanobis_distance").fit(wrong_layer)


def test_rde_matches_sklearn_kernel_pca_and_min_cov_det():
    data, _ = toy_fit(30, seed=3)
    est = create("rde")
    est.fit(data)
    state = est.get_state()
    x_train = np.stack([b[GREEDY].sequence_hidden_mean()[1] for b in data.bundles]).astype(float)
    kpca = KernelPCA(n_components=29, kernel="rbf", random_state=3)
    z_train = kpca.fit_transform(x_train)
    mcd = MinCovDet(random_state=3).fit(z_train)
    test_bundles, _ = toy(6, seed=4)
    x_test = np.stack([b[GREEDY].sequence_hidden_mean()[1] for b in test_bundles]).astype(float)
    assert state.meta["n_components"] == 29 and state.meta["gamma"] == 1 / 6
    z_sklearn = kpca.transform(x_test)
    scale = np.abs(z_sklearn).max()
    np.testing.assert_allclose(kpca_project(x_test, state.arrays, state.meta["gamma"]),
                               z_sklearn, atol=1e-8 * scale)
    expected = mcd.mahalanobis(z_sklearn)   # squared distance
    got = np.array([est.score(b) for b in test_bundles])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# --------------------------------------------------------------------------- probes
def test_logistic_and_mlp_exports_match_sklearn():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 5)), (rng.uniform(size=50) > 0.5).astype(int)
    test = rng.normal(size=(20, 5))
    lr = LogisticRegression(C=0.3).fit(x, y)
    np.testing.assert_allclose(logistic_proba(export_logistic(lr), test),
                               lr.predict_proba(test)[:, 1], rtol=1e-12)
    mlp = MLPClassifier(hidden_layer_sizes=(7, 4), max_iter=300, random_state=0).fit(x, y)
    np.testing.assert_allclose(mlp_proba(export_mlp(mlp), test),
                               mlp.predict_proba(test)[:, 1], rtol=1e-10)


@pytest.mark.parametrize("name", ["saplma", "linear_probe", "label_free_probe"])
def test_probes_separate_toy_classes(name):
    data, _ = toy_fit(40, seed=0)
    est = create(name)
    est.fit(data)
    test_bundles, y = toy(20, seed=1)
    scores = np.array([est.score(b) for b in test_bundles])
    assert np.all((scores >= 0) & (scores <= 1))
    assert roc_auc_score(y, scores) == 1.0
    assert scores[y == 1].min() > scores[y == 0].max()


def test_probes_read_their_own_features():
    # Only saplma's feature (hidden_last) separates: linear_probe must not benefit.
    rng = np.random.default_rng(5)
    y = np.arange(40) % 2
    bundles = [bundle(gen(rng.normal(size=4), last=rng.normal(size=4) + 5 * label,
                          prompt_last=rng.normal(size=4))) for label in y]
    data = FitData(bundles, y, seed=0)
    saplma, linear = create("saplma"), create("linear_probe")
    saplma.fit(data)
    linear.fit(data)
    train_auc = {e.name: roc_auc_score(y, [e.score(b) for b in bundles]) for e in (saplma, linear)}
    assert train_auc["saplma"] == 1.0 and train_auc["linear_probe"] < 0.95


def test_majority_agreement_and_pseudo_labels():
    assert majority_agreement("The Paris.", ["paris", "Paris", "london"])   # 2/3 > 1/2
    assert not majority_agreement("Paris", ["paris", "london", "rome", "Paris"])  # 2/4
    assert not majority_agreement("london", ["paris", "paris", "london"])
    assert not majority_agreement("paris", [])
    bundles = [bundle(gen(text="a"), [gen(text="A"), gen(text="a")]),
               bundle(gen(text="b"), [gen(text="a"), gen(text="a")])]
    np.testing.assert_array_equal(pseudo_labels(bundles), [0, 1])


class Poison:
    """Labels that fail on any use: the label-free probe must never touch them."""

    def __getattr__(self, item):
        raise AssertionError("label_free_probe read FitData.needs_retrieval")

    def __array__(self, *args, **kwargs):
        raise AssertionError("label_free_probe read FitData.needs_retrieval")


def test_label_free_probe_never_reads_gold_labels():
    bundles, y = toy(40, seed=0)
    states = []
    for labels in (Poison(), y, 1 - y, np.full(7, 3)):
        est = create("label_free_probe")
        est.fit(FitData(bundles, labels, seed=0))
        states.append(est.get_state())
    for state in states[1:]:
        assert state.meta == states[0].meta
        for key, value in states[0].arrays.items():
            np.testing.assert_array_equal(state.arrays[key], value)


# --------------------------------------------------------------------------- hybrids
def test_hybrid_requires_union_of_members():
    assert HybridUE.requires == (GREEDY, SAMPLES)
    assert union_requires(("perplexity", "mean_token_entropy")) == (GREEDY,)

    class GreedyOnly(HybridUE):
        name = "test_greedy_only_hybrid"   # not registered
        members = ("perplexity", "max_token_entropy")

    assert GreedyOnly.requires == (GREEDY,)
    with pytest.raises(TypeError, match="trained"):
        union_requires(("perplexity", "rde"))
    with pytest.raises(KeyError, match="nope"):
        union_requires(("nope",))


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_classifier_exports_match_sklearn(kind):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    test = rng.normal(size=(25, 3))
    est = build_classifier(kind, len(y), seed=0).fit(x, y)
    np.testing.assert_allclose(classifier_proba(export_classifier(kind, est, x, y), test),
                               est.predict_proba(test)[:, 1], rtol=1e-10, atol=1e-12)


def test_hybrid_features_map_nan_to_zero():
    est = HybridUE()
    one_sample = bundle(gen(logprobs=(-1.0, -3.0), entropies=(0.5, 1.5)), [gen(text="x")])
    features = est.features([one_sample])
    # mean entropy 1, max entropy 1.5, perplexity 2, lexical similarity NaN (one sample) -> 0,
    # eigenscore of one zero vector: log(0 + 1e-3) / 1
    np.testing.assert_allclose(features, [[1.0, 1.5, 2.0, 0.0, math.log(1e-3)]], rtol=1e-6)


def test_hybrid_separates_toy_classes():
    data, _ = toy_fit(40, seed=0)
    est = create("hybrid_ue")
    est.fit(data)
    meta = est.get_state().meta
    assert meta["model"]["spec"]["kind"] in CLASSIFIERS
    assert set(meta["dev_auc"]) == set(CLASSIFIERS)
    test_bundles, y = toy(20, seed=1)
    assert roc_auc_score(y, [est.score(b) for b in test_bundles]) == 1.0


def test_ppl_md_hand_values():
    # train perplexities 1..10 (one token, log p = -k); embeddings on a small grid
    bundles = [bundle(gen((k % 3, k // 3), logprobs=(-float(k),))) for k in range(1, 11)]
    est = create("ppl_md")
    est.fit(FitData(bundles, np.zeros(10), seed=0))
    state = est.get_state()
    assert state.meta["n_md_fit"] == 7 and state.meta["n_md_reference"] == 3
    np.testing.assert_array_equal(state.arrays["ppl_reference"], np.arange(1, 11))
    # A far point has MD above all 3 reference MDs: rank_TR(MD) = 1.
    # perplexity 5.5: 5 of the 10 train values are <= 5.5 -> U = (0.5 + 1) / 2
    assert est.score(bundle(gen((100, 100), logprobs=(-5.5,)))) == pytest.approx(0.75, abs=1e-12)
    # perplexity 0.5 is below every train value -> (0 + 1) / 2; 10 is <= all ten -> (1 + 1) / 2
    assert est.score(bundle(gen((100, 100), logprobs=(-0.5,)))) == pytest.approx(0.5, abs=1e-12)
    assert est.score(bundle(gen((100, 100), logprobs=(-10.0,)))) == pytest.approx(1.0, abs=1e-12)

# --------------------------------------------------------------------------- fitting helpers
def test_splits_are_seeded_stratified_and_disjoint():
    y = np.array([0] * 10 + [1] * 20)
    fit, dev = dev_split(30, 0.2, seed=0, labels=y)
    assert len(dev) == 6 and (y[dev] == 1).sum() == 4   # 2 of 10 zeros, 4 of 20 ones
    assert not set(fit) & set(dev) and len(fit) + len(dev) == 30
    np.testing.assert_array_equal(dev, dev_split(30, 0.2, seed=0, labels=y)[1])
    assert not np.array_equal(dev, dev_split(30, 0.2, seed=1, labels=y)[1])
    a, b = fraction_split(10, 0.7, seed=0)
    assert len(a) == 7 and len(b) == 3 and not set(a) & set(b)


def test_select_and_refit_picks_best_dev_auc_then_refits_on_all():
    x = np.arange(40, dtype=float)[:, None]
    y = (np.arange(40) >= 20).astype(int)
    seen = []

    def fit(xs, ys, spec):
        seen.append(len(ys))
        return Model({"kind": "sign", "sign": spec["sign"]}, {})

    def predict(model, xs):
        return model.meta["sign"] * xs[:, 0]

    model, aucs = select_and_refit(x, y, [{"sign": -1}, {"sign": 1}], fit, predict,
                                   seed=0, dev_fraction=0.25)
    assert aucs == [0.0, 1.0] and model.meta["spec"] == {"sign": 1}
    assert seen == [30, 30, 40]   # two dev fits on 30 rows, the refit on all 40


# --------------------------------------------------------------------------- state
def _scores(est, bundles):
    return np.array([est.score(b) for b in bundles])


@pytest.mark.parametrize("name", TRAINED)
def test_deterministic_and_state_round_trip(name, tmp_path):
    data, _ = toy_fit(40, seed=0)
    test_bundles, _ = toy(8, seed=2)
    first, second = create(name), create(name)
    first.fit(data)
    second.fit(data)
    scores = _scores(first, test_bundles)
    assert np.all(np.isfinite(scores))
    np.testing.assert_array_equal(_scores(second, test_bundles), scores)

    state = first.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.arrays.values())
    np.savez(tmp_path / "state.npz", **state.arrays)
    (tmp_path / "meta.json").write_text(json.dumps(state.meta, allow_nan=False))
    with np.load(tmp_path / "state.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    restored = create(name)
    restored.set_state(FittedState(json.loads((tmp_path / "meta.json").read_text()), arrays))
    np.testing.assert_array_equal(_scores(restored, test_bundles), scores)


def test_other_seed_changes_a_seeded_fit():
    data, _ = toy_fit(40, seed=0)
    other = FitData(data.bundles, data.needs_retrieval, seed=1, background=data.background)
    a, b = create("saplma"), create("saplma")
    a.fit(data)
    b.fit(other)
    assert not np.array_equal(a.get_state().arrays["model/coef0"],
                              b.get_state().arrays["model/coef0"])


def test_set_state_rejects_another_estimators_state():
    est = create("mahalanobis_distance")
    est.fit(points_data(SQUARE))
    with pytest.raises(ValueError, match="mahalanobis_distance"):
        create("rde").set_state(est.get_state())


def test_pseudo_labels_fall_back_to_a_median_split_when_the_majority_rule_is_one_class():
    # Agreement shares 0, 0.1, 0.3, 0.4: no greedy answer has majority support, so the
    # majority rule gives all 1; the median split (median 0.2) gives 1, 1, 0, 0.
    def samples(agreeing):
        return [gen(text="paris")] * agreeing + [gen(text=f"other{i}")
                                                 for i in range(10 - agreeing)]
    bundles = [bundle(gen(text="Paris"), samples(k)) for k in (0, 1, 3, 4)]
    np.testing.assert_array_equal(pseudo_labels(bundles), [1, 1, 0, 0])
