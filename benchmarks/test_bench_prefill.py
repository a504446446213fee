"""Prefill tokens per second of the default model (bfloat16) on real prompts.

Closed-book prompts (zero-shot and the default three-shot template) and RAG
prompts with five BM25 passages, from the first eight demo test questions, as
one left-padded batch with ``logits_to_keep=1`` (:func:`bench.perf.lm.prefill`,
the pass ``arbench bench`` times). Throughput counts real, unpadded tokens.
"""
from __future__ import annotations

import pytest

PROMPTS = 8
ROUNDS = 3
KINDS = ["closed_zero_shot", "closed_fewshot", "rag_top5"]


@pytest.fixture(scope="module")
def prompt_sets(default_model, model_cache):
    from bench.data import resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.perf.lm import prompt_sets
    from retrievers import build_retriever

    model, tokenizer, fingerprint = default_model
    source = resolve_source("demo")
    corpus = source.corpus()
    questions = source.questions(source.dataset_names()[0], "test")[:PROMPTS]
    retriever = build_retriever("bm25s", corpus, model_cache / "indexes")
    sets = prompt_sets(HFBackend(model, tokenizer, fingerprint), [q.question for q in questions],
                       corpus, retriever, 5)
    return {s.key: s for s in sets}


@pytest.mark.parametrize("kind", KINDS)
def test_prefill_tokens_per_second(benchmark, throughput, default_model, prompt_sets, kind):
    import torch

    from bench.perf.lm import encode, prefill

    model, tokenizer, _ = default_model
    ids, mask = encode(tokenizer, prompt_sets[kind].texts)

    def run():
        with torch.inference_mode():
            return prefill(model, ids, mask)

    out, _ = benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert out.logits.shape[:2] == (PROMPTS, 1)  # logits_to_keep=1
    tokens = int(mask.sum())
    throughput(f"prefill {kind} ({tokens // PROMPTS} tokens/prompt, batch {PROMPTS})", tokens,
               "tokens/s")
