"""Trained probes on hidden states: SAPLMA, a linear probe, a label-free linear probe.

Each probe reads one hidden-state vector of the middle recorded layer (the
smallest recorded index > 0; the backend records ``num_layers // 2`` and the
last layer), standardises it with train statistics, and outputs
U = P(needs retrieval). Hyper-parameters are chosen by ROC-AUC on a seeded,
stratified dev part of train (``FitData.dev_fraction``), then the chosen
probe is refitted on all of train.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from bench.metrics.qa import f1
from bench.models.outputs import Generation
from estimators.base import (
    GREEDY,
    SAMPLES,
    FitData,
    FittedState,
    StatBundle,
    Statistic,
    finite_or_nan,
    register,
)
from estimators.fitting import (
    PROBA_BY_KIND,
    FittedEstimator,
    Model,
    binary_labels,
    export_logistic,
    export_mlp,
    json_floats,
    middle_layer,
    nest,
    predict_scaled,
    quiet_fit,
    select_and_refit,
    stack_features,
    unnest,
)

#: SAPLMA's hidden layers (Azaria & Mitchell 2023).
SAPLMA_HIDDEN = (256, 128, 64)
#: Iteration caps (epochs) SAPLMA chooses from on dev.
SAPLMA_MAX_ITER = (50, 200)
#: Inverse regularisation strengths the logistic probes choose from on dev.
PROBE_C = (0.01, 0.1, 1.0, 10.0)
#: lbfgs iteration cap of the logistic probes (d ~ 10^3 features, a few hundred rows).
PROBE_MAX_ITER = 5000


class _Probe(FittedEstimator):
    """Fit a classifier on one hidden-state vector per question; U = P(label 1)."""

    family = "probe"
    # Annotated so subclasses may declare more statistics (label_free_probe adds SAMPLES).
    requires: ClassVar[tuple[Statistic, ...]] = (GREEDY,)
    training = "supervised"

    def feature(self, greedy: Generation, layer: int) -> np.ndarray:
        raise NotImplementedError

    def specs(self) -> list[dict]:
        raise NotImplementedError

    def fit_model(self, x: np.ndarray, y: np.ndarray, spec: dict, seed: int) -> Model:
        raise NotImplementedError

    def labels(self, data: FitData) -> np.ndarray:
        """Targets: 1 where the closed-book answer is wrong."""
        return binary_labels(data.needs_retrieval, len(data.bundles))

    @staticmethod
    def predict(model: Model, x: np.ndarray) -> np.ndarray:
        return PROBA_BY_KIND[model.meta["kind"]](model, x)

    def fit(self, data: FitData) -> None:
        if not data.bundles:
            raise ValueError("cannot fit on an empty train set")
        layer = middle_layer(data.bundles[0][GREEDY].layers)
        x = stack_features(data.bundles, lambda b: self.feature(b[GREEDY], layer))
        y = self.labels(data)
        model, aucs = select_and_refit(
            x, y, self.specs(), lambda xs, ys, spec: self.fit_model(xs, ys, spec, data.seed),
            self.predict, data.seed, data.dev_fraction)
        meta, arrays = nest("model", model)
        self.set_state(FittedState(
            {"estimator": self.name, "layer": layer, "model": meta, "dev_auc": json_floats(aucs),
             "n_train": len(y), "positive_rate": float(y.mean())}, arrays))

    def score(self, stats: StatBundle) -> float:
        state = self._fitted()
        x = np.asarray(self.feature(stats[GREEDY], state.meta["layer"]), dtype=np.float64)
        if not np.all(np.isfinite(x)):
            return float("nan")
        model = unnest("model", state, "model")
        return finite_or_nan(predict_scaled(model, x[None, :], self.predict)[0])


@register
class Saplma(_Probe):
    """SAPLMA: an MLP on the hidden state that emitted the answer's last token.

        U = sigma(f_theta(z)),  z = standardised h_mid(last step),

    f_theta an MLP d -> 256 -> 128 -> 64 -> 1 with ReLU, trained with binary
    cross-entropy (sklearn ``MLPClassifier``, adam, ``random_state = seed``)
    on y = 1[needs retrieval]; ``max_iter`` in (50, 200) is chosen on dev.
    h_mid(last step) is ``Generation.hidden_last`` of the greedy answer (the
    step that emitted the stop token) at the middle recorded layer; the
    original takes one middle-to-upper layer at the last token.

    References
    ----------
    Azaria & Mitchell 2023, "The Internal State of an LLM Knows When It's Lying",
    arXiv 2304.13734; ``saplma.py`` in ArtemVazh/token_mahalanobis_distance.
    """

    name = "saplma"
    summary = "MLP(256,128,64) on middle-layer last-step state -> P(needs retrieval)"

    def feature(self, greedy, layer):
        return greedy.hidden_last[greedy.layer_index(layer)]

    def specs(self):
        return [{"max_iter": m} for m in SAPLMA_MAX_ITER]

    def fit_model(self, x, y, spec, seed):
        est = MLPClassifier(hidden_layer_sizes=SAPLMA_HIDDEN, activation="relu", solver="adam",
                            max_iter=spec["max_iter"], random_state=seed)
        return export_mlp(quiet_fit(est, x, y))


@register
class LinearProbe(_Probe):
    """Logistic regression on the last prompt token's hidden state.

        U = sigma(w^T z + b),  z = standardised h_mid(last prompt token),

    trained on y = 1[needs retrieval] with L2 strength C in (0.01, 0.1, 1, 10)
    chosen on dev (sklearn lbfgs, ``random_state = seed``). The state is read
    before any answer token (``Generation.prompt_hidden_last``), so the probe
    could decide before generating.

    References
    ----------
    Kadavath et al. 2022, "Language Models (Mostly) Know What They Know",
    arXiv 2207.05221 (P(IK)); Azaria & Mitchell 2023, arXiv 2304.13734.
    """

    name = "linear_probe"
    summary = "logistic regression on middle-layer last-prompt-token state"

    def feature(self, greedy, layer):
        return greedy.prompt_hidden_last[greedy.layer_index(layer)]

    def specs(self):
        return [{"C": c} for c in PROBE_C]

    def fit_model(self, x, y, spec, seed):
        est = LogisticRegression(C=spec["C"], max_iter=PROBE_MAX_ITER, random_state=seed)
        return export_logistic(est.fit(x, y))


#: Token F1 at which a sample counts as giving the greedy answer.
AGREEMENT_F1 = 0.5
#: Below this share of the minority class, the majority rule is uninformative.
MIN_MINORITY_SHARE = 0.1


def agreement_share(greedy_text: str, sample_texts: list[str]) -> float:
    """Share of samples that give the greedy answer (token F1 >= 0.5 after normalising)."""
    if not sample_texts:
        return 0.0
    return float(np.mean([f1(s, [greedy_text]) >= AGREEMENT_F1 for s in sample_texts]))


def majority_agreement(greedy_text: str, sample_texts: list[str]) -> bool:
    """Do more than half of the samples give the greedy answer? False without samples."""
    return agreement_share(greedy_text, sample_texts) > 0.5


def pseudo_labels(bundles) -> np.ndarray:
    """y~ = 1 where the samples do not support the greedy answer, one per bundle.

    The rule is the majority one, y~ = 1 - 1[more than half of the samples
    agree]. When it leaves fewer than 10% of train in one class (a small model
    sampled at T = 1 rarely repeats itself: on the shared data 95-98% of
    greedy answers lack majority support), it is uninformative, and the split
    falls back to the train median of the agreement share: y~ = 1[share <=
    median] (still no gold answer read).
    """
    shares = np.array([agreement_share(b[GREEDY].text, b[SAMPLES].texts) for b in bundles])
    labels = (shares <= 0.5).astype(np.int64)
    if min(labels.mean(), 1 - labels.mean()) >= MIN_MINORITY_SHARE:
        return labels
    by_median = (shares <= np.median(shares)).astype(np.int64)
    return by_median if 0 < by_median.sum() < len(by_median) else labels


@register
class LabelFreeProbe(LinearProbe):
    """``linear_probe`` trained on self-consistency pseudo-labels instead of gold.

        y~ = 1 - 1[more than N/2 samples give the greedy answer (token F1 >= 0.5)],
        (falling back to a train-median split of that share when one class would
        hold < 10% of train; see :func:`pseudo_labels`),
        U = sigma(w^T z + b)  fitted on y~ (C chosen on dev by AUC against y~).

    Same features and model as ``linear_probe``; it never reads
    ``FitData.needs_retrieval``, so it needs no gold answers, only the N
    samples of each train question. At test time it reads the greedy pass
    only (the samples are declared because fitting needs them).

    References
    ----------
    Self-consistency as a label: Wang et al. 2022, arXiv 2203.11171; probe as
    ``linear_probe``. An arbench variant with no single reference.
    """

    name = "label_free_probe"
    requires = (GREEDY, SAMPLES)
    training = "label-free"
    summary = "linear_probe fitted on pseudo-labels: the samples do not support the greedy answer"

    def labels(self, data: FitData) -> np.ndarray:
        return pseudo_labels(data.bundles)
