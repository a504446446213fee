"""Hybrid estimators: a classifier over member scores (Hybrid UE) and PPL-MD rank mixing."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

# The member modules register the default members, so ESTIMATORS can resolve them.
from estimators import eigenscore, lexical_similarity, sequence_probability, token_entropy  # noqa: F401
from estimators.base import (
    ESTIMATORS,
    GREEDY,
    FitData,
    FittedState,
    StatBundle,
    Statistic,
    TrainedEstimator,
    create,
    finite_or_nan,
    register,
)
from estimators.density import sequence_embedding, train_embeddings
from estimators.fitting import (
    FittedEstimator,
    Model,
    binary_labels,
    export_logistic,
    export_mlp,
    fit_gaussian,
    fraction_split,
    json_floats,
    logistic_proba,
    mahalanobis,
    mlp_proba,
    nest,
    predict_scaled,
    quiet_fit,
    select_and_refit,
    share_at_most,
    unnest,
)

DEFAULT_MEMBERS = ("mean_token_entropy", "max_token_entropy", "perplexity",
                   "lexical_similarity", "eigenscore")


def union_requires(members: tuple[str, ...]) -> tuple[Statistic, ...]:
    """Statistics the members need, each once, in first-use order."""
    stats: list[Statistic] = []
    for member in members:
        if member not in ESTIMATORS:
            raise KeyError(f"hybrid member {member!r} is not a registered estimator")
        cls = ESTIMATORS[member]
        if issubclass(cls, TrainedEstimator):
            raise TypeError(f"hybrid member {member!r} is trained; members must be untrained")
        stats.extend(s for s in cls.requires if s not in stats)
    return tuple(stats)


def _knn_export(est, x: np.ndarray, y: np.ndarray) -> Model:
    return Model({"kind": "knn", "k": int(est.n_neighbors)},
                 {"train": x.copy(), "labels": y.astype(np.float64)})


def _knn_proba(model: Model, x: np.ndarray) -> np.ndarray:
    a = model.arrays
    dist = ((x[:, None, :] - a["train"][None, :, :]) ** 2).sum(axis=2)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :model.meta["k"]]
    return a["labels"][nearest].mean(axis=1)


def _tree_export(est, x: np.ndarray, y: np.ndarray) -> Model:
    tree = est.tree_
    value = tree.value[:, 0, :]
    # Class 1's share at each node; sklearn normalises value rows the same way.
    return Model({"kind": "tree"}, {
        "left": tree.children_left.astype(np.int64), "right": tree.children_right.astype(np.int64),
        "feature": tree.feature.astype(np.int64), "threshold": tree.threshold.astype(np.float64),
        "p1": value[:, list(est.classes_).index(1)] / value.sum(axis=1)})


def _tree_proba(model: Model, x: np.ndarray) -> np.ndarray:
    a = model.arrays
    # sklearn trees compare float32 features with float64 thresholds: x <= t goes left.
    xf = x.astype(np.float32)
    node = np.zeros(x.shape[0], dtype=np.int64)
    while True:
        inner = a["left"][node] >= 0
        if not inner.any():
            return a["p1"][node]
        rows = np.flatnonzero(inner)
        at = node[rows]
        go_left = xf[rows, a["feature"][at]] <= a["threshold"][at]
        node[rows] = np.where(go_left, a["left"][at], a["right"][at])


@dataclass(frozen=True)
class ClassifierKind:
    """How to build (n_fit, seed), export (fitted, x, y) and evaluate one classifier kind."""

    build: Callable[[int, int], Any]
    export: Callable[[Any, np.ndarray, np.ndarray], Model]
    proba: Callable[[Model, np.ndarray], np.ndarray]


#: The study's four classifiers (``UC/analyze_uncertainty.py``), tried in this order.
CLASSIFIER_KINDS: dict[str, ClassifierKind] = {
    "logistic": ClassifierKind(
        lambda n, seed: LogisticRegression(max_iter=15000, random_state=seed),
        lambda est, x, y: export_logistic(est), logistic_proba),
    "knn": ClassifierKind(lambda n, seed: KNeighborsClassifier(n_neighbors=min(15, n)),
                          _knn_export, _knn_proba),
    "mlp": ClassifierKind(lambda n, seed: MLPClassifier(max_iter=500, random_state=seed),
                          lambda est, x, y: export_mlp(est), mlp_proba),
    "tree": ClassifierKind(
        lambda n, seed: DecisionTreeClassifier(max_depth=3, random_state=seed),
        _tree_export, _tree_proba),
}
CLASSIFIERS = tuple(CLASSIFIER_KINDS)


def _kind(kind: str) -> ClassifierKind:
    try:
        return CLASSIFIER_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown classifier {kind!r}; known: {', '.join(CLASSIFIERS)}"
                         ) from None


def build_classifier(kind: str, n_fit: int, seed: int):
    """The study's classifier of this kind (sklearn defaults otherwise)."""
    return _kind(kind).build(n_fit, seed)


def export_classifier(kind: str, est, x: np.ndarray, y: np.ndarray) -> Model:
    """A fitted binary classifier as arrays (``x``, ``y``: what it was fitted on)."""
    return _kind(kind).export(est, x, y)


def classifier_proba(model: Model, x: np.ndarray) -> np.ndarray:
    """P(y = 1) of an exported classifier, in NumPy."""
    return _kind(model.meta["kind"]).proba(model, x)


def _fit_classifier(x: np.ndarray, y: np.ndarray, spec: dict, seed: int) -> Model:
    est = quiet_fit(build_classifier(spec["kind"], len(y), seed), x, y)
    return export_classifier(spec["kind"], est, x, y)


@register
class HybridUE(FittedEstimator):
    """Hybrid UE: a classifier over several estimators' scores.

        U = P(retrieve | x) = clf([u_1(x), ..., u_m(x)])  (``predict_proba[:, 1]``),

    u_i the ``members``' scores with NaN -> 0 (as the study), standardised on
    train (the study did not scale). clf is chosen by dev ROC-AUC among the
    study's four: LogisticRegression(max_iter=15000), kNN(k = min(15, n_fit)),
    MLP(max_iter=500), depth-3 decision tree, then refitted on all of train
    with y = 1[closed-book answer wrong]. Each is saved as arrays and
    evaluated in NumPy (coefficients, train points, MLP weights, tree nodes).

    Members: arXiv 2505.04253 used mean and max token entropy, SAR,
    EigValLaplacian and lexical similarity. The default replaces SAR and
    EigValLaplacian, which need an NLI / cross-encoder judge over all sample
    pairs, by perplexity and EigenScore, so the hybrid costs only the greedy
    pass and the samples. Subclasses may set another ``members`` tuple;
    ``requires`` is recomputed from it.

    References
    ----------
    Moskvoretskii et al. 2025, arXiv 2505.04253; ``UC/analyze_uncertainty.py``
    in s-nlp/AdaRAGUE (whose ``hybrid`` call does not run as committed).
    """

    name = "hybrid_ue"
    family = "hybrid"
    study_name = "hybrid"
    training = "supervised"
    summary = "best-on-dev classifier over member scores -> P(needs retrieval)"
    members: ClassVar[tuple[str, ...]] = DEFAULT_MEMBERS
    requires = union_requires(DEFAULT_MEMBERS)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "members" in cls.__dict__ and "requires" not in cls.__dict__:
            cls.requires = union_requires(cls.members)

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._members = [create(m, self.options) for m in self.members]

    def features(self, bundles) -> np.ndarray:
        """(n, m) member scores, NaN and +-inf -> 0 (the study's NaN policy)."""
        x = np.array([[m.score(b) for m in self._members] for b in bundles], dtype=np.float64)
        return np.where(np.isfinite(x), x, 0.0)

    def fit(self, data: FitData) -> None:
        if not data.bundles:
            raise ValueError("cannot fit on an empty train set")
        x = self.features(data.bundles)
        y = binary_labels(data.needs_retrieval, len(data.bundles))
        model, aucs = select_and_refit(
            x, y, [{"kind": k} for k in CLASSIFIERS],
            lambda xs, ys, spec: _fit_classifier(xs, ys, spec, data.seed),
            classifier_proba, data.seed, data.dev_fraction)
        meta, arrays = nest("model", model)
        self.set_state(FittedState(
            {"estimator": self.name, "members": list(self.members), "model": meta,
             "dev_auc": dict(zip(CLASSIFIERS, json_floats(aucs))), "n_train": len(y)}, arrays))

    def set_state(self, state: FittedState) -> None:
        if tuple(state.meta.get("members", ())) != tuple(self.members):
            raise ValueError(f"state was fitted on members {state.meta.get('members')}, "
                             f"this estimator has {list(self.members)}")
        super().set_state(state)

    def score(self, stats: StatBundle) -> float:
        state = self._fitted()
        model = unnest("model", state, "model")
        return finite_or_nan(predict_scaled(model, self.features([stats]), classifier_proba)[0])


@register
class PplMd(FittedEstimator):
    """Perplexity and Mahalanobis distance mixed by their train ranks.

        U = 1/2 [rank_TR(PPL(x)) + rank_TR(MD(x))],  rank_TR(v) = share of train values <= v,

    PPL the ``perplexity`` estimator (same EOS policy) with all train values
    as reference; MD as ``mahalanobis_distance`` (last-layer padding-masked
    sequence embedding) fitted on a seeded 70% of train and ranked against
    the MD of the other 30%, so the reference is not biased towards the fit.
    NaN when either score is NaN.

    References
    ----------
    LM-Polygraph ``estimators/ppl_md.py`` (upstream, ESTIMATORS.md §7).
    """

    name = "ppl_md"
    family = "hybrid"
    requires = (GREEDY,)
    training = "fit"
    summary = "mean of train ranks of perplexity and Mahalanobis distance"
    #: Share of train the Gaussian is fitted on; the rest is the MD reference.
    md_fit_fraction: ClassVar[float] = 0.7

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._perplexity = create("perplexity", self.options)

    def fit(self, data: FitData) -> None:
        layer, x = train_embeddings(data.bundles)
        ppl = np.array([self._perplexity.score(b) for b in data.bundles], dtype=np.float64)
        fit_idx, ref_idx = fraction_split(len(x), self.md_fit_fraction, data.seed)
        mean, whitening, jitter = fit_gaussian(x[fit_idx])
        md = mahalanobis(x[ref_idx], mean, whitening)
        ppl_ref, md_ref = np.sort(ppl[np.isfinite(ppl)]), np.sort(md[np.isfinite(md)])
        if not ppl_ref.size or not md_ref.size:
            raise ValueError(f"{self.name}: no finite train perplexity or MD to rank against")
        self.set_state(FittedState(
            {"estimator": self.name, "layer": layer, "jitter": jitter,
             "n_md_fit": int(fit_idx.size), "n_md_reference": int(ref_idx.size)},
            {"mean": mean, "whitening": whitening, "ppl_reference": ppl_ref,
             "md_reference": md_ref}))

    def score(self, stats: StatBundle) -> float:
        state = self._fitted()
        a = state.arrays
        ppl = self._perplexity.score(stats)
        md = mahalanobis(sequence_embedding(stats[GREEDY], state.meta["layer"]),
                         a["mean"], a["whitening"])[0]
        if not (math.isfinite(ppl) and math.isfinite(md)):
            return math.nan
        return 0.5 * (share_at_most(a["ppl_reference"], ppl) + share_at_most(a["md_reference"], md))
