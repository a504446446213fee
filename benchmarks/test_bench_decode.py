"""Decoding tokens per second of the default model (bfloat16) at batch 1, 8 and 32.

Two figures per batch: ``HFBackend.greedy`` end to end (prefill, decode loop
with every per-step statistic, collection), and the decode steps alone
(:func:`bench.perf.lm.decode_steps` after an untimed prefill), as
``arbench bench`` measures them.
"""
from __future__ import annotations

import pytest

NEW_TOKENS = 16
ROUNDS = 3
BATCHES = [1, 8, 32]


@pytest.fixture(scope="module")
def prompts(default_model) -> list[str]:
    """32 short closed-book prompts (demo questions, zero-shot template)."""
    from bench.data import resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.prompts import TEMPLATES

    model, tokenizer, fingerprint = default_model
    backend = HFBackend(model, tokenizer, fingerprint)
    source = resolve_source("demo")
    questions = source.questions(source.dataset_names()[0], "test")[:max(BATCHES)]
    return [backend.chat_prompt(TEMPLATES["short_answer"].closed(q.question)) for q in questions]


@pytest.mark.parametrize("batch", BATCHES)
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


@pytest.mark.parametrize("batch", BATCHES)
def test_decode_steps_tokens_per_second(benchmark, throughput, default_model, prompts, batch):
    from bench.perf.lm import decode_steps, encode, start_decode

    model, tokenizer, _ = default_model
    ids, mask = encode(tokenizer, prompts[:batch])
    states = []

    def prefill():  # untimed: pytest-benchmark runs setup outside the timed call
        states.append(start_decode(model, ids, mask))
        return (model, states[-1], NEW_TOKENS), {}

    benchmark.pedantic(decode_steps, setup=prefill, rounds=ROUNDS, warmup_rounds=1)
    assert all(state.mask.shape[1] == ids.shape[1] + NEW_TOKENS for state in states)
    throughput(f"decode steps only, batch {batch}", batch * NEW_TOKENS, "tokens/s")
