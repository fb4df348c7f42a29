"""The result of an attribution: scored sources, ranks, timings and token counts."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from .sources import Passage, Source


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


def ranking(scores: Sequence[float | None] | np.ndarray) -> list[int]:
    """Indices of the scored sources, best first; ties keep document order; nan and None
    (not scored) are left out."""
    valid = [i for i, v in enumerate(scores) if v is not None and not math.isnan(float(v))]
    return sorted(valid, key=lambda i: (-float(scores[i]), i))  # type: ignore[arg-type]


def rank_scores(scores: Sequence[float | None] | np.ndarray) -> list[int | None]:
    """Ranks (1 = highest score); ties keep document order; nan or None gets None."""
    ranks: list[int | None] = [None] * len(scores)
    for r, i in enumerate(ranking(scores), start=1):
        ranks[i] = r
    return ranks


@dataclass
class Attribution:
    """Sources in their original order with score and rank, plus how they were computed."""

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
