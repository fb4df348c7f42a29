"""Helpers for testing code built on attribot-rag without a model (the integrations'
concurrency tests use them): a stand-in for the draft-attribute-select step."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, Callable, Mapping

from .pruning import PassageScore, PruneResult


def overlapping_filter(favoured: Mapping[str, str], in_flight: int = 2, timeout: float = 20.0) -> Callable[..., Any]:
    """A replacement for :func:`attribot_rag.integration.filter_passages`: the draft names
    the question, the passage ``favoured[question]`` scores 3 and the others less, and each
    call waits until ``in_flight`` calls are running, so that concurrent calls overlap for
    sure (a call left alone fails with ``threading.BrokenBarrierError`` after ``timeout``)."""
    barrier = threading.Barrier(in_flight, timeout=timeout)

    def filter_passages(attributor, question, passages, *, top_n=None, keep_mass=None, **_):
        barrier.wait()
        scores = [3.0 if p.id == favoured[question] else 1.0 - 0.1 * i for i, p in enumerate(passages)]
        order = sorted(range(len(passages)), key=lambda i: -scores[i])
        rank = {i: r + 1 for r, i in enumerate(order)}
        every = [PassageScore(p, i, scores[i], rank[i]) for i, p in enumerate(passages)]
        kept = set(order[: top_n or len(passages)])
        result = PruneResult(
            question=question,
            draft=f"draft for {question}",
            answer=None,
            kept=[ps for ps in every if ps.index in kept],
            dropped=[ps for ps in every if ps.index not in kept],
            attribution=SimpleNamespace(method="fake", model="fake"),
        )
        return result, [(ps, ps.index in kept) for ps in every]

    return filter_passages


__all__ = ["overlapping_filter"]
