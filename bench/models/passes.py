"""Forward passes without decoding: teacher forcing, one-token readouts, attention, embeddings.

Each function takes an :class:`~bench.models.hf_backend.HFBackend`, runs one
left-padded batch and counts its work on the backend's counter. Position
``P + t - 1`` of a sequence with a ``P``-token prefix predicts forced token
``t``; the alignment is tested against the decode loop, whose step ``t``
reads the same position.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ForcedResult:
    """Per forced token: log p(y_t | prefix, y_<t) and the entropy at that step;
    ``readout``: log p of each requested id at the position after the last token."""

    token_logprobs: np.ndarray
    entropies: np.ndarray
    readout: np.ndarray


def _left_padded(backend, prefixes: Sequence[str], continuations: Sequence[Sequence[int]]):
    tok = backend.tokenizer
    rows = [tok(p, add_special_tokens=False)["input_ids"] + [int(i) for i in c]
            for p, c in zip(prefixes, continuations)]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions, [len(r) for r in rows]


def _count(backend, rows: int, tokens: int, started: float) -> None:
    counter = backend.counter
    counter.forward_passes += rows
    counter.prompt_tokens += tokens
    counter.seconds += time.perf_counter() - started


@torch.inference_mode()
def teacher_forced(backend, prefixes: Sequence[str], continuations: Sequence[Sequence[int]],
                   readout_ids: Sequence[Sequence[int]] | None = None) -> list[ForcedResult]:
    """Score ``continuations[i]`` after ``prefixes[i]`` in one batched forward pass.

    Parameters
    ----------
    prefixes : rendered prompt strings (tokenised without special tokens).
    continuations : token ids forced after each prefix (may be empty).
    readout_ids : token ids whose log-probability is read at the final
        position (after the continuation), per row; None for none.
    """
    started = time.perf_counter()
    ids, mask, positions, lengths = _left_padded(backend, prefixes, continuations)
    keep = max(len(c) for c in continuations) + 1
    out = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        logits_to_keep=keep)
    logp = torch.log_softmax(out.logits.float(), dim=-1)
    entropy = -torch.where(logp > -torch.inf, logp.exp() * logp, 0.0).sum(-1)
    results = []
    for i, cont in enumerate(continuations):
        n = len(cont)
        # The kept window ends at the last token; the step predicting forced
        # token t sits n - t positions before the end.
        steps = slice(keep - 1 - n, keep - 1)
        chosen = torch.as_tensor(list(cont), dtype=torch.long)
        token_lp = logp[i, steps].gather(1, chosen[:, None])[:, 0] if n else torch.zeros(0)
        wanted = torch.as_tensor(list(readout_ids[i]) if readout_ids else [], dtype=torch.long)
        results.append(ForcedResult(token_lp.numpy().astype(np.float32),
                                    entropy[i, steps].numpy().astype(np.float32),
                                    logp[i, -1, wanted].numpy().astype(np.float32)))
    _count(backend, len(prefixes), sum(lengths), started)
    return results


def first_token_ids(tokenizer, spellings) -> list[int]:
    """Distinct first token ids of ``spellings`` (order kept)."""
    ids: list[int] = []
    for text in spellings:
        first = tokenizer(text, add_special_tokens=False)["input_ids"][0]
        if first not in ids:
            ids.append(first)
    return ids


def label_readouts(backend, prompts: Sequence[str], labels: dict[str, Sequence[str]],
                   disjoint: bool = False) -> list[dict[str, float]]:
    """log P(label) at the end of each prompt: the total probability of the
    first tokens spelling it (e.g. "True", " True", "(A"), one forward pass per prompt.
    With ``disjoint``, fails if two labels share a first token."""
    ids = {label: first_token_ids(backend.tokenizer, spellings)
           for label, spellings in labels.items()}
    flat = list(dict.fromkeys(i for label_ids in ids.values() for i in label_ids))
    if disjoint and len(flat) != sum(len(label_ids) for label_ids in ids.values()):
        raise ValueError(f"labels {list(labels)} share a first token in this tokenizer")
    results = teacher_forced(backend, prompts, [[] for _ in prompts], [flat] * len(prompts))
    out = []
    for result in results:
        read = dict(zip(flat, result.readout.astype(np.float64)))
        out.append({label: float(np.logaddexp.reduce([read[i] for i in label_ids]))
                    for label, label_ids in ids.items()})
    return out


@torch.inference_mode()
def last_layer_attention(backend, token_ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """(n, n) head-averaged last-layer attention of each token sequence, no prompt.

    Runs with eager attention (SDPA does not return weights) and restores the
    model's implementation afterwards.
    """
    started = time.perf_counter()
    model = backend.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        maps = []
        for row in token_ids:
            if len(row) == 0:
                maps.append(np.zeros((0, 0), dtype=np.float32))
                continue
            ids = torch.as_tensor([list(row)], dtype=torch.long)
            out = model(input_ids=ids, output_attentions=True)
            maps.append(out.attentions[-1][0].float().mean(0).numpy().astype(np.float32))
    finally:
        model.set_attn_implementation(previous)
    _count(backend, len(token_ids), sum(len(r) for r in token_ids), started)
    return maps


@torch.inference_mode()
def mean_hidden_states(backend, texts: Sequence[str], layers: Sequence[int],
                       max_tokens: int = 256) -> np.ndarray:
    """(len(texts), L, d) mean over each text's tokens (padding masked) of the given layers."""
    started = time.perf_counter()
    tok = backend.tokenizer
    rows = [tok(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in texts]
    ids, mask, positions, lengths = _left_padded(backend, [""] * len(rows), rows)
    out = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        output_hidden_states=list(layers), logits_to_keep=1)
    weights = (mask / mask.sum(dim=1, keepdim=True)).float()[:, None, :, None]
    stacked = torch.stack([out.hidden_states[layer] for layer in layers], dim=1).float()
    _count(backend, len(texts), sum(lengths), started)
    return (stacked * weights).sum(dim=2).numpy().astype(np.float32)
