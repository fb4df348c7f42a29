"""Embedding similarity: cosine similarity between the answer (the target span's text)
and each source's text, with a sentence-transformers model (all-MiniLM-L6-v2 offline by
default); the sources are embedded once per task, each span asked for is one more text. Cheap; it measures relevance, not use. Option ``embedder``: any object with
sentence-transformers' ``encode(list_of_texts)``. ``question-similarity``
(methods/baselines.py) compares the question instead."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import AttributionMethod, AttributionTask, Effects, MethodOutput, SpanEffects, register_method


def target_text(task: AttributionTask, target: tuple[int, int] | None = None) -> str:
    a, b = target or task.target
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

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any], model: str | None = None) -> Mapping[str, Any]:
        # prune-eval cached its question ranking (now question-similarity) as "similarity":
        # this method, which reads the answer, never reads those results
        return {"compares": "answer"}

    def _embedder(self) -> Any:
        if self.embedder is None:
            from ..embeddings import load_embedder

            self.embedder = load_embedder()
        return self.embedder

    def effects(self, task: AttributionTask) -> Effects:
        # the sources are embedded once; each span asked for is one more embedding
        sources = self._unit(s.text for s in task.sources)
        info = {"embedder": type(self._embedder()).__name__}
        text_task = task.without_cache()  # only its answer text is read

        def for_span(target: tuple[int, int]) -> MethodOutput:
            return MethodOutput(sources @ self._unit([target_text(text_task, target)])[0], dict(info))

        return SpanEffects(for_span, needs_task_cache=False)

    def _unit(self, texts) -> np.ndarray:
        emb = np.asarray(self._embedder().encode(list(texts)), dtype=np.float64)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
