"""Decoding into reserved KV room gives the bits of transformers' growing cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.cache_utils import DynamicLayer

import bench.models.hf_backend as hf_backend
from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.models.kv_room import RoomyLayer, reserve_decode_room
from bench.models.loading import load_model, resolve_model
from bench.prompts import TEMPLATES
from retrievers.base import Passage

QUESTIONS = ["who wrote the novel moby dick", "what is the capital city of australia",
             "when did the berlin wall fall"]


@pytest.fixture(scope="module")
def bf16_backend(model_cache):
    ref = resolve_model("smollm2", model_cache)
    model, tokenizer = load_model(ref, model_cache, dtype="bfloat16")
    return HFBackend(model, tokenizer, ref.fingerprint, batch_size=4)


def test_generations_equal_those_of_the_growing_cache(bf16_backend, monkeypatch):
    template = TEMPLATES["short_answer_fewshot"]
    passage = Passage("1", "Berlin Wall", "The Berlin Wall fell on 9 November 1989. " * 20)
    texts = [bf16_backend.chat_prompt(template.closed(q)) for q in QUESTIONS[:2]]
    texts.append(bf16_backend.chat_prompt(template.augmented(QUESTIONS[2], [passage])))
    greedy, sampling = GreedyConfig(max_new_tokens=10), SamplingConfig(n=3, max_new_tokens=6)

    def generate():
        return (bf16_backend.greedy(texts, greedy),
                bf16_backend.sample(texts, ["a", "b", "c"], sampling, seed=1))

    roomy = generate()
    monkeypatch.setattr(hf_backend, "reserve_decode_room", lambda cache, room: 0)
    growing = generate()
    for a, b in zip(roomy[0], growing[0]):
        assert a.text == b.text and a.stop_reason == b.stop_reason
        np.testing.assert_array_equal(a.token_logprobs, b.token_logprobs)
        np.testing.assert_array_equal(a.hidden_mean, b.hidden_mean)
    for a, b in zip(roomy[1], growing[1]):
        for x, y in zip(a.samples, b.samples):
            assert x.text == y.text
            np.testing.assert_array_equal(x.token_logprobs, y.token_logprobs)


def layer_with(keys: torch.Tensor) -> DynamicLayer:
    layer = DynamicLayer()
    layer.update(keys, keys + 100)
    return layer


def test_steps_write_into_the_room_then_fall_back():
    keys = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)

    class Cache:
        layers = [layer_with(keys), DynamicLayer()]  # the second was never filled

    cache = Cache()
    assert reserve_decode_room(cache, 2) == 1
    layer = cache.layers[0]
    assert isinstance(layer, RoomyLayer) and type(cache.layers[1]) is DynamicLayer
    buffer = layer._key_buffer
    for step in range(3):
        new = torch.full((2, 1, 1, 2), -1.0 - step)
        k, v = layer.update(new, new + 100)
        assert k.shape == (2, 1, 4 + step, 2) and layer.get_seq_length() == 4 + step
        torch.testing.assert_close(k[:, :, :3], keys, rtol=0, atol=0)
        torch.testing.assert_close(v[:, :, -1], new[:, :, 0] + 100, rtol=0, atol=0)
        # two steps fit in the room (no copy); the third falls back to concatenation
        assert (k.data_ptr() == buffer.data_ptr()) == (step < 2)


def test_replaced_keys_fall_back_to_concatenation():
    keys = torch.zeros(3, 1, 4, 2)

    class Cache:
        layers = [layer_with(keys)]

    cache = Cache()
    reserve_decode_room(cache, 8)
    layer = cache.layers[0]
    layer.batch_select_indices(torch.tensor([0, 2]))  # a copy: no longer the buffer
    k, _ = layer.update(torch.ones(2, 1, 1, 2), torch.ones(2, 1, 1, 2))
    assert k.shape == (2, 1, 5, 2) and float(k[:, :, -1].sum()) == 4.0
    layer.crop(-2)
    k, _ = layer.update(torch.ones(2, 1, 1, 2), torch.ones(2, 1, 1, 2))
    assert k.shape == (2, 1, 4, 2)
    assert reserve_decode_room(cache, 0) == 0
