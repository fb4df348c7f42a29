"""AT2 features of an attribution task: [num_sources, num_response_tokens, L * H]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .attention import response_rows, source_features, span_matrix
from .capture import find_capture

CACHE_KEY = "at2_features"


def task_features(task: Any) -> torch.Tensor:
    """Features of every source for every response token (float32 [S, r, L*H]).

    One forward pass over prompt + response (the last response token is not needed), computed
    once per task and kept in ``task.cache`` so that any target span is a slice.
    """
    feats = task.cache.get(CACHE_KEY)
    if feats is not None:
        return feats
    prompt = task.prompt
    p, r = len(prompt.input_ids), len(task.response.token_ids)
    spans = [prompt.token_span(s.index) for s in task.sources]
    capture, reason = find_capture(task.response, task.lm.model, prompt.input_ids)
    task.cache["at2_capture"] = reason or "used"
    if capture is not None:
        # the same model generated this answer from this prompt: no forward pass at all
        feats = capture.features(span_matrix(spans, p + r - 1))
        task.cache["at2_from_generation"] = True
    else:
        rows = response_rows(p, (0, r))
        ids = list(prompt.input_ids) + list(task.response.token_ids)
        feats = source_features(task.lm.model, ids, rows, spans)
        task.scorer.forward_tokens += p + r - 1
        task.scorer.forward_passes += 1
        task.cache["at2_from_generation"] = False
    task.cache[CACHE_KEY] = feats
    return feats


def capture_info(task: Any) -> dict[str, Any]:
    """Whether the features came from the generation capture, and if not, why not."""
    return {
        "from_generation": bool(task.cache.get("at2_from_generation")),
        "capture": task.cache.get("at2_capture", "not attempted"),
    }


def span_scores(feats: torch.Tensor, weights: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Mean over the target's tokens of w . f_s(t): one score per source."""
    a, b = target
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32).reshape(-1))
    if w.numel() != feats.shape[-1]:
        raise ValueError(f"{w.numel()} weights for {feats.shape[-1]} features")
    per_token = feats[:, a:b] @ w  # [S, T]
    return per_token.mean(dim=1).double().numpy()
