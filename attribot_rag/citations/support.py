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

The prompts are short (one source, no other passage) and share the system prompt and
header as a KV-cached prefix; they run batched where padding them to one width costs
less than it saves (the scorer's ``max_spread``). Checking a few candidates costs a
fraction of one pass over the full prompt. Results stay in the task's cache for every
sentence and policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..methods.base import AttributionTask
from ..sources import Passage


NO_PASSAGE = -1  # the key of the prompt with no passage among the prompts to score


@dataclass
class SupportCache:
    """Per answer token: log-probs with no passage, with each checked source alone, and
    with checked sets of sources kept together (sorted index tuples)."""

    no_context: np.ndarray | None = None
    alone: dict[int, np.ndarray] = field(default_factory=dict)
    together: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)

    def logprobs(self, kept: Sequence[int]) -> np.ndarray:
        key = tuple(sorted(int(i) for i in kept))
        return self.alone[key[0]] if len(key) == 1 else self.together[key]

    def has(self, kept: Sequence[int]) -> bool:
        key = tuple(sorted(int(i) for i in kept))
        return key[0] in self.alone if len(key) == 1 else key in self.together


def _cache(task: AttributionTask) -> SupportCache:
    cache = getattr(task.cache, "support", None)
    if cache is None:
        cache = SupportCache()
        task.cache.support = cache  # type: ignore[attr-defined]
    return cache


def _kept(task: AttributionTask, indices: Sequence[int]) -> list[Passage]:
    """The prompt's passages when only the listed sources are kept, in document order:
    each kept source's passage title and the source's own text (sentences of one passage
    stay one passage; a sentence source keeps no other sentence of its passage)."""
    texts: dict[int, list[str]] = {}
    for i in sorted({int(i) for i in indices}, key=lambda i: (task.sources[i].passage_index, task.sources[i].start)):
        texts.setdefault(task.sources[i].passage_index, []).append(task.sources[i].text)
    return [Passage(id=task.passages[pi].id, text=" ".join(t), title=task.passages[pi].title) for pi, t in texts.items()]


def check_sources(task: AttributionTask, indices: Sequence[int], no_context: bool = False) -> SupportCache:
    """Score the answer with each listed source alone (and, with ``no_context``, after no
    passage), once per task."""
    return check_sets(task, [(int(i),) for i in indices], no_context=no_context)


def check_sets(task: AttributionTask, sets: Sequence[Sequence[int]], no_context: bool = False) -> SupportCache:
    """Score the answer with each listed set of sources kept alone together, once per task
    and set. The first new prompt runs in full and keeps its KV cache; the others reuse it
    for the prefix they share (system prompt and header)."""
    cache = _cache(task)
    answer = task.response.token_ids
    prompts: dict[Any, list[int]] = {}
    for kept in sets:
        key = tuple(sorted({int(i) for i in kept}))
        if key and not cache.has(key) and key not in prompts:
            prompts[key] = task.layout.render(task.question, _kept(task, key)).input_ids
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
        elif len(key) == 1:
            cache.alone[key[0]] = lp
        else:
            cache.together[key] = lp
    return cache


def support(
    task: AttributionTask, indices: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """Each listed source's support for the answer tokens [a, b), in nats per token,
    against the mean of the ``reference`` sources alone (none: against no passage)."""
    reference = [int(i) for i in reference if int(i) not in {int(j) for j in indices}]
    cache = check_sources(task, [*indices, *reference], no_context=not reference)
    return contrast(cache, indices, target, reference)


def joint_support(
    task: AttributionTask, best: int, companions: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """Each companion's support *together with* ``best`` for the answer tokens [a, b), in
    nats per token against the same reference as :func:`support`: what a second fact adds
    to the first (a multi-hop answer's bridge, a comparison's other side)."""
    reference = [int(i) for i in reference if int(i) != int(best) and int(i) not in {int(j) for j in companions}]
    cache = check_sets(task, [(int(best), int(j)) for j in companions] + [(int(i),) for i in reference],
                       no_context=not reference)
    return contrast_sets(cache, best, companions, target, reference)


def contrast(
    cache: SupportCache, indices: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """:func:`support` from log-probs already computed (``cache`` holds every source named)."""
    return _contrast(cache, {int(i): (int(i),) for i in indices}, target, reference)


def contrast_sets(
    cache: SupportCache, best: int, companions: Sequence[int], target: tuple[int, int], reference: Sequence[int] = ()
) -> dict[int, float]:
    """:func:`joint_support` from log-probs already computed."""
    return _contrast(cache, {int(j): (int(best), int(j)) for j in companions}, target, reference)


def _contrast(
    cache: SupportCache, sets: dict[int, tuple[int, ...]], target: tuple[int, int], reference: Sequence[int]
) -> dict[int, float]:
    a, b = target
    if b <= a:
        return {k: float("nan") for k in sets}
    if reference:
        base = np.mean([cache.alone[int(i)][a:b] for i in reference], axis=0)
    else:
        base = cache.no_context[a:b]  # type: ignore[index]
    return {k: float(np.mean(cache.logprobs(kept)[a:b] - base)) for k, kept in sets.items()}


__all__ = ["SupportCache", "check_sets", "check_sources", "contrast", "contrast_sets", "joint_support", "support"]
