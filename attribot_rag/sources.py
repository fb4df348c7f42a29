"""Passages and sources.

A *passage* is one retrieved chunk (id, text, optional title and metadata). A *source*
is the unit that gets a score: a whole passage (``level="passage"``) or one sentence
of a passage (``level="sentence"``). Every source knows its character span inside its
passage, so ``passage.text[source.start:source.end] == source.text`` always holds.

Sentences come from pysbd (rule-based, ships its rules; no downloads at run time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import InputError

LEVELS = ("passage", "sentence")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.title is not None:
            out["title"] = self.title
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class Source:
    """A scored unit: a passage or a sentence of one, with its span in the passage text."""

    index: int  # position in the list of sources
    id: str  # passage id, or "<passage id>#s<k>" for the k-th sentence
    passage_index: int
    passage_id: str
    text: str
    start: int  # character span inside the passage text
    end: int
    level: str


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (surrounding whitespace excluded)."""
    spans: list[tuple[int, int]] = []
    if not text.strip():
        return spans
    pos = 0
    for seg in _segmenter().segment(text):
        sent = seg.sent
        # pysbd's own offsets can drift on repeated substrings; re-anchor by search.
        start = text.find(sent, pos)
        if start < 0:
            start = seg.start
        end = start + len(sent)
        pos = end
        stripped_start = start + (len(sent) - len(sent.lstrip()))
        stripped_end = start + len(sent.rstrip())
        if stripped_end > stripped_start:
            spans.append((stripped_start, stripped_end))
    if not spans:
        s = text.strip()
        begin = text.index(s)
        spans.append((begin, begin + len(s)))
    return spans


def check_question(question: Any) -> str:
    """The question, or a clear error when it is empty or missing."""
    if question is None or not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty or missing")
    return question


class CheckedPassages(list):
    """The list :func:`coerce_passages` returns: passages already checked at the public
    edge, so the layers below (generate, task, cite, prune) take them as they are instead
    of checking them again. The ids it was checked with are kept: a list changed since
    is checked afresh."""

    def __init__(self, passages: Iterable[Passage]) -> None:
        super().__init__(passages)
        self.checked_ids = tuple(p.id for p in self)

    def still_checked(self) -> bool:
        return tuple(getattr(p, "id", None) for p in self) == self.checked_ids and all(
            isinstance(p, Passage) for p in self
        )


def coerce_passages(passages: Iterable[Any]) -> list[Passage]:
    """Accept Passage objects, dicts ({id, text, title?, metadata?}) or plain strings.

    Checks there is at least one passage, that none is empty, and that ids are unique;
    passages it already checked (:class:`CheckedPassages`) pass through unchanged.
    The caller's objects are never modified.
    """
    if isinstance(passages, CheckedPassages) and passages.still_checked():
        return passages
    if passages is None:
        raise InputError("no passages were given: attribution needs at least one passage of context")
    if isinstance(passages, (str, bytes)):
        raise InputError("passages must be a list of passages, not a single string")
    out: list[Passage] = []
    for i, p in enumerate(passages):
        if isinstance(p, Passage):
            out.append(p)
        elif isinstance(p, str):
            out.append(Passage(id=str(i), text=p))
        elif isinstance(p, Mapping):
            if "text" not in p:
                raise InputError(f"passage {i} has no 'text' field (got keys {sorted(p)})")
            text = p["text"]
            if not isinstance(text, str):
                raise InputError(f"passage {i}: 'text' must be a string, got {type(text).__name__}")
            pid = p.get("id", i)
            title = p.get("title")
            meta = p.get("metadata") or {}
            out.append(
                Passage(
                    id=str(pid),
                    text=text,
                    title=str(title) if title is not None else None,
                    metadata=dict(meta),
                )
            )
        else:
            raise InputError(
                f"passage {i} has unsupported type {type(p).__name__}: use a dict, a string or Passage"
            )
    if not out:
        raise InputError("no passages were given: attribution needs at least one passage of context")
    seen: dict[str, int] = {}
    for i, p in enumerate(out):
        if not p.text.strip():
            raise InputError(f"passage {p.id!r} (position {i}) has empty text")
        if p.id in seen:
            raise InputError(
                f"duplicate passage id {p.id!r} (positions {seen[p.id]} and {i}); ids must be unique"
            )
        seen[p.id] = i
    return CheckedPassages(out)


def make_sources(passages: Sequence[Passage], level: str = "passage") -> list[Source]:
    """Sources for the passages at ``level`` ("passage" or "sentence"), in document order."""
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    sources: list[Source] = []
    for pi, p in enumerate(passages):
        if level == "passage":
            sources.append(
                Source(len(sources), p.id, pi, p.id, p.text, 0, len(p.text), "passage")
            )
            continue
        for k, (a, b) in enumerate(split_sentences(p.text)):
            sources.append(
                Source(len(sources), f"{p.id}#s{k}", pi, p.id, p.text[a:b], a, b, "sentence")
            )
    return sources


# --------------------------------------------------------------------------- files


def hotpotqa_passages(example: Mapping[str, Any]) -> list[Passage]:
    """The paragraphs of one HotpotQA example (``context`` = [[title, [sentences]], ...])."""
    try:
        context = example["context"]
        passages = []
        for i, (title, sentences) in enumerate(context):
            text = "".join(sentences).strip()
            passages.append(Passage(id=f"p{i}", text=text, title=str(title)))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a HotpotQA example: 'context' must be [[title, [sentences]], ...] ({exc})")
    return passages


def is_hotpotqa_example(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "context" in obj and "question" in obj


def load_passages_file(path: str | Path) -> tuple[list[Passage], str | None]:
    """Read a passages file: a JSON list of {id, text, title?}, or one HotpotQA example.

    Returns the passages and, for a HotpotQA example, its question.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"passages file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"passages file {str(path)!r} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"passages file {str(path)!r} is not UTF-8 text: {exc}") from exc
    if is_hotpotqa_example(data):
        return hotpotqa_passages(data), str(data["question"])
    if isinstance(data, list):
        if data and all(is_hotpotqa_example(x) for x in data):
            raise InputError(
                f"{str(path)!r} holds a list of HotpotQA examples; pass one example, "
                "or use `attribot-rag bench` for a whole file"
            )
        return coerce_passages(data), None
    raise InputError(
        f"passages file {str(path)!r} must hold a JSON list of {{id, text, title?}} "
        f"objects or one HotpotQA example, got a JSON {type(data).__name__}"
    )
