"""The result of an attribution: scored sources, ranks, timings and token counts."""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .ranking import rank_scores, ranking  # noqa: F401  (ranking: re-exported)
from .errors import InputError
from .models import dtype_info, model_lock
from .sources import Passage, Source, split_sentences

if TYPE_CHECKING:
    from .methods.base import AttributionTask, Effects


@dataclass(frozen=True)
class ScoredSource:
    source: Source
    score: float | None  # None = not scored (e.g. a sentence of a passage pruned by hierarchical)
    rank: int | None  # 1 = most important; None when not scored

    @property
    def id(self) -> str:
        return self.source.id

    @property
    def text(self) -> str:
        return self.source.text

    def to_dict(self) -> dict[str, Any]:
        s = self.source
        return {
            "id": s.id,
            "passage_id": s.passage_id,
            "passage_index": s.passage_index,
            "text": s.text,
            "start": s.start,
            "end": s.end,
            "score": self.score,
            "rank": self.rank,
        }


@dataclass
class Attribution:
    """Sources in their original order with score and rank, plus how they were computed.

    It keeps the method's effects, so another span of the same answer is a query, not a
    new run: ``att.for_span((start, end))`` (a character span of the answer) and
    ``att.per_sentence()`` (one attribution per answer sentence). LOO, AT2, attention,
    proxy and ContextCite answer them with no forward pass at all."""

    question: str
    answer: str
    passages: list[Passage]
    sources: list[ScoredSource]
    method: str
    model: str
    level: str
    target_span: tuple[int, int] | None = None  # character span of the answer explained
    target_tokens: tuple[int, int] = (0, 0)
    timings: dict[str, float] = field(default_factory=dict)  # generation_s, attribution_s
    forward_tokens: int = 0
    forward_passes: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    # what answers other spans: the method's effects and the task they belong to
    effects: "Effects | None" = field(default=None, repr=False, compare=False)
    task: "AttributionTask | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def query(
        cls, task: "AttributionTask", effects: "Effects", *, method: str, model: str, generation_s: float = 0.0
    ) -> "Attribution":
        """Ask ``effects`` for the task's target span and package the answer (the forward
        passes counted are those the query itself ran)."""
        tokens0, passes0 = task.scorer.forward_tokens, task.scorer.forward_passes
        t0 = time.perf_counter()
        out = effects.query(task.target)
        elapsed = time.perf_counter() - t0
        if len(out.scores) != len(task.sources):
            raise RuntimeError(f"method {method!r} returned {len(out.scores)} scores for {len(task.sources)} sources")
        response, (a, b) = task.response, task.target
        span = None if (a, b) == (0, len(response)) else (response.offsets[a][0], response.offsets[b - 1][1])
        return cls.build(
            scores=out.scores,
            sources=task.sources,
            question=task.question,
            answer=response.text,
            passages=task.passages,
            method=method,
            model=model,
            level=task.level,
            target_span=span,
            target_tokens=(a, b),
            timings={"generation_s": generation_s, "attribution_s": elapsed},
            forward_tokens=task.scorer.forward_tokens - tokens0,
            forward_passes=task.scorer.forward_passes - passes0,
            info={**out.info, **dtype_info(task.lm), **_full_pass_info(task)},
            effects=effects,
            task=task if effects.needs_task_cache else task.without_cache(),
        )

    def for_tokens(self, target: tuple[int, int]) -> "Attribution":
        """The attribution of the token slice [a, b) of the answer, from the same effects."""
        if self.effects is None or self.task is None:
            raise InputError("this attribution keeps no effects (it was rebuilt from data): run the method again")
        with model_lock(self.task.lm):  # a lazy method may still run the model for a new span
            return Attribution.query(self.task.for_target(target), self.effects, method=self.method, model=self.model)

    def for_span(self, span: tuple[int, int]) -> "Attribution":
        """The attribution of a character span of the answer, from the same effects."""
        if self.task is None:
            raise InputError("this attribution keeps no effects (it was rebuilt from data): run the method again")
        return self.for_tokens(self.task.response.token_slice(span))

    def per_sentence(self) -> list[tuple[tuple[int, int], "Attribution | None"]]:
        """Each answer sentence's character span and attribution (None: it has no token)."""
        if self.task is None:
            raise InputError("this attribution keeps no effects (it was rebuilt from data): run the method again")
        out: list[tuple[tuple[int, int], Attribution | None]] = []
        for span in split_sentences(self.answer):
            try:
                target = self.task.response.token_slice(span)
            except InputError:
                out.append((span, None))
                continue
            out.append((span, self.for_tokens(target)))
        return out

    @classmethod
    def build(cls, *, scores: np.ndarray, sources: list[Source], **kwargs: Any) -> "Attribution":
        ranks = rank_scores(scores)
        scored = [
            ScoredSource(s, None if math.isnan(v) else float(v), r)
            for s, v, r in zip(sources, scores, ranks)
        ]
        return cls(sources=scored, **kwargs)

    @property
    def scores(self) -> np.ndarray:
        return np.array([np.nan if s.score is None else s.score for s in self.sources])

    def ranked(self) -> list[ScoredSource]:
        """Scored sources, best first (unscored ones left out)."""
        return sorted((s for s in self.sources if s.rank is not None), key=lambda s: s.rank)

    def top(self, k: int) -> list[ScoredSource]:
        return self.ranked()[:k]

    def passage_scores(self) -> dict[str, float | None]:
        """One score per passage id: the passage's own score, or its best sentence's."""
        out: dict[str, float | None] = {p.id: None for p in self.passages}
        for s in self.sources:
            if s.score is None:
                continue
            pid = s.source.passage_id
            out[pid] = s.score if out[pid] is None else max(out[pid], s.score)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "method": self.method,
            "model": self.model,
            "level": self.level,
            "target_span": list(self.target_span) if self.target_span else None,
            "target_tokens": list(self.target_tokens),
            "timings": dict(self.timings),
            "forward_tokens": self.forward_tokens,
            "forward_passes": self.forward_passes,
            "passages": [p.to_dict() for p in self.passages],
            "sources": [s.to_dict() for s in self.sources],
            "info": _jsonable(self.info),
        }

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def table(self, limit: int | None = None) -> Table:
        """A rich Table of the sources, best first (then the unscored ones, without a limit)."""
        table = Table(title=f"{self.method} | {self.level} level | {self.model}", expand=False)
        for column, justify in (("rank", "right"), ("score", "right"), ("source", "left"), ("text", "left")):
            table.add_column(column, justify=justify)
        ranked = self.ranked()
        for s in ranked if limit is None else ranked[:limit]:
            table.add_row(str(s.rank), f"{s.score:+.4f}", s.id, _clip(s.text))
        if limit is None:
            for s in (s for s in self.sources if s.rank is None):
                table.add_row("-", "not scored", s.id, _clip(s.text))
        return table

    def __str__(self) -> str:
        console = Console(width=140, record=True, file=io.StringIO(), color_system=None)
        console.print(f"Question: {self.question}")
        console.print(f"Answer: {self.answer.strip()}")
        t = self.timings
        console.print(
            f"generation {t.get('generation_s', 0.0):.2f}s, attribution {t.get('attribution_s', 0.0):.2f}s, "
            f"{self.forward_tokens} forward tokens"
        )
        console.print(self.table())
        return console.export_text()


def _clip(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _full_pass_info(task: "AttributionTask") -> dict[str, str]:
    """Where the full-context pass got the prompt's KV cache, when the method used one."""
    note = task.cache.full_pass_note
    return {"full_pass": note} if note else {}
