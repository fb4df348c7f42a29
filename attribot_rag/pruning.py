"""Context pruning: draft an answer, attribute it, keep the passages it used, answer again.

1. Draft an answer with all passages (or take the draft you pass in).
2. Attribute the draft to the passages (LOO by default; any registered method).
3. Keep the top ``k`` passages, or the smallest set holding ``keep_mass`` of the total
   positive score (both: the smaller of the two), in their original order.
4. Answer again with only the kept passages.

The kept set is never empty: when no passage has a positive score the best one is kept.
``k`` larger than the number of passages keeps them all (and, when the draft was generated
here, the second pass is skipped: greedy decoding over the same prompt gives the same
answer).

>>> result = prune(attributor, question, passages, k=2)
>>> result.draft, result.answer, [p.passage.id for p in result.kept]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import InputError
from .methods import AttributionMethod
from .result import Attribution, _jsonable, rank_scores
from .scoring import Response
from .sources import Passage, coerce_passages

if TYPE_CHECKING:
    from .attributor import Attributor

DEFAULT_K = 3


@dataclass(frozen=True)
class PassageScore:
    """A passage with its attribution score and its position in the input."""

    passage: Passage
    index: int  # position in the input list
    score: float | None  # None: not scored
    rank: int | None  # 1 = most important

    @property
    def id(self) -> str:
        return self.passage.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.passage.id,
            "index": self.index,
            "title": self.passage.title,
            "score": self.score,
            "rank": self.rank,
            "text": self.passage.text,
        }


@dataclass
class PruneResult:
    """Both answers, the kept and the dropped passages (original order) with their scores."""

    question: str
    draft: str  # the answer with all passages
    answer: str | None  # the answer with the kept passages (None when second_pass=False)
    kept: list[PassageScore]
    dropped: list[PassageScore]
    attribution: Attribution  # the draft's attribution to the passages
    k: int | None = None
    keep_mass: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kept_passages(self) -> list[Passage]:
        return [p.passage for p in self.kept]

    @property
    def kept_indices(self) -> list[int]:
        return [p.index for p in self.kept]

    @property
    def dropped_indices(self) -> list[int]:
        return [p.index for p in self.dropped]

    @property
    def scores(self) -> list[PassageScore]:
        """Every passage, in input order."""
        return sorted(self.kept + self.dropped, key=lambda p: p.index)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "question": self.question,
                "draft": self.draft,
                "answer": self.answer,
                "k": self.k,
                "keep_mass": self.keep_mass,
                "method": self.attribution.method,
                "model": self.attribution.model,
                "kept": [p.to_dict() for p in self.kept],
                "dropped": [p.to_dict() for p in self.dropped],
                "timings": dict(self.timings),
                "info": dict(self.info),
            }
        )

    def format(self, width: int = 100) -> str:
        """Plain text: both answers and which passages were kept."""

        def line(p: PassageScore, mark: str) -> str:
            score = "not scored" if p.score is None else f"{p.score:+.3f}"
            label = f"{p.passage.title} ({p.id})" if p.passage.title else p.id
            return f"  {mark} {score:>10}  {label}"[:width]

        out = [f"Draft (all {len(self.scores)} passages): {self.draft.strip()}"]
        for p in self.scores:
            out.append(line(p, "keep" if p in self.kept else "drop"))
        if self.answer is not None:
            out.append(f"Pruned ({len(self.kept)} passages): {self.answer.strip()}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def keep_indices(
    scores: Sequence[float | None],
    k: int | None = None,
    keep_mass: float | None = None,
) -> list[int]:
    """Indices of the passages to keep, in their original order; never empty.

    ``k``: the k best. ``keep_mass``: the smallest set of best passages whose positive
    scores add up to at least that fraction of the total positive score. Both: the smaller
    set. Neither: ``k=3``. Unscored (None/nan) passages rank last.
    """
    n = len(scores)
    if n == 0:
        raise InputError("no passages to prune")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise InputError(f"k must be a positive integer, got {k!r}")
    if keep_mass is not None and not (0 < keep_mass <= 1):
        raise InputError(f"keep_mass must be in (0, 1], got {keep_mass!r}")
    if k is None and keep_mass is None:
        k = DEFAULT_K

    def val(i: int) -> float:
        v = scores[i]
        return -math.inf if v is None or math.isnan(float(v)) else float(v)

    order = sorted(range(n), key=lambda i: (-val(i), i))
    limit = n
    if keep_mass is not None:
        total = sum(val(i) for i in order if val(i) > 0)
        if total <= 0:
            limit = 1
        else:
            acc, limit = 0.0, 0
            for i in order:
                if val(i) <= 0:
                    break
                acc += val(i)
                limit += 1
                if acc >= keep_mass * total - 1e-12:
                    break
    if k is not None:
        limit = min(limit, k)
    limit = max(1, limit)
    return sorted(order[:limit])


def prune(
    attributor: "Attributor",
    question: str,
    passages: Iterable[Any],
    k: int | None = None,
    keep_mass: float | None = None,
    method: str | AttributionMethod | None = "loo",
    *,
    draft: str | Response | None = None,
    second_pass: bool = True,
    max_new_tokens: int | None = None,
    **method_options: Any,
) -> PruneResult:
    """Draft, attribute, keep the passages that mattered, answer again with only those.

    ``draft`` (a string from any model, or a :class:`Response`) skips the first
    generation. ``second_pass=False`` stops after selecting the passages (``answer`` is
    None), e.g. when another component writes the final answer.
    """
    ps = coerce_passages(passages)
    if k is None and keep_mass is None:
        k = DEFAULT_K
    # Validate the rule before any model work.
    keep_indices([0.0] * len(ps), k, keep_mass)
    timings: dict[str, float] = {}
    generated = draft is None
    if draft is None:
        t0 = time.perf_counter()
        draft = attributor.generate(question, ps, max_new_tokens=max_new_tokens)
        timings["draft_s"] = time.perf_counter() - t0
    attribution = attributor.attribute(
        question, ps, draft, method=method, level="passage", **method_options
    )
    timings["attribution_s"] = attribution.timings.get("attribution_s", 0.0)
    per_passage = attribution.passage_scores()
    scores = [per_passage[p.id] for p in ps]
    kept_idx = set(keep_indices(scores, k, keep_mass))
    ranks = rank_scores(scores)
    items = [PassageScore(p, i, scores[i], ranks[i]) for i, p in enumerate(ps)]
    kept = [it for it in items if it.index in kept_idx]
    dropped = [it for it in items if it.index not in kept_idx]
    draft_text = draft.text if isinstance(draft, Response) else str(draft)
    info: dict[str, Any] = {"draft_generated": generated}
    answer: str | None = None
    if second_pass:
        if not dropped and generated:
            answer = draft_text
            info["second_pass"] = "skipped: every passage was kept"
        else:
            t0 = time.perf_counter()
            answer = attributor.generate(
                question, [it.passage for it in kept], max_new_tokens=max_new_tokens
            ).text
            timings["answer_s"] = time.perf_counter() - t0
    return PruneResult(
        question=attribution.question,
        draft=draft_text,
        answer=answer,
        kept=kept,
        dropped=dropped,
        attribution=attribution,
        k=k,
        keep_mass=keep_mass,
        timings=timings,
        info=info,
    )




def filter_passages(
    attributor: "Attributor",
    question: str,
    passages: Sequence[Passage],
    *,
    top_n: int | None = None,
    keep_mass: float | None = None,
    method: str | AttributionMethod | None = "loo",
    max_new_tokens: int | None = None,
) -> tuple[PruneResult, list[tuple[PassageScore, bool]]]:
    """What a retrieval filter (the LlamaIndex postprocessor, the LangChain compressor)
    needs: draft, attribute and select without a second answer, holding the model's lock.

    Neither ``top_n`` nor ``keep_mass``: every passage is kept, ranked. Returns the
    :class:`PruneResult` and, per input passage in order, its score and whether it is kept.
    """
    with attributor.lock:
        result = prune(
            attributor,
            question,
            passages,
            k=top_n if (top_n or keep_mass) else len(passages),
            keep_mass=keep_mass,
            method=method,
            second_pass=False,
            max_new_tokens=max_new_tokens,
        )
    kept = set(result.kept_indices)
    return result, [(ps, ps.index in kept) for ps in result.scores]


__all__ = ["DEFAULT_K", "PassageScore", "PruneResult", "filter_passages", "keep_indices", "prune"]
