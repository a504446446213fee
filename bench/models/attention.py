"""``padded_sdpa``: transformers' SDPA attention with a faster, bit-identical padded prefill.

A left-padded batch reaches ``sdpa_attention_forward`` with a boolean
``[batch, 1, query, key]`` mask. For a prompt pass (more than one query
position) transformers then repeats the key/value heads of a grouped-query
model and hands the boolean mask to ``torch.nn.functional.scaled_dot_product_attention``,
whose CPU kernel runs slower on a boolean mask than on the equivalent
additive one. :func:`padded_sdpa_forward` gives the kernel the additive mask
(0 where attended, ``-inf`` elsewhere, built once per forward pass and shared
by every layer) and lets it index the grouped heads itself (``enable_gqa``).

The CPU flash-attention kernel reads both masks alike, so the outputs are the
same bits as transformers' SDPA path (``tests/test_attention.py`` checks it on
the real model, prompt pass and decoding). The gain is modest: on a batch of 8
RAG prompts (about 900 tokens, 16 % padding, bfloat16, 2 threads) a prefill
takes 6.8 s instead of 7.5 s; the flash kernel still visits every key block
under an explicit mask, which is most of what attention costs there. ``arbench
bench`` times both. Single-position decode steps, unpadded prompts and every
other case go to transformers' function unchanged.
"""
from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

#: The ``attn_implementation`` name under which the function is registered.
PADDED_SDPA = "padded_sdpa"


class _AdditiveMaskMemo:
    """The additive form of the last boolean mask seen (all layers of a pass share one mask)."""

    def __init__(self) -> None:
        self._source: torch.Tensor | None = None
        self._additive: torch.Tensor | None = None

    def additive(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if (self._source is not mask or self._additive is None
                or self._additive.dtype != dtype):
            additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
            self._additive = additive.masked_fill_(~mask, float("-inf"))
            self._source = mask
        return self._additive


_MEMO = _AdditiveMaskMemo()


def padded_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, attention_mask: torch.Tensor | None,
                        dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """Attention for one layer, with transformers' ``sdpa`` signature and results.

    Parameters
    ----------
    module : torch.nn.Module
        The attention module (for ``num_key_value_groups``).
    query, key, value : torch.Tensor
        ``[batch, heads, positions, head_dim]``; key and value may have fewer
        (grouped) heads.
    attention_mask : torch.Tensor or None
        transformers' SDPA mask: boolean, True where a query may attend.
    dropout, scaling
        As for ``scaled_dot_product_attention``.

    Returns
    -------
    (torch.Tensor, None)
        ``[batch, positions, heads, head_dim]`` and no attention weights.
    """
    fast = (attention_mask is not None and attention_mask.dtype == torch.bool
            and attention_mask.dim() == 4 and query.shape[2] > 1
            and not kwargs.get("output_attentions", False)
            and kwargs.get("position_bias") is None and kwargs.get("cache") is None
            and kwargs.get("softcap") is None)
    if not fast:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    mask = _MEMO.additive(attention_mask, query.dtype)
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1])
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(PADDED_SDPA, padded_sdpa_forward)
AttentionMaskInterface.register(PADDED_SDPA, sdpa_mask)


def use_padded_sdpa(model) -> bool:
    """Switch a model from transformers' ``sdpa`` to :data:`PADDED_SDPA`; True if switched.

    Models on any other implementation (eager, flash kernels) are left alone.
    """
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(PADDED_SDPA)
    return model.config._attn_implementation == PADDED_SDPA
