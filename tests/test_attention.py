"""padded_sdpa gives transformers' SDPA results bit for bit, on the real default model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.attention import PADDED_SDPA, padded_sdpa_forward, use_padded_sdpa
from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.models.loading import load_model, resolve_model
from bench.models.prefill import common_prefix_length, encode_prefix, left_pad, shared_prefill
from bench.prompts import TEMPLATES
from retrievers.base import Passage

QUESTIONS = ["who wrote the novel moby dick", "what is the capital city of australia",
             "when did the berlin wall fall", "how many moons does mars have"]
PASSAGE = ("Mars has two small moons, Phobos and Deimos, discovered by Asaph Hall in 1877. "
           "Both are irregularly shaped and may be captured asteroids. ")


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def backend(request, model_cache):
    ref = resolve_model("smollm2", model_cache)
    model, tokenizer = load_model(ref, model_cache, dtype=request.param)
    return HFBackend(model, tokenizer, ref.fingerprint, batch_size=4)


def prompts(backend: HFBackend) -> list[str]:
    """Prompts of very different lengths, so the batch is heavily left-padded."""
    template = TEMPLATES["short_answer_fewshot"]
    closed = [backend.chat_prompt(template.closed(q)) for q in QUESTIONS[:2]]
    rag = [backend.chat_prompt(template.augmented(
        q, [Passage(str(i), "Mars", PASSAGE * 3) for i in range(n)])) for n, q in zip((1, 3), QUESTIONS[2:])]
    return closed + rag


def with_implementation(model, name: str, call):
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        return call()
    finally:
        model.set_attn_implementation(previous)


def test_load_model_switches_sdpa_models(backend):
    assert backend.model.config._attn_implementation == PADDED_SDPA


@torch.inference_mode()
def test_padded_prompt_pass_is_bit_identical(backend):
    rows = backend.tokenizer(prompts(backend), add_special_tokens=False)["input_ids"]
    ids, mask = left_pad(rows, backend.tokenizer.pad_token_id)
    assert mask.shape[1] - min(len(r) for r in rows) > 200  # real padding

    def forward():
        return backend.model(input_ids=ids, attention_mask=mask,
                             position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             use_cache=True, output_hidden_states=True, logits_to_keep=1)

    ours = with_implementation(backend.model, PADDED_SDPA, forward)
    reference = with_implementation(backend.model, "sdpa", forward)
    assert torch.equal(ours.logits, reference.logits)
    for a, b in zip(ours.hidden_states, reference.hidden_states):
        assert torch.equal(a, b)
    for a, b in zip(ours.past_key_values.layers, reference.past_key_values.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


@torch.inference_mode()
def test_prefix_continuation_is_bit_identical(backend):
    """The suffix pass of --prefix-cache (fewer queries than keys) takes the same route."""
    rows = backend.tokenizer(prompts(backend), add_special_tokens=False)["input_ids"]
    length = common_prefix_length(rows)
    assert length > 50
    pad = backend.tokenizer.pad_token_id

    def run():
        prefix = encode_prefix(backend.model, rows[0][:length])
        return shared_prefill(backend.model, rows, pad, (15, 30), prefix)

    ours = with_implementation(backend.model, PADDED_SDPA, run)
    reference = with_implementation(backend.model, "sdpa", run)
    assert torch.equal(ours.logits, reference.logits)
    assert torch.equal(ours.prompt_mean, reference.prompt_mean)


def test_generations_are_bit_identical(backend):
    texts = prompts(backend)
    greedy = GreedyConfig(max_new_tokens=8)
    sampling = SamplingConfig(n=3, max_new_tokens=6)
    ours = with_implementation(backend.model, PADDED_SDPA, lambda: (
        backend.greedy(texts, greedy), backend.sample(texts[2:], ["a", "b"], sampling, 0)))
    reference = with_implementation(backend.model, "sdpa", lambda: (
        backend.greedy(texts, greedy), backend.sample(texts[2:], ["a", "b"], sampling, 0)))
    for a, b in zip(ours[0], reference[0]):
        assert a.text == b.text
        np.testing.assert_array_equal(a.token_logprobs, b.token_logprobs)
        np.testing.assert_array_equal(a.prompt_hidden_mean, b.prompt_hidden_mean)
    for a, b in zip(ours[1], reference[1]):
        assert [s.text for s in a.samples] == [s.text for s in b.samples]
        for x, y in zip(a.samples, b.samples):
            np.testing.assert_array_equal(x.token_logprobs, y.token_logprobs)


def test_other_implementations_are_left_alone(backend):
    model = backend.model

    def try_to_switch():
        return use_padded_sdpa(model), model.config._attn_implementation

    assert with_implementation(model, "eager", try_to_switch) == (False, "eager")


def test_the_additive_mask_follows_each_new_mask():
    class Module(torch.nn.Module):
        num_key_value_groups = 1

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    left_padded = causal.clone()
    left_padded[..., :2] = False
    left_padded[..., 2:, 2:] = causal[..., :3, :3]
    for mask in (causal, left_padded, causal):
        ours, _ = padded_sdpa_forward(Module(), q, k, v, mask)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(ours, expected.transpose(1, 2), rtol=0, atol=1e-6)
