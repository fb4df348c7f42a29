"""Whether an answer sentence rests on the passages at all: its context gain.

A sentence the model writes as readily without any passage (a greeting, its own
self-description, a claim from memory) depends on no source, however a method's scores
split that nothing among the sources. The context gain of an answer token is

    log p(r_t | prompt) - log p(r_t | prompt with every source removed)

and a sentence's gain is its tokens' mean, in nats per token. It costs one forward pass of
the short passage-free prompt; the full-context log-probs come from the pass a LOO-family
method already ran, else from generation itself (``Response.logprobs``), else one full pass.
Citations use it as a gate (:data:`attribot_rag.citations.DEFAULT_MIN_CONTEXT_GAIN`).
"""

from __future__ import annotations

import numpy as np

from .methods.base import AttributionTask


def context_gain(task: AttributionTask) -> np.ndarray:
    """Per response token, the passages' effect on its log-probability (computed once per task)."""
    return task.context_gain()


def span_gain(task: AttributionTask, target: tuple[int, int]) -> float:
    """The mean context gain of the response tokens [a, b), in nats per token."""
    a, b = target
    return float(np.mean(context_gain(task)[a:b]))


__all__ = ["context_gain", "span_gain"]
