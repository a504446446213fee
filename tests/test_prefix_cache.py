"""Prefix KV-cache reuse against full prefills of the real default model (float32)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.data import resolve_source
from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.models.prefill import PrefixMemo, PrefixState, common_prefix_length
from bench.prompts import TEMPLATES
from bench.runner import store_key
from tests.test_runner import fresh_cache, run_cli

GREEDY = GreedyConfig(max_new_tokens=12)
#: fp32 bound on log-probs, entropies and raw logits: measured ~1e-5 (rounding
#: of differently shaped matrix products), far below any estimator's resolution.
LOGIT_ATOL = 1e-4
#: Hidden states reach |h| ~ 250; measured differences ~6e-5.
HIDDEN_ATOL = 1e-3


@pytest.fixture(scope="module")
def prefix_backend(fp32_backend):
    """The session's fp32 model behind a second backend that reuses prefixes."""
    return HFBackend(fp32_backend.model, fp32_backend.tokenizer, fp32_backend.fingerprint,
                     batch_size=4, prefix_cache=True)


def demo_prompts(backend, count=6, template="short_answer_fewshot"):
    source = resolve_source("demo")
    questions = source.questions("demo", "test")[:count]
    return [backend.chat_prompt(TEMPLATES[template].closed(q.question)) for q in questions]


def assert_same_generation(full, shared):
    np.testing.assert_array_equal(shared.token_ids, full.token_ids)
    assert shared.text == full.text and shared.stop_reason == full.stop_reason
    assert shared.prompt_tokens == full.prompt_tokens
    for name in ("token_logprobs", "entropies", "mean_logprobs", "logsumexp",
                 "sampling_logprobs", "root_mass_t2", "topk_logprobs"):
        np.testing.assert_allclose(getattr(shared, name), getattr(full, name),
                                   atol=LOGIT_ATOL, err_msg=name)
    for name in ("hidden_mean", "hidden_last", "prompt_hidden_mean", "prompt_hidden_last"):
        np.testing.assert_allclose(getattr(shared, name), getattr(full, name),
                                   atol=HIDDEN_ATOL, err_msg=name)


def test_shared_prefix_greedy_matches_full_prefill(fp32_backend, prefix_backend):
    prompts = demo_prompts(fp32_backend)
    rows = fp32_backend.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    # The system turn and the three demonstrations, then the question.
    assert common_prefix_length(rows) >= 100
    full = fp32_backend.greedy(prompts, GREEDY)
    before = dict(vars(prefix_backend.counter))
    shared = prefix_backend.greedy(prompts, GREEDY)
    for a, b in zip(full, shared):
        assert_same_generation(a, b)
    # Not two identical computations: the prefix really was prefilled once.
    spent = prefix_backend.counter.prompt_tokens - before["prompt_tokens"]
    reused = prefix_backend.counter.reused_prompt_tokens - before["reused_prompt_tokens"]
    assert spent + reused == sum(len(r) for r in rows)
    assert reused >= (len(rows) - 1) * 100


def test_first_step_logits_match_full_prefill(fp32_backend, prefix_backend):
    prompts = demo_prompts(fp32_backend, 5)
    layers = fp32_backend.layers(None)
    with torch.inference_mode():
        full = fp32_backend._prefill(prompts, layers)
        shared = prefix_backend._prefill(prompts, layers)
    assert shared.prefilled_tokens < full.prefilled_tokens
    assert shared.prompt_lengths == full.prompt_lengths
    torch.testing.assert_close(shared.logits, full.logits, atol=LOGIT_ATOL * 2, rtol=0)
    torch.testing.assert_close(shared.prompt_mean, full.prompt_mean, atol=HIDDEN_ATOL, rtol=0)
    # Positions continue after the prefix exactly where a full prefill puts them.
    assert torch.equal(shared.next_position, full.next_position)


def test_samples_are_identical_with_the_same_seeds(fp32_backend, prefix_backend):
    prompts = demo_prompts(fp32_backend, 4)
    config = SamplingConfig(n=3, max_new_tokens=8)
    keys = [f"q{i}" for i in range(len(prompts))]
    full = fp32_backend.sample(prompts, keys, config, seed=5)
    shared = prefix_backend.sample(prompts, keys, config, seed=5)
    for a, b in zip(full, shared):
        for x, y in zip(a.samples, b.samples):
            np.testing.assert_array_equal(y.token_ids, x.token_ids)
            np.testing.assert_allclose(y.sampling_logprobs, x.sampling_logprobs,
                                       atol=LOGIT_ATOL)
            np.testing.assert_allclose(y.prompt_hidden_mean, x.prompt_hidden_mean,
                                       atol=HIDDEN_ATOL)
    assert len({t for s in full for t in s.texts}) > 1  # real draws, not one answer


def test_the_memo_serves_the_same_prefix_again(fp32_backend):
    backend = HFBackend(fp32_backend.model, fp32_backend.tokenizer, fp32_backend.fingerprint,
                        prefix_cache=True)
    prompts = demo_prompts(fp32_backend, 4)
    rows = fp32_backend.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    total, prefix = sum(len(r) for r in rows), common_prefix_length(rows)
    first = backend.greedy(prompts, GREEDY)
    spent_first = backend.counter.prompt_tokens
    assert len(backend.prefix_memo) == 1
    again = backend.greedy(prompts, GREEDY)
    spent_again = backend.counter.prompt_tokens - spent_first
    # The second call encodes no prefix: only the four suffixes.
    assert spent_again == total - 4 * prefix
    assert spent_first == spent_again + prefix
    assert backend.counter.reused_prompt_tokens == 3 * prefix + 4 * prefix
    for a, b in zip(first, again):  # the memo is read, never modified
        np.testing.assert_array_equal(a.token_logprobs, b.token_logprobs)
        np.testing.assert_array_equal(a.prompt_hidden_mean, b.prompt_hidden_mean)


def test_results_do_not_depend_on_what_ran_before(fp32_backend):
    """A resumed or sharded run forms the same batches but starts with an empty memo."""
    def fresh():
        return HFBackend(fp32_backend.model, fp32_backend.tokenizer,
                         fp32_backend.fingerprint, prefix_cache=True)

    prompts = demo_prompts(fp32_backend, 7)
    history = fresh()
    history.greedy(prompts[:4], GREEDY)
    later = history.greedy(prompts[4:], GREEDY)
    alone = fresh().greedy(prompts[4:], GREEDY)
    for a, b in zip(alone, later):
        np.testing.assert_array_equal(b.token_logprobs, a.token_logprobs)
        np.testing.assert_array_equal(b.prompt_hidden_mean, a.prompt_hidden_mean)
    # A single prompt shares nothing with itself: it is prefilled in full, memo or not.
    single = history.greedy(prompts[5:6], GREEDY)[0]
    full = fp32_backend.greedy(prompts[5:6], GREEDY)[0]
    np.testing.assert_array_equal(single.token_logprobs, full.token_logprobs)


def test_no_common_prefix_falls_back_to_a_full_prefill(fp32_backend):
    backend = HFBackend(fp32_backend.model, fp32_backend.tokenizer, fp32_backend.fingerprint,
                        prefix_cache=True)
    # Raw texts (no chat template) that differ from their first token.
    prompts = ["Paris is the capital of", "The longest river in Africa is the",
               "Water boils at a temperature of"]
    shared = backend.greedy(prompts, GREEDY)
    full = fp32_backend.greedy(prompts, GREEDY)
    lengths = [len(r) for r in fp32_backend.tokenizer(prompts, add_special_tokens=False)
               ["input_ids"]]
    assert backend.counter.reused_prompt_tokens == 0
    assert backend.counter.prompt_tokens == sum(lengths)
    assert len(backend.prefix_memo) == 0
    for a, b in zip(full, shared):  # the very same computation
        np.testing.assert_array_equal(b.token_ids, a.token_ids)
        np.testing.assert_array_equal(b.token_logprobs, a.token_logprobs)
    # A shared prefix shorter than min_prefix_tokens is not worth a separate pass.
    chat = demo_prompts(fp32_backend, 3, template="short_answer")
    short = HFBackend(fp32_backend.model, fp32_backend.tokenizer, fp32_backend.fingerprint,
                      prefix_cache=True, min_prefix_tokens=500)
    short.greedy(chat, GREEDY)
    assert short.counter.reused_prompt_tokens == 0 and len(short.prefix_memo) == 0


def test_memo_keeps_the_most_recently_used_exact_prefixes():
    def state(*ids):
        empty = torch.zeros((1, 1, len(ids), 2))
        return PrefixState(ids, (empty,), (empty,), torch.zeros((2, len(ids), 3)))

    memo = PrefixMemo(capacity=2)
    a, b, c = state(1, 2, 3), state(1, 2, 4), state(7, 8)
    memo.put(a)
    memo.put(b)
    assert memo.get([1, 2, 3]) is a and memo.get((1, 2)) is None  # exact ids only
    memo.put(c)  # drops b, the least recently used
    assert memo.get([1, 2, 4]) is None and memo.get([7, 8]) is c and len(memo) == 2
    assert state(1, 2).hidden_sum((0, 1)).shape == (2, 3)
    with pytest.raises(ValueError, match="capacity"):
        PrefixMemo(-1)


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5, 1], [6, 1]]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 3
    assert common_prefix_length([[], [1]]) == 0


def test_prefix_cache_is_part_of_the_identity_and_the_cache_namespace():
    off, on = RunConfig(), RunConfig(prefix_cache=True)
    assert "prefix_cache" not in off.identity()
    assert on.identity()["prefix_cache"] is True
    assert store_key("m", off) == "m|bfloat16"
    assert store_key("m", on) != store_key("m", off)
    assert RunConfig.from_dict(on.to_dict()).prefix_cache is True


def test_runs_with_and_without_prefix_reuse_never_share_records(tmp_path, model_cache):
    cache = fresh_cache(tmp_path, model_cache, "cache")
    plain = run_cli(cache, tmp_path / "a")
    shared = run_cli(cache, tmp_path / "b", "--prefix-cache")
    # Every generation is computed again, in the prefix-cache namespace.
    assert shared["lm_generate_calls"] == plain["lm_generate_calls"] == 20
    work = shared["lm_work"]
    # At least 7 of the 8 closed-book greedy prompts reuse the >= 100-token few-shot prefix.
    assert work["reused_prompt_tokens"] >= 7 * 100 and work["prompt_tokens"] > 0
    assert plain["lm_work"]["reused_prompt_tokens"] == 0
    assert (work["prompt_tokens"] + work["reused_prompt_tokens"]
            == plain["lm_work"]["prompt_tokens"])
    again = run_cli(cache, tmp_path / "c", "--prefix-cache")
    assert again["lm_generate_calls"] == 0
    config = json.loads((tmp_path / "b" / "t" / "config.json").read_text())
    assert config["prefix_cache"] is True
    hashes = [json.loads((tmp_path / d / "t" / "metrics.json").read_text())
              ["inputs"]["config_sha256"] for d in "abc"]
    assert hashes[0] != hashes[1] == hashes[2]
