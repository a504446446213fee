"""Batched greedy and sampled generation that records everything estimators need.

A hand-written decode loop over the KV cache (rather than ``generate``) lets
one pass keep, per step, reductions of the full next-token distribution
(log-prob of the chosen token, entropy, mean log-prob, top-K alternatives,
logsumexp of the raw logits) and the hidden states of chosen layers, without
materialising ``steps × vocab`` tensors. Samples of one prompt share one
prefill: the prompt's KV cache is repeated N times. With ``prefix_cache`` the
prompts of a batch also share the prefill of their common prefix
(:mod:`bench.models.prefill`).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench.models.kv_room import reserve_decode_room
from bench.models.outputs import Generation, SampleSet
from bench.models.prefill import (
    Prefill,
    PrefixMemo,
    PrefixState,
    common_prefix_length,
    default_hidden_layers,
    encode_prefix,
    full_prefill,
    shared_prefill,
    supports_prefix_reuse,
)

log = logging.getLogger(__name__)

#: Role of a trailing turn holding the beginning of the assistant's reply.
CONTINUATION = "continuation"


@dataclass(frozen=True)
class GreedyConfig:
    """Decoding parameters of the greedy pass (all part of cache keys)."""

    max_new_tokens: int = 48
    stop_at_newline: bool = True
    top_alternatives: int = 10
    #: Hidden-state tuple indices to keep (0 = embeddings); None → middle and last.
    layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SamplingConfig:
    """N answers at temperature T with top-k truncation (study: 10, 1.0, 50)."""

    n: int = 10
    temperature: float = 1.0
    top_k: int = 50
    max_new_tokens: int = 32
    stop_at_newline: bool = True
    top_alternatives: int = 10
    layers: tuple[int, ...] | None = None


@dataclass
class CallCounter:
    """LM work actually performed (cache hits never reach the backend).

    ``prompt_tokens`` counts prompt tokens run through the model;
    ``reused_prompt_tokens`` those served from a shared prefix's KV cache
    instead (always 0 without ``prefix_cache``). Their sum is the prompt
    length summed over prompts.
    """

    generate_calls: int = 0
    sequences: int = 0
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    generated_tokens: int = 0
    forward_passes: int = 0
    seconds: float = 0.0


def row_seed(base_seed: int, key: str, index: int) -> int:
    """Seed of one sample row: independent of batch position and composition."""
    digest = hashlib.sha256(f"{base_seed}|{key}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class HFBackend:
    """A transformers causal LM behind the two calls the runner needs.

    Parameters
    ----------
    model, tokenizer
        As returned by :func:`bench.models.loading.load_model`.
    fingerprint : str
        Model identity for cache keys.
    batch_size : int
        Prompts per forward batch (samples multiply it by N).
    prefix_cache : bool
        Encode the token prefix shared by a batch's prompts once and prefill
        only the suffixes (:mod:`bench.models.prefill`). Results equal a full
        prefill up to rounding (fp32: ~1e-5 on logits; bf16: a few 1e-2),
        so cached generations of the two modes must not be mixed. Models
        whose cache is not a plain per-layer KV cache (sliding windows,
        recurrent state) always prefill in full.
    min_prefix_tokens : int
        Shorter shared prefixes are prefilled with the rest of the prompt.
    prefix_memo_size : int
        Encoded prefixes kept for later batches with the same common prefix.
    """

    def __init__(self, model, tokenizer, fingerprint: str, batch_size: int = 16,
                 prefix_cache: bool = False, min_prefix_tokens: int = 16,
                 prefix_memo_size: int = 4) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache and supports_prefix_reuse(model)
        if prefix_cache and not self.prefix_cache:
            log.warning("%s: its KV cache cannot be shared by prefix; prefilling in full",
                        fingerprint)
        self.min_prefix_tokens = max(1, min_prefix_tokens)
        self.prefix_memo = PrefixMemo(prefix_memo_size)
        self.counter = CallCounter()
        self.num_layers = int(model.config.num_hidden_layers)
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        self.eos_ids = sorted(i for i in eos if i is not None)
        self._newline_mask: torch.Tensor | None = None
        self._blank_mask: torch.Tensor | None = None

    # -- prompts ----------------------------------------------------------
    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render (role, content) turns with the model's chat template.

        A final ``("continuation", text)`` turn is appended verbatim after the
        generation prompt: the model continues ``text``.

        A model without a chat template gets the contents joined by blank
        lines, assistant turns included, ending where the answer starts.
        """
        messages = list(messages)
        # A trailing "continuation" turn is the start of the reply: appended
        # verbatim after the generation prompt so decoding continues it.
        continuation = messages.pop()[1] if messages and messages[-1][0] == CONTINUATION else ""
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": role, "content": content} for role, content in messages],
                tokenize=False, add_generation_prompt=True) + continuation
        return "\n\n".join(content for _, content in messages) + " " + continuation

    def layers(self, requested: tuple[int, ...] | None) -> tuple[int, ...]:
        chosen = requested or default_hidden_layers(self.num_layers)
        for layer in chosen:
            if not 0 <= layer <= self.num_layers:
                raise ValueError(f"hidden layer {layer} outside 0..{self.num_layers}")
        return tuple(chosen)

    # -- public calls -------------------------------------------------------
    def greedy(self, prompts: Sequence[str], config: GreedyConfig) -> list[Generation]:
        """One greedy answer per prompt, decoded as one batch."""
        return self._generate(list(prompts), repeat=1, config=config, seeds=None)

    def sample(self, prompts: Sequence[str], keys: Sequence[str], config: SamplingConfig,
               seed: int) -> list[SampleSet]:
        """``config.n`` samples per prompt, decoded as one batch of ``len × n`` rows.

        Row ``i`` of prompt ``key`` draws from its own generator seeded by
        (seed, key, i), so samples do not depend on batch position.
        """
        seeds = [row_seed(seed, key, i) for key in keys for i in range(config.n)]
        gens = self._generate(list(prompts), repeat=config.n, config=config, seeds=seeds)
        return [SampleSet(tuple(gens[q * config.n:(q + 1) * config.n]), config.temperature,
                          config.top_k) for q in range(len(prompts))]

    # -- decoding -----------------------------------------------------------
    def _token_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._newline_mask is None:
            vocab = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(vocab)])
            size = self.model.config.vocab_size
            newline = torch.zeros(max(size, vocab), dtype=torch.bool)
            blank = torch.zeros(max(size, vocab), dtype=torch.bool)
            for i, text in enumerate(texts):
                newline[i] = "\n" in text
                blank[i] = not text.strip()
            self._newline_mask, self._blank_mask = newline, blank
        return self._newline_mask, self._blank_mask

    @torch.inference_mode()
    def _generate(self, prompts: list[str], repeat: int, config, seeds: list[int] | None
                  ) -> list[Generation]:
        started = time.perf_counter()
        layers = self.layers(config.layers)
        prefill = self._prefill(prompts, layers)
        cache, logits, hidden, mask = prefill.cache, prefill.logits, prefill.hidden, prefill.mask
        prompt_lengths, prompt_mean = prefill.prompt_lengths, prefill.prompt_mean
        next_pos = prefill.next_position
        self._vocab_width = logits.shape[-1]
        prompt_last = hidden.clone()
        if repeat > 1:
            cache.batch_repeat_interleave(repeat)
            logits = logits.repeat_interleave(repeat, dim=0)
            hidden = hidden.repeat_interleave(repeat, dim=0)
            mask = mask.repeat_interleave(repeat, dim=0)
            next_pos = next_pos.repeat_interleave(repeat, dim=0)
        reserve_decode_room(cache, config.max_new_tokens - 1)
        rows = logits.shape[0]
        generators = None
        if seeds is not None:
            generators = [torch.Generator().manual_seed(s) for s in seeds]
        newline_mask, blank_mask = self._token_masks()
        eos = torch.tensor(self.eos_ids, dtype=torch.long)
        done = torch.zeros(rows, dtype=torch.bool)
        has_text = torch.zeros(rows, dtype=torch.bool)
        stop_reason = ["length"] * rows
        steps: list[dict[str, torch.Tensor]] = []
        hidden_sum = torch.zeros_like(hidden)
        hidden_last = hidden.clone()
        n_steps = torch.zeros(rows, dtype=torch.long)
        for step in range(config.max_new_tokens):
            active = ~done
            live = _rows_to_score(active)
            if live is None:
                stats = _step_statistics(logits, config, generators)
            else:
                live_generators = None if generators is None else \
                    [generators[i] for i in live.tolist()]
                stats = {name: _spread(value, live, rows) for name, value in
                         _step_statistics(logits[live], config, live_generators).items()}
            stats["active"] = active.clone()
            steps.append(stats)
            chosen = stats["token"]
            hidden_sum += hidden * active[:, None, None]
            hidden_last = torch.where(active[:, None, None], hidden, hidden_last)
            n_steps += active.long()
            is_eos = torch.isin(chosen, eos)
            is_newline = newline_mask[chosen] & has_text if config.stop_at_newline else \
                torch.zeros_like(is_eos)
            for r in torch.nonzero(active & (is_eos | is_newline)).flatten().tolist():
                stop_reason[r] = "eos" if bool(is_eos[r]) else "newline"
            has_text |= ~blank_mask[chosen]
            done |= is_eos | is_newline
            if bool(done.all()) or step == config.max_new_tokens - 1:
                break
            feed = torch.where(done, torch.full_like(chosen, self.tokenizer.pad_token_id), chosen)
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            next_pos = next_pos + 1
            out = self.model(input_ids=feed[:, None], attention_mask=mask,
                             position_ids=next_pos[:, None], past_key_values=cache,
                             use_cache=True, output_hidden_states=list(layers))
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
            hidden = torch.stack([out.hidden_states[i][:, -1, :] for i in layers], dim=1).float()
        generations = self._collect(steps, stop_reason, hidden_sum, hidden_last, n_steps,
                                    layers, [prompt_lengths[r // repeat] for r in range(rows)],
                                    prompt_mean.repeat_interleave(repeat, dim=0),
                                    prompt_last.repeat_interleave(repeat, dim=0))
        elapsed = time.perf_counter() - started
        self._count(prompts, prefill, generations, elapsed, len(steps))
        return generations

    def _prefill(self, prompts: list[str], layers: tuple[int, ...]) -> Prefill:
        rows = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        pad_id = self.tokenizer.pad_token_id
        if self.prefix_cache:
            found = self._shared_prefix(rows)
            if found is not None:
                prefix, encoded = found
                prefill = shared_prefill(self.model, rows, pad_id, layers, prefix)
                prefill.prefilled_tokens += encoded
                prefill.forward_calls += int(encoded > 0)
                return prefill
        return full_prefill(self.model, rows, pad_id, layers)

    def _shared_prefix(self, rows: list[list[int]]) -> tuple[PrefixState, int] | None:
        """(prefix, tokens encoded for it now) for ``rows``, or None for a full prefill.

        The prefix is the batch's whole common prefix, less one token so every
        row keeps a suffix token whose logits start the decoding. It depends
        on the batch alone (see :mod:`bench.models.prefill`), so a single
        prompt, which shares nothing, is prefilled in full.
        """
        if len(rows) < 2:
            return None
        length = min(common_prefix_length(rows), min(len(r) for r in rows) - 1)
        if length < self.min_prefix_tokens:
            return None
        prefix = self.prefix_memo.get(rows[0][:length])
        if prefix is not None:
            return prefix, 0
        prefix = encode_prefix(self.model, rows[0][:length])
        self.prefix_memo.put(prefix)
        return prefix, length

    def _collect(self, steps, stop_reason, hidden_sum, hidden_last, n_steps, layers,
                 prompt_lengths, prompt_mean, prompt_last) -> list[Generation]:
        stacked = {name: torch.stack([s[name] for s in steps], dim=1) for name in steps[0]}
        layer_arr = np.asarray(layers, dtype=np.int64)
        vocab_size = int(self._vocab_width)
        generations = []
        for r in range(len(stop_reason)):
            n = int(n_steps[r])
            take = {name: t[r, :n].numpy() for name, t in stacked.items()}
            ids = take["token"].astype(np.int64)
            text_ids = ids[:-1] if stop_reason[r] != "length" else ids
            text = self.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
            generations.append(Generation(
                text=text, token_ids=ids,
                token_logprobs=take["logprob"].astype(np.float32),
                entropies=take["entropy"].astype(np.float32),
                mean_logprobs=take["mean_logprob"].astype(np.float32),
                logsumexp=take["logsumexp"].astype(np.float32),
                topk_ids=take["top_ids"].astype(np.int64),
                topk_logprobs=take["top_lp"].astype(np.float32),
                sampling_logprobs=take["sampling_logprob"].astype(np.float32),
                root_mass_t2=take["root_mass_t2"].astype(np.float32),
                hidden_mean=(hidden_sum[r] / max(n, 1)).numpy().astype(np.float32),
                hidden_last=hidden_last[r].numpy().astype(np.float32),
                prompt_hidden_mean=prompt_mean[r].numpy().astype(np.float32),
                prompt_hidden_last=prompt_last[r].numpy().astype(np.float32),
                layers=layer_arr, token_texts=tuple(self.token_texts(ids)),
                stop_reason=stop_reason[r],
                prompt_tokens=int(prompt_lengths[r]), vocab_size=vocab_size))
        return generations

    def token_texts(self, ids) -> list[str]:
        """Each token decoded on its own, special tokens as their names."""
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def _count(self, prompts, prefill: Prefill, generations, elapsed, n_steps) -> None:
        c = self.counter
        c.generate_calls += len(prompts)
        c.sequences += len(generations)
        c.prompt_tokens += prefill.prefilled_tokens
        c.reused_prompt_tokens += int(sum(prefill.prompt_lengths)) - prefill.prefilled_tokens
        c.generated_tokens += sum(g.n_tokens for g in generations)
        # The first step's logits come from the prefill, so decoding adds
        # n_steps - 1 calls to the prefill's.
        c.forward_passes += n_steps - 1 + prefill.forward_calls
        c.seconds += elapsed


def _step_statistics(logits: torch.Tensor, config, generators: list[torch.Generator] | None
                     ) -> dict[str, torch.Tensor]:
    """The next token of each row and the per-step statistics estimators read."""
    logp = torch.log_softmax(logits, dim=-1)
    if generators is None:
        chosen = logp.argmax(dim=-1)
        sample_lp = logp.gather(1, chosen[:, None])[:, 0]
    else:
        chosen, sample_lp = _sample_top_k(logits, config.temperature, config.top_k, generators)
    probs = logp.exp()
    logp_t2 = torch.log_softmax(logits / 2.0, dim=-1)
    top_lp, top_ids = logp.topk(config.top_alternatives, dim=-1)
    return {
        "token": chosen, "logprob": logp.gather(1, chosen[:, None])[:, 0],
        # xlogy-style masking: a -inf logit contributes 0, not NaN.
        "entropy": -torch.where(probs > 0, probs * logp, 0.0).sum(-1),
        "mean_logprob": logp.mean(-1),
        "logsumexp": torch.logsumexp(logits, dim=-1), "sampling_logprob": sample_lp,
        "root_mass_t2": torch.logsumexp(0.5 * logp_t2, dim=-1),
        "top_ids": top_ids, "top_lp": top_lp}


def _rows_to_score(active: torch.Tensor) -> torch.Tensor | None:
    """Rows whose step statistics are computed, or None for all.

    Finished rows are never read (``_collect`` takes each row's first
    ``n_steps`` steps), so only unfinished ones are scored. A reduction over
    the vocabulary gives a row the same bits in any batch as long as ATen
    parallelises it over rows, i.e. with at least as many rows as threads;
    with fewer it splits each row across threads. So the subset is topped up
    with finished rows to the thread count (``tests/test_step_statistics.py`` checks
    the bits).
    """
    if bool(active.all()):
        return None
    threads = torch.get_num_threads()
    if active.numel() <= threads:
        return None
    live = torch.nonzero(active)[:, 0]
    if live.numel() < threads:
        filler = torch.nonzero(~active)[:, 0][:threads - live.numel()]
        live = torch.cat([live, filler]).sort().values
    return live


def _spread(values: torch.Tensor, rows_of: torch.Tensor, rows: int) -> torch.Tensor:
    """``values`` of the rows ``rows_of`` placed in a zero tensor of ``rows`` rows."""
    full = values.new_zeros((rows, *values.shape[1:]))
    full[rows_of] = values
    return full


def _sample_top_k(logits: torch.Tensor, temperature: float, top_k: int,
                  generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF draw from the tempered top-k distribution, one generator per row."""
    values, ids = (logits / temperature).topk(min(top_k, logits.shape[-1]), dim=-1)
    logq = torch.log_softmax(values, dim=-1)
    cdf = logq.exp().cumsum(-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]) * cdf[:, -1]
    index = torch.searchsorted(cdf, u[:, None]).clamp(max=values.shape[-1] - 1)
    return ids.gather(1, index)[:, 0], logq.gather(1, index)[:, 0]
