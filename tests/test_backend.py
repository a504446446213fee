"""The decode loop against an independent teacher-forced pass of the real default model."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.models.hf_backend import GreedyConfig, SamplingConfig

QUESTIONS = ["What is the capital of France?", "Who wrote the novel War and Peace?",
             "What is the chemical symbol for gold?"]
SYSTEM = "Answer with a short answer."
CONFIG = GreedyConfig(max_new_tokens=12)


def prompts(backend):
    return [backend.chat_prompt((("system", SYSTEM), ("user", q))) for q in QUESTIONS]


def teacher_forced(backend, prompt, token_ids, layers):
    """log p_t(y_t), H_t and hidden states from one forward pass over prompt + answer."""
    tok = backend.tokenizer
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    full = torch.cat([ids, torch.as_tensor(token_ids)])[None]
    with torch.inference_mode():
        out = backend.model(full, output_hidden_states=True)
    steps = slice(len(ids) - 1, full.shape[1] - 1)
    logp = torch.log_softmax(out.logits[0, steps].float(), -1)
    chosen = logp.gather(1, torch.as_tensor(token_ids)[:, None])[:, 0]
    entropy = -(logp.exp() * logp).sum(-1)
    hidden = torch.stack([out.hidden_states[layer][0, steps] for layer in layers], 0)
    tempered = torch.softmax(out.logits[0, steps].float() / 2, -1)
    every = torch.stack([out.hidden_states[layer][0, :-1] for layer in layers], 0)
    return {"logprob": chosen.numpy(), "entropy": entropy.numpy(),
            "mean_lp": logp.mean(-1).numpy(), "hidden": hidden.numpy(),
            "root_mass_t2": tempered.sqrt().sum(-1).log().numpy(),
            "prompt_hidden": torch.stack([out.hidden_states[layer][0, :len(ids)]
                                          for layer in layers], 0).numpy(),
            "sequence_mean": every.mean(dim=1).numpy()}


def test_greedy_statistics_match_a_teacher_forced_pass(fp32_backend):
    backend = fp32_backend
    gens = backend.greedy(prompts(backend), CONFIG)
    for prompt, gen in zip(prompts(backend), gens):
        assert gen.n_tokens >= 1 and gen.text
        layers = tuple(int(x) for x in gen.layers)
        ref = teacher_forced(backend, prompt, gen.token_ids, layers)
        # The loop ran left-padded in a batch of 3; the check runs one unpadded sequence.
        np.testing.assert_allclose(gen.token_logprobs, ref["logprob"], atol=2e-3)
        np.testing.assert_allclose(gen.entropies, ref["entropy"], atol=2e-3)
        np.testing.assert_allclose(gen.mean_logprobs, ref["mean_lp"], atol=2e-3)
        np.testing.assert_allclose(gen.root_mass_t2, ref["root_mass_t2"], atol=2e-3)
        np.testing.assert_allclose(gen.hidden_mean, ref["hidden"].mean(axis=1), atol=2e-3)
        np.testing.assert_allclose(gen.hidden_last, ref["hidden"][:, -1], atol=2e-3)
        np.testing.assert_allclose(gen.prompt_hidden_mean, ref["prompt_hidden"].mean(axis=1),
                                   atol=2e-3)
        np.testing.assert_allclose(gen.prompt_hidden_last, ref["prompt_hidden"][:, -1],
                                   atol=2e-3)
        np.testing.assert_allclose(gen.sequence_hidden_mean(), ref["sequence_mean"], atol=2e-3)
        text_tokens = gen.token_texts if gen.stop_reason == "length" else gen.token_texts[:-1]
        assert "".join(text_tokens).strip() == gen.text
        # Greedy: every chosen token is the argmax, so it heads the top-k list.
        np.testing.assert_array_equal(gen.topk_ids[:, 0], gen.token_ids)
        assert gen.prompt_tokens == len(backend.tokenizer(prompt, add_special_tokens=False)
                                        ["input_ids"])


def test_batched_and_single_greedy_agree(fp32_backend):
    backend = fp32_backend
    batched = backend.greedy(prompts(backend), CONFIG)
    for prompt, gen in zip(prompts(backend), batched):
        single = backend.greedy([prompt], CONFIG)[0]
        assert single.text == gen.text
        np.testing.assert_allclose(single.token_logprobs, gen.token_logprobs, atol=2e-3)


def test_greedy_matches_transformers_generate(fp32_backend):
    backend = fp32_backend
    prompt = prompts(backend)[0]
    ours = backend.greedy([prompt], CONFIG)[0]
    enc = backend.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = backend.model.generate(**enc, max_new_tokens=ours.n_tokens, do_sample=False)
    np.testing.assert_array_equal(out[0, enc["input_ids"].shape[1]:].numpy(), ours.token_ids)


def test_sampling_is_seeded_per_row(fp32_backend):
    backend = fp32_backend
    config = SamplingConfig(n=4, max_new_tokens=8)
    first = backend.sample(prompts(backend)[:2], ["k0", "k1"], config, seed=3)
    again = backend.sample(prompts(backend)[:2], ["k0", "k1"], config, seed=3)
    other = backend.sample(prompts(backend)[:2], ["k0", "k1"], config, seed=4)
    assert [s.texts for s in first] == [s.texts for s in again]
    assert [s.texts for s in first] != [s.texts for s in other]
    for sample_set in first:
        assert len(sample_set.samples) == 4
        for gen in sample_set.samples:
            # The top-k tempered distribution puts at least as much mass on the
            # chosen token as the full one.
            assert np.all(gen.sampling_logprobs >= gen.token_logprobs - 1e-4)
            assert np.all(gen.sampling_logprobs <= 1e-6)


def test_top_1_sampling_is_greedy(fp32_backend):
    backend = fp32_backend
    config = SamplingConfig(n=2, top_k=1, max_new_tokens=12)
    sampled = backend.sample(prompts(backend), ["a", "b", "c"], config, seed=0)
    greedy = backend.greedy(prompts(backend), dataclasses.replace(CONFIG))
    for sample_set, gen in zip(sampled, greedy):
        assert sample_set.texts == [gen.text, gen.text]


def test_a_continuation_turn_is_appended_after_the_generation_prompt(fp32_backend):
    from bench.models.hf_backend import CONTINUATION

    chat = (("system", "Be brief."), ("user", "Question: capital of France?"))
    base = fp32_backend.chat_prompt(chat)
    assert base.endswith("assistant\n")
    continued = fp32_backend.chat_prompt((*chat, (CONTINUATION, "The capital is ")))
    assert continued == base + "The capital is "


def test_only_the_chosen_layers_hidden_states_are_kept(fp32_backend):
    """The prompt pass and every decode step keep 2 of the 31 hidden states.

    All of them at every prompt position would outweigh the KV cache; the
    values of the kept ones are checked against a full pass above.
    """
    # transformers 5.0 (the oldest supported) takes a list as "all"; results are the same.
    capturing = pytest.importorskip("transformers.utils.output_capturing",
                                    reason="this transformers keeps every hidden state")
    if not hasattr(capturing, "selected_hidden_states"):
        pytest.skip("this transformers keeps every hidden state")
    backend = fp32_backend
    kept: list[list[int]] = []

    def record(_module, _args, output):
        kept.append([i for i, h in enumerate(output.hidden_states) if h is not None])

    handle = backend.model.register_forward_hook(record)
    try:
        gens = backend.greedy(prompts(backend), dataclasses.replace(CONFIG, max_new_tokens=3))
    finally:
        handle.remove()
    layers = [int(x) for x in gens[0].layers]
    assert layers == [15, 30]
    assert len(kept) == 3 and all(indices == layers for indices in kept)
