"""Per-question cost accounting shared by gates, reference rows and pipelines."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Cost:
    """Work spent on one question (or a mean over questions).

    Attributes
    ----------
    generate_calls : float
        Sequences decoded by the LM (a batch of N samples counts N).
    prefills : float
        Prompt encodings; N samples of one prompt share one prefill.
    prompt_tokens, generated_tokens : float
        Tokens read by prefills and tokens emitted. ``prompt_tokens`` is the
        prompt's length even where the backend reused a shared prefix's KV
        cache (``--prefix-cache``): it measures what a method asks of the LM,
        comparable across runs; the backend's ``CallCounter`` (``lm_work`` in
        ``run_info.json``) reports the tokens actually prefilled.
    retrieval_calls : float
        Retriever queries.
    forward_passes : float
        Teacher-forced or one-token scoring passes (no decoding).
    aux_calls : float
        Auxiliary-model inputs (judge pairs, embedded texts).
    seconds : float
        Wall time attributed to the question (never part of metrics JSON:
        it is not deterministic).
    """

    generate_calls: float = 0.0
    prefills: float = 0.0
    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    retrieval_calls: float = 0.0
    forward_passes: float = 0.0
    aux_calls: float = 0.0
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self, factor: float) -> Cost:
        return Cost(*(getattr(self, f.name) * factor for f in fields(self)))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Cost:
        return cls(**{f.name: float(data.get(f.name, 0.0)) for f in fields(cls)})


def mean_cost(costs: list[Cost]) -> Cost:
    """Average cost per question."""
    if not costs:
        return Cost()
    total = Cost()
    for cost in costs:
        total = total + cost
    return total.scaled(1.0 / len(costs))
