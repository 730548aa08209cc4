"""How the packed transformer calls attention: with an additive mask tensor, or as causal blocks.

``attend(attn, q, k, v, mask, impl, training)`` takes q [B, H, Lq, hd], k/v [B, H, Lk, hd] and
returns [B, Lq, H * hd]. ``mask`` is either

* an additive float mask [B, 1, Lq, Lk] (jepa_kit.masks: 0 = may attend, dtype min = blocked), for
  any implementation in ``ATTN_IMPLEMENTATIONS``; or
* a tuple of block lengths filling the row (Lq == Lk == their sum), each block causal and alone:
  ``(W,)`` is a plain causal row, ``(L + k, L)`` a static JEPA row ``[F | R]``. Each block goes to
  SDPA with ``is_causal=True`` and no mask tensor, the same attention as the block-causal mask
  (tests/test_fast_paths.py), so on a GPU SDPA may choose its flash kernel instead of a masked one.

Implementations that cannot take the block-causal mask are refused by name (``check_attn_implementation``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.gpt2.modeling_gpt2 import eager_attention_forward

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
_REFUSED_ATTN = {
    "flash_attention_2": "flash attention takes no custom 4D mask, so R would attend to F",
    "flash_attention_3": "flash attention takes no custom 4D mask, so R would attend to F",
    "flex_attention": "flex_attention is not declared for GPT-2 in transformers",
}


def check_attn_implementation(name: str) -> str:
    """Return ``name`` if the packed block-causal pass is known to be right with it, else raise."""
    if name in ATTN_IMPLEMENTATIONS:
        return name
    why = _REFUSED_ATTN.get(name, "the block-causal mask has not been proven equivalent with it")
    raise ValueError(f"attention implementation {name!r} refused: {why}. Use one of {', '.join(ATTN_IMPLEMENTATIONS)}")


def attend(attn: nn.Module, q, k, v, mask: torch.Tensor | tuple[int, ...], impl: str, training: bool) -> torch.Tensor:
    """Attention of one GPT-2 block (``attn`` gives the scale and dropout); see the module docstring."""
    B, H, Lq, hd = q.shape
    drop = attn.attn_dropout.p if training else 0.0
    impl = check_attn_implementation(impl)
    if isinstance(mask, tuple):
        if impl != "sdpa":
            raise ValueError("causal blocks without a mask tensor need attention implementation 'sdpa'")
        if sum(mask) != Lq or k.shape[2] != Lq:
            raise ValueError(f"causal blocks {mask} must fill rows of {Lq} queries and {k.shape[2]} keys")
        starts = [sum(mask[:i]) for i in range(len(mask))]
        parts = [F.scaled_dot_product_attention(q[:, :, a:a + n], k[:, :, a:a + n], v[:, :, a:a + n], dropout_p=drop,
                                                scale=attn.scaling, is_causal=True) for a, n in zip(starts, mask)]
        o = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return o.transpose(1, 2).reshape(B, Lq, H * hd)
    if not mask.is_floating_point():
        raise TypeError("boolean attention masks are refused: use an additive float mask (jepa_kit.masks)")
    if impl == "sdpa":
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=attn.scaling)
        return o.transpose(1, 2).reshape(B, Lq, H * hd)
    o, _ = eager_attention_forward(attn, q, k, v, mask, dropout=drop, scaling=attn.scaling)  # [B, Lq, H, hd]
    return o.reshape(B, Lq, H * hd)
