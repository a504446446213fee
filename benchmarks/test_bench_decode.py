"""Greedy decoding tokens per second of the default model (bfloat16) at batch 1 and 8."""
from __future__ import annotations

import pytest

NEW_TOKENS = 16
ROUNDS = 3


@pytest.fixture(scope="module")
def prompts(default_model) -> list[str]:
    """Eight short closed-book prompts (demo questions, zero-shot template)."""
    from bench.data import resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.prompts import TEMPLATES

    model, tokenizer, fingerprint = default_model
    backend = HFBackend(model, tokenizer, fingerprint)
    source = resolve_source("demo")
    questions = source.questions(source.dataset_names()[0], "test")[:8]
    return [backend.chat_prompt(TEMPLATES["short_answer"].closed(q.question)) for q in questions]


@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_tokens_per_second(benchmark, throughput, default_model, prompts, batch):
    from bench.models.hf_backend import GreedyConfig, HFBackend

    model, tokenizer, fingerprint = default_model
    backend = HFBackend(model, tokenizer, fingerprint, batch_size=batch)
    # No newline stop, so (EOS aside) every row decodes the full budget.
    config = GreedyConfig(max_new_tokens=NEW_TOKENS, stop_at_newline=False)
    generations = benchmark.pedantic(backend.greedy, args=(prompts[:batch], config),
                                     rounds=ROUNDS, iterations=1, warmup_rounds=1)
    tokens = sum(len(g.token_ids) for g in generations)
    assert tokens > 0
    throughput(f"greedy decode, batch {batch}, {NEW_TOKENS} new tokens", tokens, "tokens/s")
