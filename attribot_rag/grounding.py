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
    if task.cache.context_gain is None:
        full = _full_logprobs(task)
        empty = task.render([s.index for s in task.sources]).input_ids
        task.cache.context_gain = full - task.scorer.logprobs(empty, task.response.token_ids)
    return task.cache.context_gain


def span_gain(task: AttributionTask, target: tuple[int, int]) -> float:
    """The mean context gain of the response tokens [a, b), in nats per token."""
    a, b = target
    return float(np.mean(context_gain(task)[a:b]))


def _full_logprobs(task: AttributionTask) -> np.ndarray:
    if task.cache.full_pass is not None:
        return task.cache.full_pass.logprobs
    generated = task.response.logprobs
    if generated is not None:
        values = generated.for_prompt(task.prompt.input_ids, len(task.response.token_ids))
        if values is not None:  # generated after this very prompt
            return values
    return task.full_pass().logprobs


__all__ = ["context_gain", "span_gain"]
