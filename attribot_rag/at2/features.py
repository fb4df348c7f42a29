"""AT2 features of an attribution task: [num_sources, num_response_tokens, L * H]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .attention import source_features_and_logprobs, span_matrix
from .capture import find_capture

def task_features(task: Any) -> torch.Tensor:
    """Features of every source for every response token (float32 [S, r, L*H]).

    One forward pass over prompt + response (the last response token is not needed), computed
    once per task and kept in ``task.cache`` so that any target span is a slice.
    """
    if task.cache.at2_features is not None:
        return task.cache.at2_features
    prompt = task.prompt
    p, r = len(prompt.input_ids), len(task.response.token_ids)
    spans = [prompt.token_span(s.index) for s in task.sources]
    capture, reason = find_capture(task.response, task.lm.model, prompt.input_ids)
    task.cache.at2_capture = reason or "used"
    if capture is not None:
        # the same model generated this answer from this prompt: no forward pass at all
        feats = capture.features(span_matrix(spans, p + r - 1))
    else:
        ids = list(prompt.input_ids) + list(task.response.token_ids)
        # the same pass gives the answer's log-probs after the full prompt (a context gain's)
        feats, task.cache.full_logprobs = source_features_and_logprobs(task.lm.model, ids, p, spans)
        task.scorer.forward_tokens += p + r - 1
        task.scorer.forward_passes += 1
    task.cache.at2_features = feats
    return feats


def capture_info(task: Any) -> dict[str, Any]:
    """Whether the features came from the generation capture, and if not, why not."""
    note = task.cache.at2_capture or "not attempted"
    return {"from_generation": note == "used", "capture": note}


def token_scores(feats: torch.Tensor, weights: np.ndarray) -> np.ndarray:
    """w . f_s(t) for every source and answer token: [S, r] (a span's score is their mean)."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32).reshape(-1))
    if w.numel() != feats.shape[-1]:
        raise ValueError(f"{w.numel()} weights for {feats.shape[-1]} features")
    return (feats @ w).double().numpy()
