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


def check_sources(task: AttributionTask, indices: Sequence[int]) -> SupportCache:
    """Score the answer with each listed source alone (and with none), once per task."""
    cache = _cache(task)
    answer = task.response.token_ids
    missing = [i for i in dict.fromkeys(int(i) for i in indices) if i not in cache.alone]
    if cache.no_context is None or missing:
        empty = task.layout.render(task.question, []).input_ids
        base = task.scorer.full_pass(empty, answer)
        cache.no_context = base.logprobs
        prompts = [task.layout.render(task.question, _alone(task, i)).input_ids for i in missing]
        if prompts:
            for i, lp in zip(missing, task.scorer.ablation_logprobs(base, prompts)):
                cache.alone[i] = lp
    return cache


def support(
    task: AttributionTask, indices: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """Each listed source's support for the answer tokens [a, b), in nats per token,
    against the mean of the ``reference`` sources alone (none: against no passage)."""
    reference = [int(i) for i in reference if int(i) not in {int(j) for j in indices}]
    cache = check_sources(task, [*indices, *reference])
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
