"""Hand-made model outputs for estimator tests."""
from __future__ import annotations

import numpy as np

from bench.models.outputs import Generation


def generation_from_logits(logits, chosen=None, *, stop_reason="eos", text="answer",
                           k=2, token_texts=None, hidden=None) -> Generation:
    """A Generation whose per-step fields derive from raw logits ``(n, V)``.

    ``chosen`` are the emitted ids (default: the argmax). ``-inf`` logits are
    zero-probability tokens: they add 0 to the entropy (0 log 0 = 0) and
    -inf to the mean log-probability.
    """
    z = np.asarray(logits, dtype=np.float64)
    n, vocab = z.shape
    top = z.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]
    logp = z - lse[:, None]
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        plogp = np.where(p > 0, p * logp, 0.0)
    ids = z.argmax(axis=1) if chosen is None else np.asarray(chosen)
    chosen_lp = logp[np.arange(n), ids]
    top_ids = np.argsort(-z, axis=1, kind="stable")[:, :k]
    z2 = z / 2.0
    lse2 = (z2.max(axis=1, keepdims=True)
            + np.log(np.exp(z2 - z2.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)))
    p2 = np.exp(z2 - lse2)
    hidden = np.zeros((2, 3)) if hidden is None else np.asarray(hidden)
    return Generation(
        text=text,
        token_ids=ids.astype(np.int64),
        token_logprobs=chosen_lp.astype(np.float32),
        entropies=(-plogp.sum(axis=1)).astype(np.float32),
        mean_logprobs=logp.mean(axis=1).astype(np.float32),
        logsumexp=lse.astype(np.float32),
        topk_ids=top_ids.astype(np.int64),
        topk_logprobs=np.take_along_axis(logp, top_ids, axis=1).astype(np.float32),
        sampling_logprobs=chosen_lp.astype(np.float32),
        root_mass_t2=np.log(np.sqrt(p2).sum(axis=1)).astype(np.float32),
        hidden_mean=hidden.astype(np.float32),
        hidden_last=hidden.astype(np.float32),
        prompt_hidden_mean=hidden.astype(np.float32),
        prompt_hidden_last=hidden.astype(np.float32),
        layers=np.array([1, 2], dtype=np.int64),
        token_texts=tuple(token_texts or (f"t{i}" for i in ids)),
        stop_reason=stop_reason,
        prompt_tokens=5,
        vocab_size=vocab,
    )
