"""Prefill throughput of 32 few-shot closed-book prompts (bfloat16), prefix reuse off and on.

"cold" gives every round a fresh backend, so the shared prefix is encoded in
the round; "memo" reuses the prefix a previous batch encoded, as every batch
after a run's first does.
"""
from __future__ import annotations

import pytest

ROWS = 32
ROUNDS = 3


@pytest.fixture(scope="module")
def prompts(default_model, shared_data) -> list[str]:
    """The first 32 NQ test questions in the default (few-shot) template."""
    from bench.data import resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.prompts import DEFAULT_TEMPLATE, TEMPLATES

    model, tokenizer, fingerprint = default_model
    backend = HFBackend(model, tokenizer, fingerprint)
    questions = resolve_source(str(shared_data)).questions("nq", "test")[:ROWS]
    return [backend.chat_prompt(TEMPLATES[DEFAULT_TEMPLATE].closed(q.question))
            for q in questions]


@pytest.mark.parametrize("mode", ["full", "prefix-cold", "prefix-memo"])
def test_prefill_prompt_tokens_per_second(benchmark, throughput, default_model, prompts, mode):
    import torch

    from bench.models.hf_backend import HFBackend

    model, tokenizer, fingerprint = default_model

    def backend() -> HFBackend:
        return HFBackend(model, tokenizer, fingerprint, batch_size=ROWS,
                         prefix_cache=mode != "full")

    memo = backend()
    layers = memo.layers(None)

    def setup():
        return ((memo if mode == "prefix-memo" else backend()),), {}

    def prefill(b: HFBackend):
        with torch.inference_mode():
            return b._prefill(prompts, layers)

    with torch.inference_mode():
        memo._prefill(prompts, layers)  # fills the memo of the "memo" rounds
    result = benchmark.pedantic(prefill, setup=setup, rounds=ROUNDS, iterations=1,
                                warmup_rounds=1)
    # Throughput in prompt tokens served (reused ones included), the same
    # amount in every mode, so the three figures compare directly.
    tokens = sum(result.prompt_lengths)
    assert tokens > 0
    throughput(f"prefill {ROWS} few-shot prompts, {mode}", tokens, "prompt tokens/s")
