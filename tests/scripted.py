"""A deterministic stand-in for HFBackend: answers are a function of the prompt."""
from __future__ import annotations

import hashlib

import numpy as np

from bench.models.hf_backend import CallCounter
from bench.models.outputs import Generation, SampleSet


def scripted_generation(text: str, seed: int = 0) -> Generation:
    """A 3-step generation whose statistics depend only on (text, seed)."""
    rng = np.random.default_rng(int(hashlib.sha256(f"{text}|{seed}".encode()).hexdigest()[:8],
                                    16))
    logprobs = -rng.random(3).astype(np.float32)
    return Generation(
        text=text, token_ids=np.arange(3), token_logprobs=logprobs,
        entropies=rng.random(3).astype(np.float32), mean_logprobs=-rng.random(3).astype(
            np.float32) - 5, logsumexp=np.zeros(3, np.float32),
        topk_ids=np.zeros((3, 2), np.int64), topk_logprobs=np.zeros((3, 2), np.float32),
        sampling_logprobs=logprobs, root_mass_t2=np.zeros(3, np.float32),
        hidden_mean=np.zeros((2, 4), np.float32), hidden_last=np.zeros((2, 4), np.float32),
        prompt_hidden_mean=np.zeros((2, 4), np.float32),
        prompt_hidden_last=np.zeros((2, 4), np.float32), layers=np.array([1, 2]),
        token_texts=tuple(text[:3].ljust(3)), stop_reason="eos", prompt_tokens=7, vocab_size=16)


class ScriptedBackend:
    """Implements the HFBackend calls the stores use; counts what it is asked."""

    def __init__(self, answer=lambda prompt: prompt.split("|")[-1][::-1]) -> None:
        self.answer = answer
        self.counter = CallCounter()
        self.prompts_seen: list[str] = []

    def chat_prompt(self, messages) -> str:
        return "|".join(content for _, content in messages)

    def greedy(self, prompts, config):
        self.prompts_seen.extend(prompts)
        self.counter.generate_calls += len(prompts)
        return [scripted_generation(self.answer(p)) for p in prompts]

    def sample(self, prompts, keys, config, seed):
        self.prompts_seen.extend(prompts)
        self.counter.generate_calls += len(prompts)
        return [SampleSet(tuple(scripted_generation(f"{self.answer(p)}#{i % 2}", seed)
                                for i in range(config.n)), config.temperature, config.top_k)
                for p in prompts]
