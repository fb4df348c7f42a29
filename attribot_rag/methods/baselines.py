"""Rankings that read neither the model nor the answer: the baselines an attribution
ranking has to beat (prune-eval compares every ranking with them).

``question-similarity``: cosine similarity of sentence embeddings (all-MiniLM-L6-v2
offline by default) between the *question* and each source, its passage's title first:
what a retriever or reranker would keep. Unlike ``similarity`` (the *answer* against
each source) it does not depend on the answer, so every span of it has the same scores.

``random``: a seeded random order of the sources (scores ``-permutation``): the same
seed gives the same order. Runs over many examples pass a seed per example (the class
names the option in :attr:`~.base.AttributionMethod.example_seed_option`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import AttributionMethod, AttributionTask, Effects, MethodOutput, register_method


class _Fixed(Effects):
    """The same scores for every span of the answer."""

    def __init__(self, scores: np.ndarray, info: Mapping[str, Any] | None = None) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        self.info = dict(info or {})

    def query(self, target: tuple[int, int]) -> MethodOutput:
        return MethodOutput(self.scores.copy(), dict(self.info))


def question_similarity(embedder: Any, question: str, texts: list[str]) -> np.ndarray:
    """Cosine similarity of the question's embedding with each text's."""
    emb = np.asarray(embedder.encode([question, *texts]), dtype=np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb[1:] @ emb[0]


@register_method
class QuestionSimilarity(AttributionMethod):
    """Cosine similarity between the question and each source (title + text). Option
    ``embedder``: any object with sentence-transformers' ``encode(list_of_texts)``
    (default: :func:`attribot_rag.embeddings.load_embedder`, loaded when first used)."""

    name = "question-similarity"
    # prune-eval cached its rankings under this name when it special-cased this ranking
    cache_name = "similarity"

    def __init__(self, embedder: Any = None) -> None:
        self.embedder = embedder

    def _embedder(self) -> Any:
        if self.embedder is None:
            from ..embeddings import load_embedder

            self.embedder = load_embedder()
        return self.embedder

    def effects(self, task: AttributionTask) -> Effects:
        titles = [task.passages[s.passage_index].title for s in task.sources]
        texts = [f"{t}\n{s.text}" if t else s.text for t, s in zip(titles, task.sources)]
        embedder = self._embedder()
        return _Fixed(question_similarity(embedder, task.question, texts), {"embedder": type(embedder).__name__})


@register_method
class RandomOrder(AttributionMethod):
    """A seeded random order of the sources (option ``seed``)."""

    name = "random"
    example_seed_option = "seed"  # runs over many examples draw it per example

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def effects(self, task: AttributionTask) -> Effects:
        rng = np.random.default_rng(self.seed)
        return _Fixed(-rng.permutation(len(task.sources)).astype(np.float64), {"seed": self.seed})

    def __repr__(self) -> str:
        return f"RandomOrder(seed={self.seed})"
