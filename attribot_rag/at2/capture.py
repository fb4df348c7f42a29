"""Capture during generation what AT2 features need, so attribution needs no forward pass.

While the model generates, every forward call feeds one position per decode step (the
whole prompt at the first call). The query rows AT2 needs are exactly those positions:
the last prompt position (predicts the first answer token) and every fed answer token
(each predicts the next one). A forward pre-hook on each decoder layer keeps, per call,
the layer's input hidden state and rotary (cos, sin) at the last fed position ([1, d] per
layer and step), and a reference to the generation's KV cache, whose keys (after k-norm
and the rotary embedding) cover every fed position. Attribution then only projects r
queries per layer and multiplies them with the cached keys.

:class:`CaptureObserver` is the generation observer that records it; the capture rides on
the response it was recorded for (``response.observations``), so it lives and dies with
that response. Nothing usable is captured for unsupported families, batched or beam
generation, or a generation that continued a cached prompt prefix; the capture then says
why, and the features fall back to one forward pass that reports that reason.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
import threading
import weakref
from typing import Any, Iterator, Sequence

import torch

from .attention import ADAPTERS, _base, _config, _layer_input, model_shape, rows_from_qk

# Do not keep a KV cache alive on a response beyond this size (bytes); above it the
# features fall back to one forward pass.
MAX_CAPTURE_BYTES = 512 * 1024 * 1024


@dataclass
class GenerationCapture:
    # A weak reference: a remembered capture must not keep a model alive.
    model_ref: Any
    hidden: list[list[torch.Tensor]] = field(default_factory=list)  # [layer][call] -> [1, 1, d]
    cos: list[list[torch.Tensor]] = field(default_factory=list)
    sin: list[list[torch.Tensor]] = field(default_factory=list)
    cache: Any = None
    prompt_ids: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    valid: bool = True
    reason: str = ""  # why the capture cannot be used, when it cannot

    @property
    def model(self) -> Any:
        return self.model_ref()

    def finish(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> "GenerationCapture | None":
        """Check the capture is complete for this prompt and answer; None if not usable,
        with ``self.reason`` saying why."""
        self.prompt_ids, self.response_ids = list(prompt_ids), list(response_ids)
        self.reason = self._unusable_reason()
        if self.reason:
            self.cache, self.hidden, self.cos, self.sin = None, [], [], []  # free what cannot be used
            return None
        # keep only the first r calls (the last generated token is never fed)
        r = len(self.response_ids)
        for lists in (self.hidden, self.cos, self.sin):
            for i in range(len(lists)):
                lists[i] = lists[i][:r]
        return self

    def _unusable_reason(self) -> str:
        p, r = len(self.prompt_ids), len(self.response_ids)
        if not self.valid:
            return self.reason or "the generation was batched or fed no rotary embeddings"
        if r == 0:
            return "the answer is empty"
        if not self.hidden or any(len(h) < r for h in self.hidden):
            return "the decoder layers were not called once per answer token"
        if self.cache is None:
            return "the decoder layers were given no KV cache (unknown cache keyword)"
        layers = getattr(self.cache, "layers", None)
        if layers is None or len(layers) != len(self.hidden):
            return f"the KV cache ({type(self.cache).__name__}) has no per-layer keys for every layer"
        for layer in layers:
            keys = getattr(layer, "keys", None)
            if keys is None or keys.shape[0] != 1 or keys.shape[2] < p + r - 1:
                return "the KV cache dropped keys (e.g. a sliding-window layer)"
        nbytes = sum(layer.keys.numel() * layer.keys.element_size() for layer in layers)
        if nbytes > MAX_CAPTURE_BYTES:
            return f"the KV cache ({nbytes >> 20} MiB) is above the {MAX_CAPTURE_BYTES >> 20} MiB kept on a response"
        return ""

    def snapshot(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> "GenerationCapture":
        """While generation is still running: the capture of the answer's first tokens
        (what streaming citations read; it shares the live KV cache, whose first
        positions no later step changes). ``reason`` says why when it is not usable."""
        r = len(response_ids)
        part = GenerationCapture(
            model_ref=self.model_ref,
            hidden=[h[:r] for h in self.hidden],
            cos=[c[:r] for c in self.cos],
            sin=[s[:r] for s in self.sin],
            cache=self.cache,
            valid=self.valid,
            reason=self.reason,
        )
        part.finish(prompt_ids, response_ids)
        return part

    def matches(self, model: Any, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> bool:
        return (
            self.model is not None
            and model is self.model
            and list(prompt_ids) == self.prompt_ids
            and list(response_ids) == self.response_ids
        )

    @torch.inference_mode()
    def features(self, smat: torch.Tensor) -> torch.Tensor:
        """AT2 features [S, r, L*H] for sources given as a [K, S] matrix over key positions."""
        model = self.model
        adapter = ADAPTERS[str(model.config.model_type)]
        config = _config(model)
        n_layers, n_heads = model_shape(model)
        p, r = len(self.prompt_ids), len(self.response_ids)
        k_len = p + r - 1
        rows = torch.arange(p - 1, p - 1 + r)
        smat = smat[:k_len].float()
        feats = torch.zeros(smat.shape[1], r, n_layers * n_heads, dtype=torch.float32)
        for idx, layer in enumerate(_base(model).layers):
            attn = adapter.attention(layer)
            hidden = torch.cat(self.hidden[idx], dim=1)  # [1, r, d]
            cos = torch.cat(self.cos[idx], dim=1)
            sin = torch.cat(self.sin[idx], dim=1)
            x = adapter.input_norm(layer)(hidden)
            q = adapter.rotate(attn, adapter.project_q(attn, x), cos, sin)
            k = self.cache.layers[idx].keys[:, :, :k_len]
            dev = q.device
            probs = rows_from_qk(adapter, attn, config, q, k, rows.to(dev))
            per_source = torch.matmul(probs, smat.to(dev))  # [H, r, S]
            feats[:, :, idx * n_heads : (idx + 1) * n_heads] = per_source.permute(2, 1, 0).cpu()
        return feats


class CaptureObserver:
    """The generation observer that records what AT2 needs (see the module docstring).

    Pass it to :meth:`attribot_rag.scoring.Scorer.generate` (``observers=[...]``); the
    capture, complete or not (then it says why), lands on ``response.observations``.
    ``current`` is the capture being recorded (for a streaming reader)."""

    current: GenerationCapture | None = None

    @contextmanager
    def watch(self, model: Any, prompt_ids: Sequence[int], full_prompt: bool) -> Iterator["_Recording"]:
        cap = self.current = GenerationCapture(model_ref=weakref.ref(model))
        family = str(getattr(model.config, "model_type", None))
        if not full_prompt:
            cap.valid, cap.reason = False, "generation reused a cached prompt prefix, so the prompt was not run in full"
        elif family not in ADAPTERS:
            cap.valid, cap.reason = False, f"AT2 does not support the model family {family!r}"
        if not cap.valid:
            yield _Recording(cap, prompt_ids)
            return
        # only the generating thread's steps: a streaming reader may score the answer so
        # far on the same model while generation waits
        owner = threading.get_ident()
        handles = [
            layer.register_forward_pre_hook(_recording_hook(cap, i, owner), with_kwargs=True)
            for i, layer in enumerate(_base(model).layers)
        ]
        cap.hidden, cap.cos, cap.sin = ([[] for _ in handles] for _ in range(3))
        try:
            yield _Recording(cap, prompt_ids)
        finally:
            for h in handles:
                h.remove()


@dataclass
class _Recording:
    capture: GenerationCapture
    prompt_ids: Sequence[int]

    def attach(self, response: Any) -> None:
        self.capture.finish(self.prompt_ids, response.token_ids)
        response.observations.append(self.capture)


def _recording_hook(cap: GenerationCapture, idx: int, owner: int):
    def pre_hook(module, args, kwargs):
        if not cap.valid or threading.get_ident() != owner:
            return None
        hidden = _layer_input(args, kwargs)
        pe = kwargs.get("position_embeddings")
        if hidden.shape[0] != 1 or pe is None:
            cap.valid = False
            cap.reason = "batched generation" if hidden.shape[0] != 1 else "no rotary embeddings were passed"
            return None
        cos, sin = pe
        cap.hidden[idx].append(hidden[:, -1:].detach().clone())
        cap.cos[idx].append(cos[:, -1:].detach().clone())
        cap.sin[idx].append(sin[:, -1:].detach().clone())
        cache = kwargs.get("cache")
        if cache is not None:
            cap.cache = cache
        return None

    return pre_hook


def find_capture(response: Any, model: Any, prompt_ids: Sequence[int]) -> tuple[GenerationCapture | None, str]:
    """The capture of this model's generation of exactly this answer after exactly this
    prompt, or None and the reason there is none."""
    caps = [o for o in getattr(response, "observations", ()) if isinstance(o, GenerationCapture)]
    if not caps:
        if getattr(response, "generated", False):
            return None, "the answer was generated without the AT2 capture observer"
        return None, "the answer was given, not generated by this model"
    cap = caps[-1]
    if cap.reason:
        return None, cap.reason
    if not cap.matches(model, prompt_ids, response.token_ids):
        return None, "the answer was generated by another model or from another prompt"
    return cap, ""


__all__ = ["CaptureObserver", "GenerationCapture", "find_capture"]
