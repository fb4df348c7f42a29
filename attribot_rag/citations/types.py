"""What a cited answer is made of: citations, references, cited sentences, the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..result import Attribution, _jsonable
from ..sources import Passage

TRUNCATION_MARK = "\u2026"


@dataclass(frozen=True)
class Citation:
    """One answer sentence citing one source."""

    number: int  # the marker [number]; ``references[number - 1]`` is its passage
    sentence_index: int
    sentence: str  # the answer sentence
    sentence_span: tuple[int, int]  # its character span in the answer
    source_id: str  # passage id, or "<passage id>#s<k>" for a sentence source
    passage_id: str
    passage_index: int
    title: str | None
    score: float
    quote: str  # the source text, verbatim
    quote_span: tuple[int, int]  # its character span in the passage text
    # nats per token the source alone adds to the sentence (evidence="supports"; else None)
    support: float | None = None
    # what the citation rests on: "supports" (the source says it), "used" (the model
    # relied on it: contributive evidence, or the fallback when no single source says it)
    # "bridge" (among what the model relied on most, it names what the question asks
    # about: the link from the question to the cited fact, beside a citation of the others)
    # "question" (the sentence is a yes/no verdict, which no source states: the sources
    # the question is about, which the verdict rests on) or "companion" (a further fact
    # the model's fitted companion model finds likely evidence too)
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "sentence_index": self.sentence_index,
            "sentence": self.sentence,
            "sentence_span": list(self.sentence_span),
            "source_id": self.source_id,
            "passage_id": self.passage_id,
            "passage_index": self.passage_index,
            "title": self.title,
            "score": self.score,
            "quote": self.quote,
            "quote_span": list(self.quote_span),
            "support": self.support,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Reference:
    """A cited passage, numbered by its first appearance in the answer."""

    number: int
    passage_id: str
    passage_index: int
    title: str | None
    text: str  # the whole passage text

    @property
    def label(self) -> str:
        return f"{self.title} ({self.passage_id})" if self.title else self.passage_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "passage_id": self.passage_id,
            "passage_index": self.passage_index,
            "title": self.title,
            "text": self.text,
        }


@dataclass(frozen=True)
class CitedSentence:
    """One sentence of the answer, its citations, and every source's score for it."""

    index: int
    text: str
    span: tuple[int, int]  # character span in the answer
    citations: tuple[Citation, ...]
    scores: dict[str, float | None]  # source id -> score for this sentence (None: not scored)
    attribution: Attribution | None = field(default=None, repr=False, compare=False)
    # The answer's last sentence, cut by the length limit mid-sentence: not a claim to
    # cite (its marker would land mid-phrase), shown with TRUNCATION_MARK instead.
    truncated: bool = False
    # Nats per token the passages together add to the sentence (attribot_rag.grounding);
    # None when not measured. Below the gate the sentence cites nothing.
    context_gain: float | None = None

    @property
    def supported(self) -> bool:
        return bool(self.citations)

    @property
    def numbers(self) -> list[int]:
        """The markers after this sentence, ascending."""
        return sorted({c.number for c in self.citations})

    @property
    def top_score(self) -> float | None:
        vals = [v for v in self.scores.values() if v is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "span": list(self.span),
            "supported": self.supported,
            "truncated": self.truncated,
            "context_gain": self.context_gain,
            "markers": self.numbers,
            "top_score": self.top_score,
            "citations": [c.to_dict() for c in self.citations],
            "scores": dict(self.scores),
        }


@dataclass
class CitedAnswer:
    """An answer with inline citation markers, its references and the structured citations."""

    question: str
    answer: str  # the answer as given / generated, without markers
    text: str  # the answer with [n] markers
    sentences: list[CitedSentence]
    references: list[Reference]
    passages: list[Passage]
    method: str
    model: str
    level: str
    settings: dict[str, Any] = field(default_factory=dict)  # the resolved policy and calibration
    timings: dict[str, float] = field(default_factory=dict)
    forward_tokens: int = 0
    forward_passes: int = 0

    @property
    def evidence(self) -> str | None:
        """What the citations mean: "supports" (the source says it) or "used" (the model relied on it)."""
        return self.settings.get("evidence")

    @property
    def calibrated(self) -> bool:
        """Whether the thresholds came from a calibration of this model (else generic values)."""
        return self.settings.get("calibration") is not None

    @property
    def citations(self) -> list[Citation]:
        """Every citation, in answer order (then best score first)."""
        return [c for s in self.sentences for c in s.citations]

    @property
    def unsupported(self) -> list[CitedSentence]:
        """Complete sentences nothing supports (a truncated last sentence is not one)."""
        return [s for s in self.sentences if not s.supported and not s.truncated]

    @property
    def truncated(self) -> bool:
        """Whether the answer stops mid-sentence (the length limit cut it)."""
        return any(s.truncated for s in self.sentences)

    @property
    def cited_passage_ids(self) -> list[str]:
        return [r.passage_id for r in self.references]

    def reference(self, number: int) -> Reference:
        return self.references[number - 1]

    def source_scores(self) -> dict[str, float | None]:
        """Each source's score for the whole answer: the sum over the answer sentences.

        (For LOO this is the LOO score of the sentence tokens of the answer.)
        """
        out: dict[str, float | None] = {}
        for s in self.sentences:
            for sid, v in s.scores.items():
                if v is None:
                    out.setdefault(sid, None)
                else:
                    prev = out.get(sid)
                    out[sid] = v if prev is None else prev + v
        return out

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "question": self.question,
                "answer": self.answer,
                "text": self.text,
                "method": self.method,
                "model": self.model,
                "level": self.level,
                "evidence": self.evidence,
                "settings": dict(self.settings),
                "references": [r.to_dict() for r in self.references],
                "citations": [c.to_dict() for c in self.citations],
                "sentences": [s.to_dict() for s in self.sentences],
                "unsupported": [s.index for s in self.unsupported],
                "truncated": self.truncated,
                "timings": dict(self.timings),
                "forward_tokens": self.forward_tokens,
                "forward_passes": self.forward_passes,
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def format(self, width: int = 100, quotes: bool = True) -> str:
        """Plain text for a terminal: the cited answer, then the numbered references."""
        lines = [_wrap(self.text.strip(), width)]
        if self.references:
            lines.append("")
        for ref in self.references:
            lines.append(f"[{ref.number}] {ref.label}")
            if quotes:
                seen: set[str] = set()
                for c in self.citations:
                    if c.number != ref.number or c.source_id in seen:
                        continue
                    seen.add(c.source_id)
                    quote = _clip(c.quote, width - 20)
                    lines.append(f"    \"{quote}\" (score {c.score:.2f})")
        for s in self.unsupported:
            lines.append(f"(unsupported: \"{_clip(s.text, width - 20)}\")")
        if self.truncated:
            lines.append("(the answer was cut at the length limit: its last sentence is not cited)")
        if self.settings and not self.calibrated:
            lines.append(f"(no citation calibration for {self.model}: generic thresholds; see attribot-rag calibrate)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    width = max(width, 20)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(p, width) if p.strip() else p for p in text.split("\n"))


__all__ = ["TRUNCATION_MARK", "Citation", "CitedAnswer", "CitedSentence", "Reference"]
