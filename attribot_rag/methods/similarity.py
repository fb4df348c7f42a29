"""Embedding similarity: cosine similarity between the answer (the target span's text)
and each source's text, with a sentence-transformers model (all-MiniLM-L6-v2 offline by
default). Cheap; it measures relevance, not use. Option ``embedder``: any object with
sentence-transformers' ``encode(list_of_texts)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import AttributionMethod, AttributionTask, MethodOutput, register_method


def target_text(task: AttributionTask) -> str:
    a, b = task.target
    resp = task.response
    if (a, b) == (0, len(resp)):
        return resp.text
    start, end = resp.offsets[a][0], resp.offsets[b - 1][1]
    return resp.text[start:end] or resp.text


@register_method
class EmbeddingSimilarity(AttributionMethod):
    name = "similarity"

    def __init__(self, embedder: Any = None) -> None:
        self.embedder = embedder

    def _embedder(self) -> Any:
        if self.embedder is None:
            from ..embeddings import load_embedder

            self.embedder = load_embedder()
        return self.embedder

    def score(self, task: AttributionTask) -> MethodOutput:
        texts = [target_text(task)] + [s.text for s in task.sources]
        emb = np.asarray(self._embedder().encode(texts), dtype=np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        scores = emb[1:] @ emb[0]
        return MethodOutput(scores, {"embedder": type(self._embedder()).__name__})
