"""Prompt prefill of a decode batch, optionally reusing a shared prefix's KV cache.

Prompts of one template share a long token prefix: with the default few-shot
template every prompt begins with the system turn and three demonstrations
(116 tokens of about 140 for a closed-book prompt, 128 of about 900 with
passages). :func:`shared_prefill` encodes that prefix once, as a batch of one,
expands its keys and values to the batch and prefills only the suffixes.
Each row is laid out as::

    tokens     [prefix, P tokens] [pad ... pad] [suffix]
    mask        1 ... 1            0 ... 0       1 ... 1
    positions   0 ... P-1                        P ... P+S-1

so every real token has the position and the visible context a full
left-padded prefill gives it, and the decode loop continues unchanged. The
result equals a full prefill up to floating-point rounding (shapes of the
matrix products differ), which is why a run with prefix reuse keeps its
generations under a cache namespace of its own.

The prefix is the batch's whole common prefix, encoded from scratch, so the
result depends on the batch alone: the store forms the same batches in a
resumed or sharded run, which then reproduces the uninterrupted one bit for
bit. :class:`PrefixMemo` keeps the last few encoded prefixes (keys, values and
the hidden states of every layer at every prefix position, for the
prompt-mean statistic) and hands one back only for the very same token ids,
i.e. exactly what encoding them again would give. Slicing a longer memoised
prefix or continuing a shorter one would be cheaper but rounds differently,
which would make results depend on what ran before.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class Prefill:
    """What the decode loop needs from the prompt pass of a batch.

    Attributes
    ----------
    cache : DynamicCache
        Keys and values of every prompt position, one row per prompt.
    logits : torch.Tensor
        ``(rows, vocab)`` float32 next-token logits after each prompt.
    hidden : torch.Tensor
        ``(rows, layers, hidden)`` float32 states at the last prompt position.
    prompt_mean : torch.Tensor
        ``(rows, layers, hidden)`` mean over every real prompt position.
    mask : torch.Tensor
        ``(rows, width)`` attention mask over the cached positions.
    next_position : torch.Tensor
        ``(rows,)`` position id of each row's last prompt token.
    prompt_lengths : list[int]
        Real prompt tokens per row.
    prefilled_tokens : int
        Prompt tokens run through the model by this call (the rest were reused).
    forward_calls : int
        Model calls made.
    """

    cache: DynamicCache
    logits: torch.Tensor
    hidden: torch.Tensor
    prompt_mean: torch.Tensor
    mask: torch.Tensor
    next_position: torch.Tensor
    prompt_lengths: list[int]
    prefilled_tokens: int
    forward_calls: int = 1


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of token rows padded on the left to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask


def default_hidden_layers(num_layers: int) -> tuple[int, ...]:
    """The hidden-state indices read when a call names none: the middle and the last layer."""
    return (num_layers // 2, num_layers)


def _states(out, layers: tuple[int, ...]) -> torch.Tensor:
    """``(rows, layers, positions, hidden)`` float32 hidden states of the chosen layers."""
    return torch.stack([out.hidden_states[i] for i in layers], dim=1).float()


def full_prefill(model, rows: Sequence[Sequence[int]], pad_id: int,
                 layers: tuple[int, ...]) -> Prefill:
    """Prefill whole left-padded prompts."""
    input_ids, mask = left_pad(rows, pad_id)
    lengths = mask.sum(dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # logits_to_keep=1: the LM head over every prompt position would cost
    # prompt_len × vocab × hidden FLOPs and memory for nothing.
    # A list keeps only the chosen layers' states where transformers selects
    # by index (5.0 keeps all, same values): every layer at every prompt
    # position takes more memory than the KV cache (36 against 23 KB per token).
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                use_cache=True, output_hidden_states=list(layers), logits_to_keep=1)
    states = _states(out, layers)
    weights = (mask / lengths[:, None]).float()[:, None, :, None]
    return Prefill(out.past_key_values, out.logits[:, -1, :].float(), states[:, :, -1].clone(),
                   (states * weights).sum(dim=2), mask, positions[:, -1], lengths.tolist(),
                   int(lengths.sum()))


@dataclass(frozen=True)
class PrefixState:
    """An encoded prompt prefix (batch of one).

    Attributes
    ----------
    ids : tuple[int, ...]
        Its token ids.
    keys, values : tuple[torch.Tensor, ...]
        Per decoder layer, ``(1, kv_heads, len(ids), head_dim)``.
    hidden : torch.Tensor
        ``(num_layers + 1, len(ids), hidden)`` states of every hidden-state
        index at every position, in the model's dtype.
    """

    ids: tuple[int, ...]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    hidden: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self, rows: int) -> DynamicCache:
        """A fresh cache holding this prefix ``rows`` times (the memo is never mutated)."""
        return DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                             for k, v in zip(self.keys, self.values)])

    def hidden_sum(self, layers: tuple[int, ...]) -> torch.Tensor:
        """``(layers, hidden)`` float32 sum of the chosen layers' states over the prefix."""
        return self.hidden[list(layers)].float().sum(dim=1)


def supports_prefix_reuse(model) -> bool:
    """Whether every layer keeps a plain growing KV cache (no sliding window or recurrent state).

    Only such caches can be sliced to a leading part and continued after a
    left-padded gap.
    """
    probe = DynamicCache(config=model.config)
    return all(type(layer) is DynamicLayer for layer in probe.layers)


def encode_prefix(model, ids: Sequence[int]) -> PrefixState:
    """Encode ``ids`` as a batch of one."""
    out = model(input_ids=torch.as_tensor([list(ids)], dtype=torch.long),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                position_ids=torch.arange(len(ids))[None], use_cache=True,
                output_hidden_states=True, logits_to_keep=1)
    layers = out.past_key_values.layers
    return PrefixState(tuple(int(i) for i in ids), tuple(layer.keys for layer in layers),
                       tuple(layer.values for layer in layers),
                       torch.stack([h[0] for h in out.hidden_states], dim=0))


def shared_prefill(model, rows: Sequence[Sequence[int]], pad_id: int, layers: tuple[int, ...],
                   prefix: PrefixState) -> Prefill:
    """Prefill the suffixes of ``rows`` after ``prefix``, which every row starts with.

    ``prefilled_tokens`` counts the suffix tokens only; the caller adds the
    prefix tokens it encoded.
    """
    start = len(prefix)
    suffix_ids, suffix_mask = left_pad([r[start:] for r in rows], pad_id)
    if int(suffix_mask.sum(dim=1).min()) == 0:
        raise ValueError("every prompt needs at least one token after the shared prefix")
    batch = len(rows)
    mask = torch.cat([torch.ones((batch, start), dtype=torch.long), suffix_mask], dim=1)
    positions = start + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=suffix_ids, attention_mask=mask, position_ids=positions,
                past_key_values=prefix.cache(batch), use_cache=True,
                output_hidden_states=list(layers), logits_to_keep=1)
    states = _states(out, layers)
    lengths = mask.sum(dim=1)
    # Sum of prefix and suffix states over the prompt length: the same mean a
    # full prefill takes over every real prompt position.
    total = prefix.hidden_sum(layers)[None] + (states * suffix_mask[:, None, :, None]).sum(dim=2)
    return Prefill(out.past_key_values, out.logits[:, -1, :].float(), states[:, :, -1].clone(),
                   total / lengths[:, None, None].float(), mask, positions[:, -1],
                   lengths.tolist(), int(suffix_mask.sum()))


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every row."""
    width = min(len(r) for r in rows)
    if width == 0:
        return 0
    first = np.asarray(rows[0][:width])
    length = width
    for row in rows[1:]:
        differ = np.nonzero(np.asarray(row[:length]) != first[:length])[0]
        length = int(differ[0]) if len(differ) else length
        if length == 0:
            break
    return length


class PrefixMemo:
    """The last ``capacity`` encoded prefixes by token ids, least recently used dropped first."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 0:
            raise ValueError(f"prefix memo capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], PrefixState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ids: Sequence[int]) -> PrefixState | None:
        """The prefix encoded for exactly ``ids``, if remembered."""
        key = tuple(int(i) for i in ids)
        state = self._entries.get(key)
        if state is not None:
            self._entries.move_to_end(key)
        return state

    def put(self, state: PrefixState) -> None:
        """Remember ``state``, dropping the least recently used beyond capacity."""
        if self.capacity == 0:
            return
        self._entries[state.ids] = state
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
