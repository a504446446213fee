"""Need-retrieval labels, self-knowledge metrics and reference rows.

Definitions follow STUDY.md §2.3 and §4:

* need label ``y = 1 - InAcc(Never)``: a question "needs retrieval" iff the
  no-retrieval answer is wrong by In-Accuracy (whether the retrieval answer
  is right is ignored);
* ROC-AUC of ``y`` against a score (higher = more need), Spearman rho of
  the raw score against ``y``, accuracy of the retrieve decision against
  ``y``, and the over-/under-confidence cells of the normalised confusion
  matrix: over = (y 1, decision 0), under = (y 0, decision 1);
* beyond the study: PRR and AUPRC of the score (:mod:`bench.metrics.ranking`),
  ECE and Brier score of a predicted probability
  (:mod:`bench.metrics.calibration`);
* reference rows Never / Always / Ideal and the replay of a gate's
  decisions over precomputed Never and Always answers.

LMC convention (STUDY §4, §9.6): LMC = 1 + RC for gates and Ideal, 1 for
Never and Always.  Sampled generations, NLI and other auxiliary calls are
**not** counted; this is the paper-compatible number, not the full cost.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from bench.metrics.calibration import brier_score, expected_calibration_error
from bench.metrics.ranking import auprc, prediction_rejection_ratio

__all__ = [
    "QA_KEYS",
    "gate_row",
    "need_retrieval_labels",
    "reference_rows",
    "self_knowledge",
]

#: Per-question arrays expected from :func:`bench.metrics.qa.score_answers`.
QA_KEYS = ("in_accuracy", "em", "f1")


def _binary(x, name: str) -> np.ndarray:
    """Validate a 1-D array of 0/1 (or bool) values and return it as bool."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be boolean or numeric, got dtype {arr.dtype}")
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            raise ValueError(f"{name} must hold only 0/1, found {int(bad.sum())} other values")
    return arr.astype(bool)


def need_retrieval_labels(never_in_accuracy) -> np.ndarray:
    """Need-retrieval label per question: ``y = 1 - InAcc(Never)``.

    Parameters
    ----------
    never_in_accuracy : array_like of shape (n,)
        Per-question In-Accuracy (0/1) of the no-retrieval answer.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True where the no-retrieval answer is wrong.
    """
    return ~_binary(never_in_accuracy, "never_in_accuracy")


def _score_metrics(need: np.ndarray, score) -> tuple[float, float]:
    """ROC-AUC and Spearman rho of ``score`` against ``need`` (NaN if undefined)."""
    if score is None:
        return float("nan"), float("nan")
    s = np.asarray(score, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"score must be 1-D, got shape {s.shape}")
    if s.shape != need.shape:
        raise ValueError(f"score has {s.size} values but need has {need.size}")
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise ValueError(
            f"score has {n_nan} NaN value(s) of {s.size}; apply a NaN policy before scoring"
        )
    one_class = need.all() or not need.any()
    auc = float("nan") if one_class else float(roc_auc_score(need, s))
    constant = one_class or np.all(s == s[0])
    rho = float("nan") if constant else float(spearmanr(s, need.astype(float))[0])
    return auc, rho


def self_knowledge(need, decision, score=None, probability=None) -> dict[str, float]:
    """Self-knowledge metrics of a retrieve/skip gate.

    Parameters
    ----------
    need : array_like of shape (n,)
        Need-retrieval labels (0/1 or bool), e.g. from
        :func:`need_retrieval_labels`.
    decision : array_like of shape (n,)
        The gate's decisions (1/True = retrieve).
    score : array_like of shape (n,), optional
        Continuous score, higher = more need for retrieval (an uncertainty
        or a ``predict_proba`` column).  Must not contain NaN: the caller
        decides the NaN policy.
    probability : array_like of shape (n,), optional
        The gate's predicted P(needs retrieval), in [0, 1], when it has one.

    Returns
    -------
    dict of str to float
        ``roc_auc``
            ``sklearn.metrics.roc_auc_score(need, score)``.  NaN if ``score``
            is None or ``need`` has a single class (AUC undefined).
        ``spearman``
            ``scipy.stats.spearmanr(score, need)`` rho (ties get average
            ranks).  NaN if ``score`` is None or either side is constant.
        ``accuracy``
            Fraction of questions where ``decision == need``.
        ``over_confidence``
            Fraction of **all** questions with need 1 and decision 0
            (skipped retrieval although it was needed).
        ``under_confidence``
            Fraction of all questions with need 0 and decision 1
            (retrieved although the model knew the answer).
        ``prr``, ``auprc``
            Prediction–rejection ratio and area under the precision–recall
            curve of ``score`` (:mod:`bench.metrics.ranking`); NaN if
            ``score`` is None or ``need`` has a single class.
        ``ece``, ``brier``
            Only when ``probability`` is given: expected calibration error
            (10 equal-width bins) and Brier score of ``probability``
            (:mod:`bench.metrics.calibration`).

    Raises
    ------
    ValueError
        On length/shape mismatch, non-binary labels or decisions, or NaN
        scores (the message gives the NaN count).
    """
    y = _binary(need, "need")
    d = _binary(decision, "decision")
    if d.shape != y.shape:
        raise ValueError(f"decision has {d.size} values but need has {y.size}")
    auc, rho = _score_metrics(y, score)
    nan = float("nan")
    metrics = {
        "roc_auc": auc,
        "spearman": rho,
        "accuracy": float(np.mean(d == y)),
        "over_confidence": float(np.mean(y & ~d)),
        "under_confidence": float(np.mean(~y & d)),
        "prr": nan if score is None else prediction_rejection_ratio(y, score),
        "auprc": nan if score is None else auprc(y, score),
    }
    if probability is not None:
        metrics["ece"] = expected_calibration_error(y, probability)
        metrics["brier"] = brier_score(y, probability)
    return metrics


def _qa_arrays(scores: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    missing = [k for k in QA_KEYS if k not in scores]
    if missing:
        raise KeyError(f"{name} lacks {missing}; expected the dict from score_answers")
    out = {k: np.asarray(scores[k], dtype=float) for k in QA_KEYS}
    n = out["in_accuracy"].shape
    for k, v in out.items():
        if v.ndim != 1 or v.shape != n:
            raise ValueError(f"{name}[{k!r}] has shape {v.shape}, expected {n}")
    return out


def _replay(never: dict, always: dict, retrieve: np.ndarray) -> dict[str, np.ndarray]:
    """Per-question QA values: Always where ``retrieve``, Never elsewhere."""
    return {k: np.where(retrieve, always[k], never[k]) for k in QA_KEYS}


def _paired(never, always, n_decisions: int | None = None):
    nv = _qa_arrays(never, "never")
    al = _qa_arrays(always, "always")
    n = nv["in_accuracy"].size
    if al["in_accuracy"].size != n:
        raise ValueError(f"never has {n} questions but always has {al['in_accuracy'].size}")
    if n_decisions is not None and n_decisions != n:
        raise ValueError(f"decision has {n_decisions} values but never/always have {n}")
    if n == 0:
        raise ValueError("no questions")
    return nv, al


def _row(per_question: Mapping[str, np.ndarray], rc: float, lmc: float) -> dict[str, float]:
    row = {k: float(np.mean(per_question[k])) for k in QA_KEYS}
    row["rc"] = float(rc)
    row["lmc"] = float(lmc)
    return row


def gate_row(never, always, decision) -> dict[str, float]:
    """QA metrics and cost of replaying precomputed answers under a gate.

    Parameters
    ----------
    never, always : dict of str to numpy.ndarray
        Per-question ``in_accuracy``/``em``/``f1`` of the no-retrieval and
        the always-retrieve answers (from ``score_answers``), same order.
    decision : array_like of bool, shape (n,)
        True = retrieve (take the Always answer), False = answer from memory.

    Returns
    -------
    dict of str to float
        ``in_accuracy``, ``em``, ``f1``: means of the replayed per-question
        values; ``rc`` = mean(decision); ``lmc`` = 1 + rc.

    Notes
    -----
    ``lmc`` is the study's convention (STUDY §4, §9.6): one LLM call for
    the memory answer plus one per retrieval.  Samples drawn by the
    uncertainty estimator, NLI and other auxiliary model calls are NOT
    counted, so an all-True gate has lmc 2 while the Always reference row
    has lmc 1.
    """
    d = _binary(decision, "decision")
    nv, al = _paired(never, always, d.size)
    rc = float(np.mean(d))
    return _row(_replay(nv, al, d), rc, 1.0 + rc)


def reference_rows(never, always) -> dict[str, dict[str, float]]:
    """Never, Always and Ideal reference rows (STUDY §2.3).

    Parameters
    ----------
    never, always : dict of str to numpy.ndarray
        Per-question ``in_accuracy``/``em``/``f1`` of the no-retrieval and
        the always-retrieve answers (from ``score_answers``), same order.

    Returns
    -------
    dict of str to dict of str to float
        Rows ``never`` (rc 0, lmc 1), ``always`` (rc 1, lmc 1) and ``ideal``,
        each with keys ``in_accuracy``, ``em``, ``f1``, ``rc``, ``lmc``.

    Notes
    -----
    Ideal retrieves exactly where the Never answer is wrong by In-Accuracy
    (the study's ``add_ideal``), and its per-question values are Always's
    where it retrieves and Never's elsewhere.  Its In-Accuracy therefore
    equals mean(Never correct OR Always correct); its EM/F1 can be below
    Never's on questions where Never's In-Accuracy is 0 but its F1 is
    positive and Always's F1 is lower.  rc = 1 - InAcc(Never), lmc = 1 + rc.
    """
    nv, al = _paired(never, always)
    need = need_retrieval_labels(nv["in_accuracy"])
    rc = float(np.mean(need))
    return {
        "never": _row(nv, 0.0, 1.0),
        "always": _row(al, 1.0, 1.0),
        "ideal": _row(_replay(nv, al, need), rc, 1.0 + rc),
    }
