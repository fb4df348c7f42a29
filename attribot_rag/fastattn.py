"""Split attention for ablation passes that continue a cached prefix (CPU).

An ablation pass feeds a suffix of L tokens after a cached prefix of P tokens. The stock
path builds an L x (P + L) mask and attends over the whole rectangle, masked corner
included. Here the attention is computed in two exact parts and merged with their
log-sum-exp: the suffix against the prefix (no mask at all) and the suffix against itself
(a square causal block, whose upper half the kernel skips). The merge is the standard
softmax decomposition, so the result equals ordinary causal attention to float precision.

Right padding needs no mask: pads sit after every real token of their row, so causality
already hides them from the real tokens, and the rows of pads are never read.

It is used only inside :func:`prefix_split_attention` and only where it is known to be
exact: on CPU, for models without sliding-window layers or attention-logit soft-capping.
Elsewhere the model's own attention runs unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

NAME = "attribot_prefix_split"
_registered = False


def _flash_cpu(q, k, v, causal: bool, scale: float | None):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, causal, scale=scale
    )


def split_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    # query [B, H, L, D]; key/value [B, Hkv, P + L, D] (cache + new tokens)
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    q_len, kv_len = query.shape[2], key.shape[2]
    prefix = kv_len - q_len
    dtype = query.dtype
    q = query.float() if dtype != torch.float32 else query
    k = key.to(q.dtype)
    v = value.to(q.dtype)
    if prefix <= 0:
        out, _ = _flash_cpu(q, k, v, True, scaling)
    else:
        o1, l1 = _flash_cpu(q, k[:, :, :prefix], v[:, :, :prefix], False, scaling)
        o2, l2 = _flash_cpu(q, k[:, :, prefix:], v[:, :, prefix:], True, scaling)
        m = torch.maximum(l1, l2)
        w1 = torch.exp(l1 - m).unsqueeze(-1)
        w2 = torch.exp(l2 - m).unsqueeze(-1)
        out = (o1 * w1 + o2 * w2) / (w1 + w2)
    return out.to(dtype).transpose(1, 2).contiguous(), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, split_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    _registered = True


def supported(model: torch.nn.Module) -> bool:
    """True where the split is exact for this model and the CPU kernel exists."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        return False
    if device.type != "cpu" or not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        return False
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(cfg, "attn_logit_softcapping", None):
        return False
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    return getattr(cfg, "_attn_implementation", "sdpa") in {"sdpa", "eager", None}


@contextlib.contextmanager
def prefix_split_attention(model: torch.nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Within the block, the model's attention uses the split kernel (if supported).

    Yields whether it is active. The model's setting is restored on exit.
    """
    if not enabled or not supported(model):
        yield False
        return
    _register()
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    saved = {k: c._attn_implementation for k, c in configs.items()}
    try:
        for c in configs.values():
            c._attn_implementation = NAME
        yield True
    finally:
        for k, c in configs.items():
            c._attn_implementation = saved[k]
