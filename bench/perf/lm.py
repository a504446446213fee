"""Language-model timings: prefill, decode steps, N samples from one prefill, model load.

Each function times one thing and returns seconds (best of ``rounds``: the
round least disturbed by other load); :mod:`bench.perf.lm_figures` turns them
into figures. The model is called exactly as :class:`~bench.models.hf_backend.HFBackend`
calls it (left padding, explicit positions, KV cache, hidden states on), so
the rates are those a run gets from its forward passes.
"""
from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.models.kv_room import reserve_decode_room
from bench.models.loading import ModelRef, load_model
from bench.models.prefill import default_hidden_layers
from bench.prompts import DEFAULT_TEMPLATE, TEMPLATES
from retrievers.base import Corpus, Retriever


@dataclass(frozen=True)
class MatmulParameters:
    """Weights of the matrix products a forward pass runs.

    Attributes
    ----------
    per_token : int
        ``nn.Linear`` weights of the decoder layers (attention and MLP
        projections): every token goes through all of them.
    lm_head : int
        The output projection (vocabulary × hidden). It runs for every decoded
        token, but in a prefill with ``logits_to_keep=1`` once per sequence.
        Counted even when tied to the input embedding, whose lookup is no product.
    """

    per_token: int
    lm_head: int


def matmul_parameters(model) -> MatmulParameters:
    """Count the model's product weights (norm weights and the embedding lookup excluded)."""
    head = model.get_output_embeddings()
    per_token = sum(module.weight.numel() for module in model.modules()
                    if isinstance(module, torch.nn.Linear) and module is not head)
    return MatmulParameters(int(per_token), int(head.weight.numel()))


@dataclass(frozen=True)
class PromptSet:
    """Rendered prompts of one kind (what the model is fed), from real questions."""

    key: str
    label: str
    texts: list[str]


def prompt_sets(backend: HFBackend, questions: Sequence[str], corpus: Corpus,
                retriever: Retriever, top_k: int) -> list[PromptSet]:
    """Closed-book prompts (zero-shot and the default few-shot) and RAG prompts (top-k)."""
    fewshot, zero_shot = TEMPLATES[DEFAULT_TEMPLATE], TEMPLATES["short_answer"]
    hits = retriever.search(list(questions), top_k)
    rag = [fewshot.augmented(q, [corpus.get(h.passage_id) for h in found])
           for q, found in zip(questions, hits)]
    return [
        PromptSet("closed_zero_shot", "closed-book, zero-shot",
                  [backend.chat_prompt(zero_shot.closed(q)) for q in questions]),
        PromptSet("closed_fewshot", "closed-book, 3-shot (default)",
                  [backend.chat_prompt(fewshot.closed(q)) for q in questions]),
        PromptSet(f"rag_top{top_k}", f"RAG, {top_k} passages",
                  [backend.chat_prompt(messages) for messages in rag]),
    ]


def encode(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(input_ids, attention_mask)``, as the backend encodes a batch."""
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def _backend_layers(model) -> list[int]:
    """The hidden states the backend keeps by default."""
    return list(default_hidden_layers(int(model.config.num_hidden_layers)))


def prefill(model, ids: torch.Tensor, mask: torch.Tensor, all_hidden_states: bool = False):
    """One prompt pass as the backend runs it: ``(model output, position ids)``.

    ``all_hidden_states=True`` keeps every layer's states instead of the backend's two.
    """
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    selection = True if all_hidden_states else _backend_layers(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                output_hidden_states=selection, logits_to_keep=1)
    return out, positions


@dataclass(frozen=True)
class PrefillTiming:
    """Best seconds of one batched prefill, with its real and padded token counts."""

    seconds: float
    sequences: int
    tokens: int
    padded_tokens: int


@torch.inference_mode()
def time_prefill(model, tokenizer, texts: Sequence[str], rounds: int) -> PrefillTiming:
    """One forward pass over the batch ``texts`` (``logits_to_keep=1``), best of ``rounds``.

    An untimed pass first pays for allocation and kernel selection.
    """
    ids, mask = encode(tokenizer, texts)
    prefill(model, ids, mask)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        prefill(model, ids, mask)
        best = min(best, time.perf_counter() - start)
    return PrefillTiming(best, len(texts), int(mask.sum()), int(mask.numel()))


@dataclass
class DecodeState:
    """A batch mid-decoding: KV cache, attention mask, last positions and next tokens."""

    cache: object
    mask: torch.Tensor
    position: torch.Tensor
    token: torch.Tensor


@torch.inference_mode()
def start_decode(model, ids: torch.Tensor, mask: torch.Tensor, room: int = 0) -> DecodeState:
    """Prefill ``ids`` and pick each row's first token (greedy).

    ``room`` positions are reserved in the KV cache for the decode steps, as
    :class:`~bench.models.hf_backend.HFBackend` does (0: transformers' growing cache).
    """
    out, positions = prefill(model, ids, mask)
    reserve_decode_room(out.past_key_values, room)
    return DecodeState(out.past_key_values, mask, positions[:, -1],
                       out.logits[:, -1, :].argmax(dim=-1))


@torch.inference_mode()
def decode_steps(model, state: DecodeState, steps: int) -> None:
    """``steps`` greedy single-token passes over the KV cache, advancing ``state``.

    One forward per step for the whole batch (the attention mask grown by one
    column, hidden states on as in the backend); no row stops at EOS, so every
    row decodes ``steps`` tokens.
    """
    ones = torch.ones((state.mask.shape[0], 1), dtype=state.mask.dtype)
    layers = _backend_layers(model)
    for _ in range(steps):
        state.mask = torch.cat([state.mask, ones], dim=1)
        state.position = state.position + 1
        out = model(input_ids=state.token[:, None], attention_mask=state.mask,
                    position_ids=state.position[:, None], past_key_values=state.cache,
                    use_cache=True, output_hidden_states=layers)
        state.cache = out.past_key_values
        state.token = out.logits[:, -1, :].argmax(dim=-1)


def time_decode(model, tokenizer, texts: Sequence[str], steps: int, rounds: int,
                room: bool = True) -> float:
    """Best seconds of ``steps`` decode steps of the batch ``texts`` (prefill untimed).

    ``room``: decode into reserved KV room as the backend does, or (False)
    into transformers' cache, which concatenates every step.
    """
    if steps < 1:
        raise ValueError(f"decode steps must be positive, got {steps}")
    ids, mask = encode(tokenizer, texts)
    best = float("inf")
    for _ in range(rounds):
        state = start_decode(model, ids, mask, steps if room else 0)
        start = time.perf_counter()
        decode_steps(model, state, steps)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class SamplingTiming:
    """One prompt: N samples through ``HFBackend.sample`` against one greedy answer.

    ``prefills_counted`` and ``prompt_tokens_counted`` are the backend's own
    :class:`~bench.models.hf_backend.CallCounter` increments for the sample call;
    ``prefill_calls`` and ``prefill_rows`` count the model calls over more than
    one position (prefills) and the rows they ran, observed with a forward hook.
    """

    n: int
    prompt_tokens: int
    sample_seconds: float
    greedy_seconds: float
    sequences: int
    prefills_counted: int
    prompt_tokens_counted: int
    prefill_calls: int
    prefill_rows: int
    decode_calls: int


def time_sampling(backend: HFBackend, prompt: str, key: str, greedy: GreedyConfig,
                  sampling: SamplingConfig, rounds: int, seed: int = 0) -> SamplingTiming:
    """Best seconds of ``sampling.n`` samples and of one greedy answer of ``prompt``."""
    if rounds < 1:
        raise ValueError(f"rounds must be positive, got {rounds}")
    calls: list[tuple[int, int]] = []

    def record(_module, args, kwargs):
        inputs = kwargs.get("input_ids", args[0] if args else None)
        if inputs is None:
            inputs = kwargs.get("inputs_embeds")
        calls.append((int(inputs.shape[0]), int(inputs.shape[1])))

    greedy_best = sample_best = float("inf")
    backend.greedy([prompt], greedy)  # warm-up: token masks and allocation
    for _ in range(rounds):
        start = time.perf_counter()
        backend.greedy([prompt], greedy)
        greedy_best = min(greedy_best, time.perf_counter() - start)
    for _ in range(rounds):
        before = dataclasses.replace(backend.counter)
        calls.clear()
        handle = backend.model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            start = time.perf_counter()
            sets = backend.sample([prompt], [key], sampling, seed)
            sample_best = min(sample_best, time.perf_counter() - start)
        finally:
            handle.remove()
        after = backend.counter
    prefills = [(rows, width) for rows, width in calls if width > 1]
    return SamplingTiming(
        n=sampling.n, prompt_tokens=sets[0].samples[0].prompt_tokens,
        sample_seconds=sample_best, greedy_seconds=greedy_best,
        sequences=len(sets[0].samples),
        prefills_counted=after.generate_calls - before.generate_calls,
        prompt_tokens_counted=after.prompt_tokens - before.prompt_tokens,
        prefill_calls=len(prefills), prefill_rows=sum(rows for rows, _ in prefills),
        decode_calls=len(calls) - len(prefills))


@contextmanager
def attention_implementation(model, name: str):
    """Run the block with ``model`` on attention implementation ``name``, then restore it."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@torch.inference_mode()
def time_backend_prefill(backend: HFBackend, texts: Sequence[str], rounds: int
                         ) -> tuple[float, float, int]:
    """(seconds in full, seconds with the memoised common prefix, prefix tokens).

    Best of ``rounds`` each; the prefix run starts from a memo filled by one
    untimed pass, as any batch after the first of a template does.
    """
    from bench.models.prefill import common_prefix_length

    rows = backend.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    layers = backend.layers(None)
    reuse = HFBackend(backend.model, backend.tokenizer, backend.fingerprint,
                      prefix_cache=True)
    seconds = []
    for owner in (backend, reuse):
        owner._prefill(list(texts), layers)  # warm-up; fills the memo of ``reuse``
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            owner._prefill(list(texts), layers)
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
    return seconds[0], seconds[1], min(common_prefix_length(rows), min(map(len, rows)) - 1)


def time_load(ref: ModelRef, cache_dir: str | Path, dtype: str, rounds: int) -> float:
    """Best seconds of :func:`load_model` from the converted cache (call after a first load)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        model, tokenizer = load_model(ref, cache_dir, dtype)
        best = min(best, time.perf_counter() - start)
        del model, tokenizer
        gc.collect()
    return best
