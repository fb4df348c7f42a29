"""Context pruning: draft an answer, attribute it, keep the passages it used, answer again.

1. Draft an answer with all passages (or take the draft you pass in).
2. Attribute the draft to the passages (LOO by default; any registered method).
3. Rank the passages (``fusion``: by attribution alone, the default of :func:`prune`; or
   fused with the retriever's order, the default of the retrieval filters,
   :func:`filter_passages`), then keep the top ``k``, or the shortest head of the
   ranking holding ``keep_mass`` of the total positive score (both: the smaller of the
   two), in their original order.
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
# The retrieval filters' ranking and method (issue 17 items 3 and 5; BENCHMARKS.md,
# "Pruning against the retriever's order"): chosen on HotpotQA dev.
DEFAULT_FUSION = "rrf"
DEFAULT_FILTER_METHOD = "auto"  # attribot_rag.attributor.resolve_method


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


# How a ranking combines attribution with the retriever's order (``fusion=``):
#   "attribution": attribution score alone (ties: retrieval order); what prune() did first.
#   "retrieval":   the retriever's order alone (attribution only annotates).
#   "rrf":         reciprocal-rank fusion, w/(c + retrieval rank) + 1/(c + attribution rank),
#                  the retriever's list counting w = RRF_RETRIEVAL_WEIGHT times.
#   "guarded":     the retriever's top passage first unless its attribution is confidently
#                  negative, the rest by rrf.
FUSIONS = ("attribution", "retrieval", "rrf", "guarded")
# Cormack et al. (2009)'s constant: a rank's weight decays slowly, so neither list's
# first place dominates the other's.
RRF_C = 60
# The retriever's vote counts three times: on HotpotQA dev the small default model's
# attribution alone keeps a gold paragraph far less often than MiniLM similarity, and at 2
# AT2 fusion fell below the similarity order at k = 2 on dev 0-39; 3 was the smallest weight
# at or above it for AT2 and LOO at k = 2 and 3 there, and tied it on dev 40-79, held out
# (BENCHMARKS.md, "Pruning against the retriever's order").
RRF_RETRIEVAL_WEIGHT = 3.0
# "guarded" drops the retriever's top passage from first place only when removing it
# makes the answer more likely by more than this many nats (LOO scale): a passage the
# answer clearly did without, not noise around zero.
GUARD_MARGIN = 1.0


def retrieval_ranks(n: int, retrieval_scores: Sequence[float | None] | None = None) -> list[int]:
    """Each passage's retrieval rank (0 = best): by ``retrieval_scores`` (higher first)
    when every passage has one, else the input order (what a retriever hands over)."""
    if retrieval_scores is not None and len(retrieval_scores) != n:
        raise InputError(f"retrieval_scores has {len(retrieval_scores)} values for {n} passages")
    usable = retrieval_scores is not None and all(
        v is not None and not math.isnan(float(v)) for v in retrieval_scores
    )
    if not usable:
        return list(range(n))
    order = sorted(range(n), key=lambda i: (-float(retrieval_scores[i]), i))  # type: ignore[index]
    ranks = [0] * n
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def _value(v: float | None) -> float:
    return -math.inf if v is None or math.isnan(float(v)) else float(v)


def fused_order(
    scores: Sequence[float | None],
    retrieval_scores: Sequence[float | None] | None = None,
    *,
    fusion: str = "attribution",
) -> list[int]:
    """Passage indices, best first, by the ``fusion`` rule (see ``FUSIONS``). Unscored
    (None/nan) passages rank last by attribution; every tie goes to retrieval order."""
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
    n = len(scores)
    ret = retrieval_ranks(n, retrieval_scores)
    by_att = sorted(range(n), key=lambda i: (-_value(scores[i]), ret[i]))
    if fusion == "attribution":
        return by_att
    if fusion == "retrieval":
        return sorted(range(n), key=lambda i: ret[i])
    att = {i: r for r, i in enumerate(by_att)}
    rrf = sorted(
        range(n), key=lambda i: (-(RRF_RETRIEVAL_WEIGHT / (RRF_C + ret[i] + 1) + 1 / (RRF_C + att[i] + 1)), ret[i])
    )
    if fusion == "rrf":
        return rrf
    top = ret.index(0)
    if _value(scores[top]) < -GUARD_MARGIN:
        return rrf
    return [top] + [i for i in rrf if i != top]


def keep_indices(
    scores: Sequence[float | None],
    k: int | None = None,
    keep_mass: float | None = None,
    *,
    fusion: str = "attribution",
    retrieval_scores: Sequence[float | None] | None = None,
) -> list[int]:
    """Indices of the passages to keep, in their original order; never empty.

    The passages are ranked by ``fusion`` (:func:`fused_order`; "attribution": by score).
    ``k``: the k first. ``keep_mass``: the shortest head of the ranking whose positive
    scores add up to at least that fraction of the total positive score. Both: the
    smaller set. Neither: ``k=3``.
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
    order = fused_order(scores, retrieval_scores, fusion=fusion)
    limit = n if keep_mass is None else _mass_limit([_value(scores[i]) for i in order], keep_mass)
    if k is not None:
        limit = min(limit, k)
    return sorted(order[: max(1, limit)])


def _mass_limit(ranked: Sequence[float], keep_mass: float) -> int:
    """How many of the ranked scores it takes to hold ``keep_mass`` of the positive total
    (1 when nothing is positive)."""
    total = sum(v for v in ranked if v > 0)
    if total <= 0:
        return 1
    acc = 0.0
    for count, v in enumerate(ranked, start=1):
        acc += max(v, 0.0)
        if acc >= keep_mass * total - 1e-12:
            return count
    return len(ranked)


def prune(
    attributor: "Attributor",
    question: str,
    passages: Iterable[Any],
    k: int | None = None,
    keep_mass: float | None = None,
    method: str | AttributionMethod | None = None,
    *,
    draft: str | Response | None = None,
    second_pass: bool = True,
    max_new_tokens: int | None = None,
    fusion: str = "attribution",
    retrieval_scores: Sequence[float | None] | None = None,
    **method_options: Any,
) -> PruneResult:
    """Draft, attribute, keep the passages that mattered, answer again with only those.

    ``draft`` (a string from any model, or a :class:`Response`) skips the first
    generation. ``second_pass=False`` stops after selecting the passages (``answer`` is
    None), e.g. when another component writes the final answer. ``fusion`` and
    ``retrieval_scores``: how the ranking uses the retriever's order (:func:`fused_order`;
    the input order is the retrieval order unless scores are given).
    """
    ps = coerce_passages(passages)
    if k is None and keep_mass is None:
        k = DEFAULT_K
    # Validate the rule before any model work.
    keep_indices([0.0] * len(ps), k, keep_mass, fusion=fusion, retrieval_scores=retrieval_scores)
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
    kept_idx = set(keep_indices(scores, k, keep_mass, fusion=fusion, retrieval_scores=retrieval_scores))
    ranks = rank_scores(scores)
    items = [PassageScore(p, i, scores[i], ranks[i]) for i, p in enumerate(ps)]
    kept = [it for it in items if it.index in kept_idx]
    dropped = [it for it in items if it.index not in kept_idx]
    draft_text = draft.text if isinstance(draft, Response) else str(draft)
    info: dict[str, Any] = {"draft_generated": generated, "fusion": fusion}
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
    method: str | AttributionMethod | None = DEFAULT_FILTER_METHOD,
    max_new_tokens: int | None = None,
    fusion: str = DEFAULT_FUSION,
    retrieval_scores: Sequence[float | None] | None = None,
) -> tuple[PruneResult, list[tuple[PassageScore, bool]]]:
    """What a retrieval filter (the LlamaIndex postprocessor, the LangChain compressor)
    needs: draft, attribute and select without a second answer, holding the model's lock.

    The passages come in the retriever's order (or with its ``retrieval_scores``) and the
    ranking fuses it with attribution (``fusion``, default :data:`DEFAULT_FUSION`), so that
    pruning keeps what the retriever ranked first unless the answer shows otherwise.
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
            fusion=fusion,
            retrieval_scores=retrieval_scores,
        )
    kept = set(result.kept_indices)
    return result, [(ps, ps.index in kept) for ps in result.scores]


__all__ = [
    "DEFAULT_FILTER_METHOD",
    "DEFAULT_FUSION",
    "DEFAULT_K",
    "FUSIONS",
    "PassageScore",
    "PruneResult",
    "filter_passages",
    "fused_order",
    "keep_indices",
    "prune",
    "retrieval_ranks",
]
