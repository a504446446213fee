"""Answer-quality metrics: In-Accuracy, exact match and token F1.

The definitions follow STUDY.md §4 (the AdaRAGUE ``UC/eval_utils.py``
metrics), which is the authoritative spec for arbench:

* ``norm(s)``: lowercase; replace every ``string.punctuation`` character
  with a space (the SQuAD script deletes it instead); delete the articles
  ``\\b(a|an|the)\\b``; collapse whitespace.  Implemented by
  :func:`normalize`.
* **In-Accuracy** (:func:`in_accuracy`): 1 if, for some gold ``g``, the
  tokens of ``norm(NFD(g))`` occur contiguously in the tokens of
  ``norm(NFD(pred))``.
* **EM** (:func:`exact_match`): max over golds of ``norm(pred) == norm(g)``.
* **F1** (:func:`f1`): max over golds of SQuAD token F1 on
  ``norm(.).split()``; if either side is empty, 1 iff both are.

Decisions on points the study leaves open (each is tested):

* :func:`normalize` does **not** apply NFD.  NFD is applied by
  :func:`in_accuracy` before ``norm``, exactly as §4 writes
  ``norm(NFD(.))``; EM and F1 use ``norm`` on the raw strings, as §4 writes
  them.  Consequence: an NFC and an NFD spelling of the same word
  ("Halcón") are equal for In-Accuracy but not for EM/F1.
* Article deletion uses the ``regex`` module, whose ``\\b`` treats
  combining marks (``\\p{M}``) as word characters.  The stdlib ``re``
  module does not, so on NFD text it would delete the ``a`` of ``"à"``
  (``"a" + U+0300``) and leave a stray accent.
* A gold whose normalised token sequence is empty (``""``, ``"the"``,
  ``"?"``) never matches under In-Accuracy.  The study's contiguous-window
  loop (``for i in range(len(text) - len(answer) + 1)``) would count an
  empty needle as found in every prediction, including an empty one.
* An empty gold list is an error (``ValueError``), not a score of 0.
"""

from __future__ import annotations

import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
import regex

__all__ = [
    "exact_match",
    "f1",
    "in_accuracy",
    "normalize",
    "score_answers",
    "tokenize",
]

_PUNCT_TO_SPACE = str.maketrans({ch: " " for ch in string.punctuation})
_ARTICLES = regex.compile(r"\b(a|an|the)\b")
_TOKEN = regex.compile(
    r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
    flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE,
)


def normalize(text: str) -> str:
    """Normalise an answer string (the study's ``norm``).

    Parameters
    ----------
    text : str
        Raw answer.

    Returns
    -------
    str
        ``text`` lower-cased, with every ``string.punctuation`` character
        replaced by a space, the words ``a``/``an``/``the`` deleted and runs
        of whitespace collapsed to one space (no leading/trailing space).

    Notes
    -----
    No unicode normalisation happens here; :func:`in_accuracy` applies NFD
    before calling this.  ``"U.S."`` becomes ``"u s"`` (not ``"us"`` as in
    the SQuAD script), and ``"theatre"`` keeps its ``"the"``.
    """
    text = text.lower().translate(_PUNCT_TO_SPACE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Split text into the In-Accuracy tokens (DPR ``SimpleTokenizer``).

    Parameters
    ----------
    text : str
        Text, usually already normalised.

    Returns
    -------
    list of str
        Lower-cased tokens: maximal runs of letters, digits and combining
        marks, plus every other single character that is neither a
        separator (``\\p{Z}``) nor a control/other character (``\\p{C}``).
    """
    return [m.group().lower() for m in _TOKEN.finditer(text)]


def _check_golds(golds: Sequence[str]) -> None:
    if isinstance(golds, str):
        raise TypeError("golds must be a sequence of strings, not a single str")
    if len(golds) == 0:
        raise ValueError("golds is empty: each question needs at least one gold answer")


def _in_acc_tokens(text: str) -> list[str]:
    return tokenize(normalize(unicodedata.normalize("NFD", text)))


def _contains_contiguous(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    if n == 0:
        return False
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def in_accuracy(prediction: str, golds: Sequence[str]) -> float:
    """In-Accuracy: does some gold appear, as a token run, in the prediction?

    Parameters
    ----------
    prediction : str
        Model answer.
    golds : sequence of str
        Gold aliases (non-empty).

    Returns
    -------
    float
        1.0 if for some gold ``g`` the tokens of ``norm(NFD(g))`` occur
        contiguously in the tokens of ``norm(NFD(prediction))``, else 0.0.
        Golds whose token sequence is empty never match.
    """
    _check_golds(golds)
    pred_tokens = _in_acc_tokens(prediction)
    hit = any(_contains_contiguous(pred_tokens, _in_acc_tokens(g)) for g in golds)
    return float(hit)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Exact match: max over golds of ``normalize(pred) == normalize(g)``.

    Parameters
    ----------
    prediction : str
        Model answer.
    golds : sequence of str
        Gold aliases (non-empty).

    Returns
    -------
    float
        1.0 or 0.0.
    """
    _check_golds(golds)
    pred = normalize(prediction)
    return float(any(pred == normalize(g) for g in golds))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1, max over golds.

    Parameters
    ----------
    prediction : str
        Model answer.
    golds : sequence of str
        Gold aliases (non-empty).

    Returns
    -------
    float
        Max over golds of the harmonic mean of token precision and recall on
        ``normalize(.).split()``, counting repeated tokens with multiplicity
        (multiset intersection).  If either token list is empty the score is
        1.0 iff both are.
    """
    _check_golds(golds)
    pred_tokens = normalize(prediction).split()
    return max(_token_f1(pred_tokens, normalize(g).split()) for g in golds)


def score_answers(
    predictions: Sequence[str], gold_lists: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
    """Score many answers at once.

    Parameters
    ----------
    predictions : sequence of str
        One answer per question.  ``None`` or other non-strings are
        rejected: decide upstream how to score a missing answer.
    gold_lists : sequence of sequence of str
        One non-empty gold list per question.

    Returns
    -------
    dict of str to numpy.ndarray
        ``in_accuracy``, ``em`` and ``f1``: float arrays of shape ``(n,)``.

    Raises
    ------
    ValueError
        If the lengths differ or a gold list is empty.
    TypeError
        If a prediction is not a ``str`` or a gold list is a bare ``str``.
    """
    if len(predictions) != len(gold_lists):
        raise ValueError(f"{len(predictions)} predictions but {len(gold_lists)} gold lists")
    for i, pred in enumerate(predictions):
        if not isinstance(pred, str):
            raise TypeError(f"prediction {i} is {type(pred).__name__}, expected str")
    out: dict[str, list[float]] = {"in_accuracy": [], "em": [], "f1": []}
    for pred, golds in zip(predictions, gold_lists):
        out["in_accuracy"].append(in_accuracy(pred, golds))
        out["em"].append(exact_match(pred, golds))
        out["f1"].append(f1(pred, golds))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}
