"""Whether a source supports an answer sentence: the keep-only-this-source check.

Attribution scores say which sources the model *used*; a reader of a citation asks
whether the source *says* what the sentence says, whether or not the model needed it
(a fact it also knew from pre-training). The check asks the same model to read the
answer after each candidate source alone (its passage title and its text), and after a
few *reference* sources that say nothing about it (the ranker's lowest-scored), and a
candidate's support for a sentence is

    mean over the sentence's tokens of  log p(t | question, candidate) - log p(t | question, reference)

in nats per token, the reference term averaged over the references (docs/architecture.md,
Citations > Support). Contrasting with unrelated sources rather than with no passage at
all matters: any passage makes a model less sure of what it would have said from memory
("The answer is Paris." after a paragraph on vacation days), and makes generic filler
("Thank you for asking.") likelier; only the source that says it stands out. With no
reference, the baseline is the prompt with no passage.

The prompts are short (one source, no other passage), share the system prompt and header
as a KV-cached prefix and run batched: checking a few candidates costs a fraction of one
pass over the full prompt. Results stay in the task's cache for every sentence and policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..methods.base import AttributionTask
from ..sources import Passage


NO_PASSAGE = -1  # the key of the prompt with no passage among the prompts to score


@dataclass
class SupportCache:
    """Per answer token: log-probs with no passage, and with each checked source alone."""

    no_context: np.ndarray | None = None
    alone: dict[int, np.ndarray] = field(default_factory=dict)


def _cache(task: AttributionTask) -> SupportCache:
    cache = getattr(task.cache, "support", None)
    if cache is None:
        cache = SupportCache()
        task.cache.support = cache  # type: ignore[attr-defined]
    return cache


def _alone(task: AttributionTask, index: int) -> list[Passage]:
    """The prompt's passages when only source ``index`` is kept: its passage's title and
    the source's own text (a sentence source keeps no other sentence of its passage)."""
    src = task.sources[index]
    p = task.passages[src.passage_index]
    return [Passage(id=p.id, text=src.text, title=p.title)]


def check_sources(task: AttributionTask, indices: Sequence[int], no_context: bool = False) -> SupportCache:
    """Score the answer with each listed source alone (and, with ``no_context``, after no
    passage), once per task. The first new prompt runs in full and keeps its KV cache; the
    others reuse it for the prefix they share (system prompt and header) and run batched."""
    cache = _cache(task)
    answer = task.response.token_ids
    prompts = {
        int(i): task.layout.render(task.question, _alone(task, int(i))).input_ids
        for i in dict.fromkeys(int(i) for i in indices)
        if int(i) not in cache.alone
    }
    if no_context and cache.no_context is None:
        prompts[NO_PASSAGE] = task.layout.render(task.question, []).input_ids
    if not prompts:
        return cache
    keys = list(prompts)
    base = task.scorer.full_pass(prompts[keys[0]], answer)
    rest = task.scorer.ablation_logprobs(base, [prompts[k] for k in keys[1:]]) if len(keys) > 1 else []
    for key, lp in zip(keys, [base.logprobs, *rest]):
        if key == NO_PASSAGE:
            cache.no_context = lp
        else:
            cache.alone[key] = lp
    return cache


def support(
    task: AttributionTask, indices: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """Each listed source's support for the answer tokens [a, b), in nats per token,
    against the mean of the ``reference`` sources alone (none: against no passage)."""
    reference = [int(i) for i in reference if int(i) not in {int(j) for j in indices}]
    cache = check_sources(task, [*indices, *reference], no_context=not reference)
    return contrast(cache, indices, target, reference)


def contrast(
    cache: SupportCache, indices: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """:func:`support` from log-probs already computed (``cache`` holds every source named)."""
    a, b = target
    if b <= a:
        return {int(i): float("nan") for i in indices}
    if reference:
        base = np.mean([cache.alone[int(i)][a:b] for i in reference], axis=0)
    else:
        base = cache.no_context[a:b]  # type: ignore[index]
    return {int(i): float(np.mean(cache.alone[int(i)][a:b] - base)) for i in indices}


__all__ = ["SupportCache", "check_sources", "contrast", "support"]
