"""Attention rows of the response tokens, recomputed per layer without any N x N matrix.

AT2 needs, for every layer l, head h and response token t, the attention that the
position predicting t (row t - 1) pays to every earlier token. The model itself runs with
its default (fast, fused) attention; a forward pre-hook on every decoder layer receives
that layer's input hidden states and rotary ``(cos, sin)`` -- exactly what the layer uses --
and recomputes only the needed query rows with the model's own modules:

    input_layernorm -> q_proj / k_proj (q_norm / k_norm for gemma3) -> rotary embedding
    -> grouped-query expansion -> q k^T * module.scaling (+ soft-capping) -> causal mask
    (+ sliding window for local layers) -> softmax in float32

The per-layer rows ``[H, R, K]`` are reduced at once (summed over each source's token
span) and dropped, so memory stays at O(H * R * N) for one layer; nothing of size
L x H x N x N (or even L x H x R x N) is ever held.

Families differ in a few details, captured by a small :class:`FamilyAdapter`:
llama (SmolLM2), mistral, qwen2 (llama-like, with per-layer sliding windows), gemma3
(q/k norms, local/global rotary, sliding-window layers, optional soft-capping) and phi3
(fused ``qkv_proj``, partial rotary). Adding a family is a subclass and one registry line.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import MethodNotAvailableError


# ---------------------------------------------------------------------------- adapters
class FamilyAdapter:
    """How to get queries, keys and masks from one decoder layer of a model family.

    The defaults fit the llama family; subclasses override what differs.
    """

    model_types: tuple[str, ...] = ()

    def attention(self, layer: Any) -> Any:
        return layer.self_attn

    def input_norm(self, layer: Any) -> Any:
        return layer.input_layernorm

    def head_dim(self, attn: Any) -> int:
        return int(attn.head_dim)

    def project_q(self, attn: Any, x: torch.Tensor) -> torch.Tensor:
        """[B, T, d] normed hidden states -> queries [B, H, T, D] before the rotary embedding."""
        q = attn.q_proj(x)
        return self._heads(q, self.head_dim(attn))

    def project_k(self, attn: Any, x: torch.Tensor) -> torch.Tensor:
        """[B, N, d] -> keys [B, Hkv, N, D] before the rotary embedding."""
        k = attn.k_proj(x)
        return self._heads(k, self.head_dim(attn))

    @staticmethod
    def _heads(t: torch.Tensor, head_dim: int) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, -1, head_dim).transpose(1, 2)

    def rotate(self, attn: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Apply the model's own rotary function (from the module's modeling file)."""
        fn = getattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb", None)
        if fn is None:  # pragma: no cover - every supported family defines it
            raise MethodNotAvailableError(f"{type(attn).__name__}: no apply_rotary_pos_emb found")
        out, _ = fn(x, x, cos, sin)
        return out

    def sliding_window(self, attn: Any, config: Any) -> int | None:
        value = getattr(attn, "sliding_window", None)
        return int(value) if value else None

    def softcap(self, attn: Any, config: Any) -> float | None:
        """Attention-logit soft-capping the model applies (gemma2-style); none here."""
        return None

    def scaling(self, attn: Any) -> float:
        value = getattr(attn, "scaling", None)
        return float(value) if value is not None else self.head_dim(attn) ** -0.5

    def rotary_fallback(
        self, model: Any, layer_idx: int, x: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) when the layer is not handed its position embeddings."""
        return _base(model).rotary_emb(x, position_ids)


class LlamaAdapter(FamilyAdapter):
    model_types = ("llama",)


class MistralAdapter(FamilyAdapter):
    # Mistral's attention module reads the window from the config, for every layer.
    model_types = ("mistral",)

    def sliding_window(self, attn: Any, config: Any) -> int | None:
        value = getattr(config, "sliding_window", None)
        return int(value) if value else None


class Qwen2Adapter(FamilyAdapter):
    # Per-layer ``attn.sliding_window`` (None on full-attention layers): the default.
    model_types = ("qwen2",)


class Gemma3Adapter(FamilyAdapter):
    model_types = ("gemma3_text", "gemma3")

    def project_q(self, attn: Any, x: torch.Tensor) -> torch.Tensor:
        return attn.q_norm(super().project_q(attn, x))

    def project_k(self, attn: Any, x: torch.Tensor) -> torch.Tensor:
        return attn.k_norm(super().project_k(attn, x))

    # Gemma 3 keeps ``attn_logit_softcapping`` in its config but its attention never applies
    # it (transformers passes no ``softcap``), so neither do we: the default ``softcap`` holds.

    def rotary_fallback(self, model, layer_idx, x, position_ids):
        layer_type = _config(model).layer_types[layer_idx]
        return _base(model).rotary_emb(x, position_ids, layer_type)


class Phi3Adapter(FamilyAdapter):
    model_types = ("phi3",)

    def _split(self, attn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qkv = attn.qkv_proj(x)
        d = self.head_dim(attn)
        nq = attn.config.num_attention_heads * d
        nk = attn.config.num_key_value_heads * d
        return qkv[..., :nq], qkv[..., nq : nq + nk]

    def project_q(self, attn, x):
        return self._heads(self._split(attn, x)[0], self.head_dim(attn))

    def project_k(self, attn, x):
        return self._heads(self._split(attn, x)[1], self.head_dim(attn))

    def sliding_window(self, attn, config):
        value = getattr(config, "sliding_window", None)
        return int(value) if value else None


ADAPTERS: dict[str, FamilyAdapter] = {}
for _cls in (LlamaAdapter, MistralAdapter, Qwen2Adapter, Gemma3Adapter, Phi3Adapter):
    for _t in _cls.model_types:
        ADAPTERS[_t] = _cls()


def _config(model: Any) -> Any:
    cfg = model.config
    if getattr(cfg, "model_type", "") == "gemma3" and getattr(cfg, "text_config", None) is not None:
        return cfg.text_config
    return cfg


def _base(model: Any) -> Any:
    """The decoder stack (``model.model`` for ``*ForCausalLM``)."""
    base = getattr(model, "model", model)
    if not hasattr(base, "layers") and hasattr(base, "language_model"):
        base = base.language_model
    return base


def get_adapter(model: Any) -> FamilyAdapter:
    model_type = getattr(model.config, "model_type", None)
    adapter = ADAPTERS.get(str(model_type))
    if adapter is None:
        raise MethodNotAvailableError(
            f"AT2 attention features do not support model type {model_type!r} yet "
            f"(supported: {', '.join(sorted(ADAPTERS))}); add a FamilyAdapter in attribot_rag/at2/attention.py"
        )
    return adapter


def model_shape(model: Any) -> tuple[int, int]:
    """(number of layers, number of query heads) of the model: the feature layout."""
    cfg = _config(model)
    return int(cfg.num_hidden_layers), int(cfg.num_attention_heads)


# ---------------------------------------------------------------------------- rows
def layer_rows(
    adapter: FamilyAdapter,
    layer: Any,
    config: Any,
    hidden: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    rows: torch.Tensor,
) -> torch.Tensor:
    """Attention probabilities of query positions ``rows`` over keys [0, K), one layer.

    ``hidden`` [1, K, d] is the layer's input (K = max(rows) + 1 positions are enough),
    ``cos``/``sin`` [1, K, D'] its rotary embedding. Returns float32 [H, R, K].
    """
    attn = adapter.attention(layer)
    k_len = int(rows.max()) + 1
    hidden = hidden[:, :k_len]
    x = adapter.input_norm(layer)(hidden)
    q = adapter.project_q(attn, x[:, rows])  # [1, H, R, D]
    k = adapter.project_k(attn, x)  # [1, Hkv, K, D]
    q = adapter.rotate(attn, q, cos[:, :k_len][:, rows], sin[:, :k_len][:, rows])
    k = adapter.rotate(attn, k, cos[:, :k_len], sin[:, :k_len])
    return rows_from_qk(adapter, attn, config, q, k, rows)


def rows_from_qk(
    adapter: FamilyAdapter, attn: Any, config: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Softmax rows from rotated queries [1, H, R, D] (at positions ``rows``) and rotated
    keys [1, Hkv, K, D] (positions 0..K-1): float32 [H, R, K]."""
    k_len = k.shape[2]
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)  # same order as transformers' repeat_kv
    scores = torch.matmul(q[0].float(), k[0].float().transpose(-1, -2)) * adapter.scaling(attn)
    cap = adapter.softcap(attn, config)
    if cap:
        scores = torch.tanh(scores / cap) * cap
    keys = torch.arange(k_len, device=scores.device)
    allowed = keys[None, :] <= rows[:, None]  # causal
    window = adapter.sliding_window(attn, config)
    if window:
        allowed &= keys[None, :] > rows[:, None] - window
    scores = scores.masked_fill(~allowed[None], float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float32)


def _layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    return kwargs["hidden_states"]


@contextmanager
def _hooks(model: Any, on_layer: Callable[[int, Any, torch.Tensor, tuple], None]) -> Iterator[None]:
    layers = list(_base(model).layers)
    adapter = get_adapter(model)
    handles = []

    def make(idx: int, layer: Any):
        def pre_hook(module, args, kwargs):
            hidden = _layer_input(args, kwargs)
            pe = kwargs.get("position_embeddings")
            if pe is None:
                pos = kwargs.get("position_ids")
                if pos is None:
                    pos = torch.arange(hidden.shape[1], device=hidden.device)[None]
                pe = adapter.rotary_fallback(model, idx, hidden, pos)
            on_layer(idx, layer, hidden, pe)
            return None

        return pre_hook

    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(make(i, layer), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def _run(model: Any, input_ids: Sequence[int] | torch.Tensor, k_len: int, keep: int = 1) -> torch.Tensor:
    """One forward pass over the first ``k_len`` tokens; the logits of the last ``keep``."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(list(input_ids)[:k_len] if not torch.is_tensor(input_ids) else input_ids[:k_len])
    ids = ids.to(device).view(1, -1)
    kwargs: dict[str, Any] = dict(input_ids=ids, use_cache=False)
    try:
        out = model(**kwargs, logits_to_keep=keep)
    except TypeError:  # a model without logits_to_keep
        out = model(**kwargs)
    return out.logits[0, -keep:]


@torch.inference_mode()
def attention_rows(model: Any, input_ids: Sequence[int], rows: Sequence[int]) -> list[torch.Tensor]:
    """Every layer's attention rows: a list (per layer) of float32 [H, R, K], K = max(rows)+1.

    Meant for checks on short inputs; :func:`source_features` reduces each layer at once.
    """
    adapter = get_adapter(model)
    config = _config(model)
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    k_len = int(rows_t.max()) + 1
    out: list[torch.Tensor | None] = [None] * model_shape(model)[0]

    def on_layer(idx, layer, hidden, pe):
        cos, sin = pe
        out[idx] = layer_rows(adapter, layer, config, hidden, cos, sin, rows_t.to(hidden.device)).cpu()

    with _hooks(model, on_layer):
        _run(model, input_ids, k_len)
    return out  # type: ignore[return-value]


def span_matrix(spans: Sequence[tuple[int, int]], k_len: int) -> torch.Tensor:
    """[K, S] indicator: column s is 1 on the tokens [a, b) of span s."""
    m = torch.zeros(k_len, len(spans), dtype=torch.float32)
    for s, (a, b) in enumerate(spans):
        m[max(0, a) : min(b, k_len), s] = 1.0
    return m


@torch.inference_mode()
def source_features(
    model: Any,
    input_ids: Sequence[int],
    rows: Sequence[int],
    spans: Sequence[tuple[int, int]] | torch.Tensor,
) -> torch.Tensor:
    """AT2 features: float32 [S, R, L * H], feature index ``layer * H + head``.

    ``input_ids`` prompt + response tokens; ``rows`` the query positions (t - 1 for each
    response token t to explain); ``spans`` the token slice [a, b) of every source, or a
    ready [K, S] weight matrix over key positions. One forward pass of the model.
    """
    return _features_pass(model, input_ids, rows, spans)[0]


@torch.inference_mode()
def source_features_and_logprobs(
    model: Any, input_ids: Sequence[int], prompt_len: int, spans: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, np.ndarray]:
    """:func:`source_features` for every response token of ``input_ids`` (prompt +
    response), and from the same pass each response token's log-probability after the full
    prompt: what a context-gain check would otherwise run the prompt again for."""
    r = len(input_ids) - prompt_len
    feats, logits = _features_pass(model, input_ids, response_rows(prompt_len, (0, r)), spans, keep=r)
    targets = torch.as_tensor(list(input_ids)[prompt_len:], device=logits.device)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return feats, logp.cpu().numpy().astype(np.float64)


def _features_pass(
    model: Any, input_ids: Sequence[int], rows: Sequence[int], spans: Sequence[tuple[int, int]] | torch.Tensor, keep: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    adapter = get_adapter(model)
    config = _config(model)
    n_layers, n_heads = model_shape(model)
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    if rows_t.numel() == 0:
        raise ValueError("no query rows to compute")
    k_len = int(rows_t.max()) + 1
    if isinstance(spans, torch.Tensor):
        smat = spans[:k_len].float()
    else:
        smat = span_matrix(spans, k_len)
    n_src = smat.shape[1]
    feats = torch.zeros(n_src, len(rows_t), n_layers * n_heads, dtype=torch.float32)

    def on_layer(idx, layer, hidden, pe):
        cos, sin = pe
        dev = hidden.device
        probs = layer_rows(adapter, layer, config, hidden, cos, sin, rows_t.to(dev))  # [H, R, K]
        per_source = torch.matmul(probs, smat.to(dev))  # [H, R, S]
        feats[:, :, idx * n_heads : (idx + 1) * n_heads] = per_source.permute(2, 1, 0).cpu()

    with _hooks(model, on_layer):
        logits = _run(model, input_ids, k_len, keep)
    return feats, logits


def response_rows(prompt_len: int, target: tuple[int, int]) -> list[int]:
    """Query rows predicting response tokens [a, b): position prompt_len + t - 1."""
    a, b = target
    return [prompt_len + t - 1 for t in range(a, b)]


__all__ = [
    "ADAPTERS",
    "FamilyAdapter",
    "attention_rows",
    "get_adapter",
    "layer_rows",
    "model_shape",
    "response_rows",
    "source_features",
    "source_features_and_logprobs",
    "span_matrix",
]
