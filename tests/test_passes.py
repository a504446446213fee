"""Forward passes without decoding, checked against the decode loop of the same model."""
from __future__ import annotations

import numpy as np
import torch

from bench.calculators.forced import answer_text_ids
from bench.calculators.prompted import reasoning_chain
from bench.models.hf_backend import GreedyConfig
from bench.models.passes import (
    first_token_ids,
    last_layer_attention,
    mean_hidden_states,
    teacher_forced,
)

QUESTIONS = ["What is the capital of France?", "Who wrote the novel War and Peace?"]


def prompts(backend):
    return [backend.chat_prompt((("user", q),)) for q in QUESTIONS]


def test_teacher_forcing_the_greedy_answer_reproduces_its_log_probs(fp32_backend):
    # The PMI alignment check: position P + t - 1 must predict token t.
    gens = fp32_backend.greedy(prompts(fp32_backend), GreedyConfig(max_new_tokens=10))
    forced = teacher_forced(fp32_backend, prompts(fp32_backend), [g.token_ids for g in gens])
    for gen, result in zip(gens, forced):
        np.testing.assert_allclose(result.token_logprobs, gen.token_logprobs, atol=2e-3)
        np.testing.assert_allclose(result.entropies, gen.entropies, atol=2e-3)


def test_readout_is_the_next_token_distribution(fp32_backend):
    prompt = prompts(fp32_backend)[0]
    ids = first_token_ids(fp32_backend.tokenizer, ["Paris", " Paris", "London"])
    result = teacher_forced(fp32_backend, [prompt, prompt + "The"], [[], []],
                            [ids, ids])
    enc = fp32_backend.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        logp = torch.log_softmax(fp32_backend.model(**enc).logits[0, -1].float(), -1)
    np.testing.assert_allclose(result[0].readout, logp[ids].numpy(), atol=2e-3)
    assert result[0].token_logprobs.shape == (0,)
    # A different context gives a different distribution (the rows are not mixed up).
    assert not np.allclose(result[0].readout, result[1].readout, atol=1e-2)


def test_first_token_ids_are_distinct():
    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [len(text.strip()), 0]}
    assert first_token_ids(Tok(), ["A", " A", "BB"]) == [1, 2]


def test_attention_rows_are_causal_distributions(fp32_backend):
    gen = fp32_backend.greedy(prompts(fp32_backend)[:1], GreedyConfig(max_new_tokens=8))[0]
    before = fp32_backend.model.config._attn_implementation
    (weights,) = last_layer_attention(fp32_backend, [gen.token_ids])
    n = gen.n_tokens
    assert weights.shape == (n, n)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(np.triu(weights, k=1), 0.0)
    # The model's own attention implementation is restored.
    assert fp32_backend.model.config._attn_implementation == before


def test_mean_hidden_states_ignore_padding(fp32_backend):
    texts = ["Paris is the capital of France.", "Tokyo"]
    both = mean_hidden_states(fp32_backend, texts, layers=(fp32_backend.num_layers,))
    alone = mean_hidden_states(fp32_backend, texts[1:], layers=(fp32_backend.num_layers,))
    assert both.shape == (2, 1, fp32_backend.model.config.hidden_size)
    np.testing.assert_allclose(both[1], alone[0], atol=2e-3)


def test_answer_text_ids_drop_the_stop_token(fp32_backend):
    gen = fp32_backend.greedy(prompts(fp32_backend)[:1], GreedyConfig(max_new_tokens=30))[0]
    expected = gen.token_ids if gen.stop_reason == "length" else gen.token_ids[:-1]
    np.testing.assert_array_equal(answer_text_ids(gen), expected)


def test_reasoning_chain_stops_at_the_answer_line():
    assert reasoning_chain("France's capital is Paris.\nAnswer: Paris") == \
        "France's capital is Paris."
    assert reasoning_chain("no answer line here ") == "no answer line here"
