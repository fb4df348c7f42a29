"""Request and response models of the HTTP API (they are the OpenAPI schema at /docs).

The response shapes are the library's own ``to_dict()`` shapes (``Attribution``,
``Citation``, ``PassageScore``), so a client of the service and a caller of the Python
API read the same fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PassageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="unique within the request (default: the position)")
    text: str
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def as_dict(self, position: int) -> dict[str, Any]:
        return {
            "id": self.id if self.id is not None else str(position),
            "text": self.text,
            "title": self.title,
            "metadata": dict(self.metadata),
        }


class _ContextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    passages: list[PassageIn]
    method: str | None = Field(None, description="attribution method (default: the server's)")


class AttributeRequest(_ContextRequest):
    answer: str | None = Field(None, description="the answer to explain (default: the model answers)")
    level: Literal["passage", "sentence"] = "passage"


class CiteRequest(_ContextRequest):
    answer: str | None = Field(None, description="the answer to cite (default: the model answers)")


class PruneRequest(_ContextRequest):
    answer: str | None = Field(None, description="the draft (default: the model drafts it)")
    k: int | None = Field(None, ge=1, description="keep the k best passages")
    keep_mass: float | None = Field(None, gt=0, le=1, description="keep this fraction of positive score")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    k: int = Field(4, ge=1, description="passages retrieved from the index")
    prune: bool = Field(False, description="draft, keep the passages the draft used, answer again")
    prune_k: int = Field(2, ge=1, description="passages kept when pruning")
    method: str | None = None


# --------------------------------------------------------------------------- responses


class PassageOut(BaseModel):
    id: str
    text: str
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SourceOut(BaseModel):
    id: str
    passage_id: str
    passage_index: int
    text: str
    start: int
    end: int
    score: float | None
    rank: int | None


class AttributionOut(BaseModel):
    """``Attribution.to_dict()``."""

    question: str
    answer: str
    method: str
    model: str
    level: str
    target_span: list[int] | None
    target_tokens: list[int]
    timings: dict[str, float]
    forward_tokens: int
    forward_passes: int
    passages: list[PassageOut]
    sources: list[SourceOut]
    info: dict[str, Any]


class CitationOut(BaseModel):
    """``Citation.to_dict()``: one answer sentence citing one source."""

    number: int
    sentence_index: int
    sentence: str
    sentence_span: list[int]
    source_id: str
    passage_id: str
    passage_index: int
    title: str | None
    score: float
    quote: str
    quote_span: list[int]
    support: float | None = Field(None, description="nats per token the source alone adds to the sentence (checked candidates)")
    evidence: str | None = Field(
        None,
        description='what this citation rests on: "supports" (the source says it), "used" (the model relied on it), '
        '"bridge" (it links the question to the cited fact), "companion" (a further fact the fitted companion '
        'model finds likely) or "question" (a yes/no verdict\'s subject)',
    )
    file: str | None = Field(None, description="the cited document's file (an index built with --docs)")
    page: int | None = Field(None, description="its page (a PDF)")


class SentenceOut(BaseModel):
    index: int
    text: str
    span: list[int]
    markers: list[int]


class ScoredSentenceOut(BaseModel):
    id: str
    text: str
    start: int
    end: int
    score: float | None


class CitedPassageOut(BaseModel):
    """A passage with each of its sentences' score for the whole answer (for shading)."""

    id: str
    title: str | None
    text: str
    number: int | None = Field(description="its reference number when cited")
    sentences: list[ScoredSentenceOut]
    file: str | None = Field(None, description="the document's file (an index built with --docs)")
    page: int | None = Field(None, description="its page (a PDF)")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="the passage's metadata (from --docs: file, page, start_char, end_char, chunk)"
    )


class CiteResponse(BaseModel):
    question: str
    answer: str
    cited_answer: str = Field(description="the answer with [n] markers")
    method: str
    model: str
    evidence: str | None = Field(
        None, description='what a citation means: "supports" (the source says it) or "used" (the model relied on it)'
    )
    calibration: dict[str, Any] | None = Field(
        None, description="the model's citation calibration that set the thresholds; null: generic values"
    )
    citations: list[CitationOut]
    unsupported: list[SentenceOut] = Field(description="answer sentences no source supports")
    sentences: list[SentenceOut]
    passages: list[CitedPassageOut]
    timings: dict[str, float]


class PassageScoreOut(BaseModel):
    """``PassageScore.to_dict()``."""

    id: str
    index: int
    title: str | None
    score: float | None
    rank: int | None
    text: str


class PruneResponse(BaseModel):
    question: str
    draft: str
    answer: str | None
    k: int | None
    keep_mass: float | None
    method: str
    model: str
    kept: list[PassageScoreOut]
    dropped: list[PassageScoreOut]
    timings: dict[str, float]


class RetrievedOut(BaseModel):
    id: str
    title: str | None
    similarity: float
    file: str | None = Field(None, description="the document's file (an index built with --docs)")
    page: int | None = Field(None, description="its page (a PDF)")


class AskResponse(BaseModel):
    question: str
    retrieved: list[RetrievedOut]
    cite: CiteResponse = Field(description="the final answer with citations (over the kept passages when pruned)")
    prune: PruneResponse | None = None


class ErrorOut(BaseModel):
    error: str = Field(description="a short kind: invalid_input, limit_exceeded, busy, timeout, internal")
    detail: str = Field(description="what is wrong, in a sentence")
