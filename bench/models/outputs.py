"""Typed outputs of one model pass, with a pickle-free array round trip.

Step ``t`` of a generation is the forward position whose next-token
distribution p_t emitted answer token ``t``; the first step is the last
prompt position. Every per-step array therefore has one entry per emitted
token, the stop token (EOS or newline) included when one was emitted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

#: Why a generation stopped.
STOP_REASONS = ("eos", "newline", "length")


@dataclass(frozen=True)
class Generation:
    """One decoded sequence with per-step statistics of the full distribution.

    Attributes
    ----------
    text : str
        Decoded answer, stop token removed, stripped.
    token_ids : (n,) int64
        Emitted tokens, stop token included.
    token_logprobs : (n,) float32
        log p_t(y_t) under the model's untempered, untruncated distribution.
    entropies : (n,) float32
        H_t = -sum_v p_t(v) log p_t(v) over the full vocabulary.
    mean_logprobs : (n,) float32
        (1/V) sum_v log p_t(v); self-certainty is derived from it.
    logsumexp : (n,) float32
        logsumexp of the raw logits (energy score).
    topk_ids, topk_logprobs : (n, K)
        The K most likely tokens at each step and their log-probabilities.
    sampling_logprobs : (n,) float32
        log-probability under the distribution actually sampled from
        (temperature and top-k applied); equals ``token_logprobs`` for greedy.
    root_mass_t2 : (n,) float32
        log sum_v sqrt(p~_t(v)) with p~_t = softmax(logits / 2): the one
        full-vocabulary reduction Renyi (alpha 0.5) and Fisher-Rao at T=2 need.
    hidden_mean, hidden_last : (L, d) float32
        Hidden states of the recorded layers, averaged over the generation
        steps / taken at the final step (the one that emitted the stop token).
    prompt_hidden_mean, prompt_hidden_last : (L, d) float32
        The same layers averaged over the prompt's tokens (padding masked) /
        at the last prompt token, i.e. before anything is generated.
    layers : (L,) int64
        Indices into the model's hidden-state tuple (0 = embeddings).
    token_texts : tuple of str
        Each emitted token decoded on its own (word grouping, NLI on tokens).
    stop_reason : str
        One of :data:`STOP_REASONS`.
    prompt_tokens : int
        Prompt length without padding.
    vocab_size : int
        Size V of the distributions the per-step statistics were taken over.
    """

    text: str
    token_ids: np.ndarray
    token_logprobs: np.ndarray
    entropies: np.ndarray
    mean_logprobs: np.ndarray
    logsumexp: np.ndarray
    topk_ids: np.ndarray
    topk_logprobs: np.ndarray
    sampling_logprobs: np.ndarray
    root_mass_t2: np.ndarray
    hidden_mean: np.ndarray
    hidden_last: np.ndarray
    prompt_hidden_mean: np.ndarray
    prompt_hidden_last: np.ndarray
    layers: np.ndarray
    token_texts: tuple[str, ...]
    stop_reason: str
    prompt_tokens: int
    vocab_size: int

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def n_text_tokens(self) -> int:
        """Tokens that spell the answer text: all but the stop token, if one was emitted."""
        return self.n_tokens if self.stop_reason == "length" else max(self.n_tokens - 1, 0)

    def answer_steps(self, include_stop: bool) -> slice:
        """Steps an estimator aggregates over under the global EOS policy.

        With ``include_stop=False`` the step that emitted EOS/newline is
        dropped, unless it is the only step.
        """
        n = self.n_tokens
        if include_stop or self.stop_reason == "length" or n <= 1:
            return slice(0, n)
        return slice(0, n - 1)

    def sequence_hidden_mean(self) -> np.ndarray:
        """(L, d) mean over every prompt and answer position fed to the model.

        Generation step 1 reads the last prompt position, so that position is
        counted once; the final emitted token is never fed back and is absent.
        """
        prompt, steps = self.prompt_tokens, self.n_tokens
        total = (prompt * self.prompt_hidden_mean.astype(np.float64)
                 + steps * self.hidden_mean.astype(np.float64)
                 - (self.prompt_hidden_last.astype(np.float64) if steps else 0.0))
        return (total / max(prompt + steps - (1 if steps else 0), 1)).astype(np.float32)

    def layer_index(self, layer: int) -> int:
        """Row of ``layer`` in the (L, d) hidden-state arrays."""
        rows = np.flatnonzero(self.layers == layer)
        if rows.size == 0:
            raise KeyError(f"hidden layer {layer} was not recorded (have {self.layers.tolist()})")
        return int(rows[0])

    # -- serialisation -------------------------------------------------
    _SCALARS = ("text", "token_texts", "stop_reason", "prompt_tokens", "vocab_size")

    def to_record(self, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
        """Split into JSON-able scalars and named arrays."""
        meta = {prefix + k: getattr(self, k) for k in self._SCALARS}
        arrays = {prefix + f.name: np.asarray(getattr(self, f.name))
                  for f in fields(self) if f.name not in self._SCALARS}
        return meta, arrays

    @classmethod
    def from_record(cls, meta: dict, arrays: dict[str, np.ndarray],
                    prefix: str = "") -> Generation:
        kwargs = {k: meta[prefix + k] for k in cls._SCALARS}
        kwargs["token_texts"] = tuple(kwargs["token_texts"])
        kwargs.update({f.name: arrays[prefix + f.name] for f in fields(cls)
                       if f.name not in cls._SCALARS})
        return cls(**kwargs)


@dataclass(frozen=True)
class SampleSet:
    """N sampled answers to one prompt (one prefill, N continuations)."""

    samples: tuple[Generation, ...]
    temperature: float
    top_k: int

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    def to_record(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta: dict = {"n": len(self.samples), "temperature": self.temperature,
                      "top_k": self.top_k}
        arrays: dict[str, np.ndarray] = {}
        for i, s in enumerate(self.samples):
            m, a = s.to_record(prefix=f"s{i}.")
            meta.update(m)
            arrays.update(a)
        return meta, arrays

    @classmethod
    def from_record(cls, meta: dict, arrays: dict[str, np.ndarray]) -> SampleSet:
        samples = tuple(Generation.from_record(meta, arrays, prefix=f"s{i}.")
                        for i in range(meta["n"]))
        return cls(samples, meta["temperature"], meta["top_k"])


def canonical_json(obj) -> str:
    """Key-sorted compact JSON: the input of every content hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
