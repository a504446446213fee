"""Self-evaluation estimators: P(True) and the verbalized 1-stage confidence (ESTIMATORS.md §3).

Neither reads the graded answer's logits. P(True) reads one next-token
distribution of a scoring prompt over (question, graded answer);
Verbalized-1S parses the text of its own generation
(:data:`~estimators.stat_types.VERBALIZED`). The study scored every logit
estimator on that verbalized generation (STUDY.md §9.3); in arbench only
``verbalized_1s`` reads it.
"""
from __future__ import annotations

import math
import re

from estimators.base import Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import P_TRUE, VERBALIZED

#: "Probability: <p>" in [0, 1] (the study's regex, plus a bare ".8"), or a
#: percentage in [0, 100] ("Probability: 80%"). Markdown emphasis around the
#: label ("**Probability:** 0.8") is tolerated. The lookahead after the
#: decimal rejects a longer number instead of reading its prefix: the study's
#: regex reads "1.5" as 1 and "10" as 1.
_PROBABILITY = re.compile(
    r"Probability[*_]*:[\s*_]*"
    r"(?:(?P<percent>\d{1,3}(?:\.\d+)?)\s*%"
    r"|(?P<decimal>0(?:\.\d+)?|1(?:\.0+)?|\.\d+)(?![\d.]*\d))",
    re.IGNORECASE)


def parse_verbalized_probability(text: str) -> float:
    """The first stated probability in ``text``, or NaN.

    Parameters
    ----------
    text : str
        A generation answering the prompt "Guess: <answer> / Probability:
        <0.0 to 1.0>".

    Returns
    -------
    float
        p in [0, 1] read from the first ``Probability:`` label followed by a
        number in [0, 1] (``0``, ``0.85``, ``.85``, ``1``, ``1.0``) or a
        percentage in [0, 100] (``80%`` gives 0.8). NaN when there is no such
        label, or the number is out of range or malformed (``1.5``, ``120%``).
    """
    match = _PROBABILITY.search(text)
    if match is None:
        return math.nan
    if match["percent"] is not None:
        value = float(match["percent"]) / 100.0
    else:
        value = float(match["decimal"])
    return value if 0.0 <= value <= 1.0 else math.nan


@register
class PTrue(Estimator):
    """U = -log P(True | question, greedy answer).

    The scoring prompt asks whether the possible answer is (A) True or
    (B) False; ``Readout.logprobs["true"]`` is the log of the total
    probability of the first tokens that spell True. The negation makes a
    confident "True" low uncertainty. A probability that underflows to 0
    (log = -inf) becomes NaN, as every non-finite score does.

    References
    ----------
    Kadavath et al. 2022, "Language Models (Mostly) Know What They Know",
    arXiv 2207.05221; LM-Polygraph ``estimators/p_true.py`` and
    ``stat_calculators/prompt.py``.
    """

    name = "p_true"
    family = "verbalized"
    requires = (P_TRUE,)
    study_name = "PTrue"
    summary = "-log P('True' | P(True) prompt over question and greedy answer)"

    def score(self, stats: StatBundle) -> float:
        logprobs = stats[P_TRUE].logprobs
        if "true" not in logprobs:
            raise KeyError(f"question {stats.question_id!r}: the P(True) readout has no "
                           f"'true' label (has {sorted(logprobs)})")
        return finite_or_nan(-float(logprobs["true"]))


@register
class Verbalized1S(Estimator):
    """U = 1 - p_hat, p_hat the probability the model states with its guess.

    p_hat is parsed by :func:`parse_verbalized_probability` from the
    generation for the verbalized prompt ("Guess: ... Probability: ...").
    Unparsable text gives NaN, not 0: the study mapped a failed parse to
    "fully confident" (STUDY.md §9.2); arbench leaves the NaN policy to the
    evaluation and reports the parse-failure rate.

    References
    ----------
    Tian et al. 2023, "Just Ask for Calibration", arXiv 2305.14975;
    LM-Polygraph ``estimators/verbalized_1s.py``; prompt in ``UC/uncertainty.py``
    of s-nlp/AdaRAGUE.
    """

    name = "verbalized_1s"
    family = "verbalized"
    requires = (VERBALIZED,)
    study_name = "Verbalized1S"
    summary = "1 - stated probability parsed from 'Probability: p' (NaN if unparsed)"

    def score(self, stats: StatBundle) -> float:
        return 1.0 - parse_verbalized_probability(stats[VERBALIZED].text)
