"""Reading HotpotQA-format files (distractor setting, original JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError
from ..sources import Passage, hotpotqa_passages


@dataclass(frozen=True)
class HotpotExample:
    id: str
    question: str
    answer: str
    passages: list[Passage]
    gold_titles: frozenset[str]  # titles of the supporting paragraphs
    type: str | None = None  # HotpotQA's question type: "bridge" or "comparison"

    @property
    def gold_passage_ids(self) -> list[str]:
        return [p.id for p in self.passages if p.title in self.gold_titles]


def parse_example(obj: dict[str, Any]) -> HotpotExample:
    try:
        gold = frozenset(str(t) for t, _ in obj.get("supporting_facts", []))
        return HotpotExample(
            id=str(obj.get("_id", obj.get("id", ""))),
            question=str(obj["question"]),
            answer=str(obj.get("answer", "")),
            passages=hotpotqa_passages(obj),
            gold_titles=gold,
            type=None if obj.get("type") is None else str(obj["type"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a HotpotQA example: {exc}") from exc


def load_hotpotqa(path: str | Path, n: int | None = None) -> list[HotpotExample]:
    """The first ``n`` examples (all if None) of a HotpotQA-format JSON file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"data file {str(path)!r} is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError(f"data file {str(path)!r} must hold a non-empty JSON list of HotpotQA examples")
    if n is not None:
        if n < 1:
            raise InputError(f"--n must be at least 1, got {n}")
        data = data[:n]
    return [parse_example(x) for x in data]


def load_slice(path: str | Path, n: int, offset: int = 0) -> list[HotpotExample]:
    """Examples ``offset`` .. ``offset + n - 1`` of a HotpotQA-format file (a benchmark's range)."""
    if offset < 0:
        raise InputError(f"offset must be >= 0, got {offset}")
    examples = load_hotpotqa(path, n + offset)[offset:]
    if not examples:
        raise InputError(f"no examples left after skipping the first {offset}")
    return examples


def parse_index_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``"200-239,400-585"`` (inclusive ends) as [start, stop) pairs; ``"none"``: none."""
    if text.strip().lower() in {"", "none"}:
        return ()
    out = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise InputError(f"{part.strip()!r} is not an example range like 200-239") from None
        if a < 0 or b < a:
            raise InputError(f"example range {part.strip()!r} is empty or negative")
        out.append((a, b + 1))
    return tuple(out)


def load_ranges(path: str | Path, ranges: Sequence[tuple[int, int]]) -> list[HotpotExample]:
    """The examples at the index ranges [start, stop) of a HotpotQA-format file, in order."""
    if not ranges:
        raise InputError("no example ranges given")
    stop = max(b for _, b in ranges)
    examples = load_hotpotqa(path, stop)
    wanted = sorted({i for a, b in ranges for i in range(a, b)})
    if wanted[-1] >= len(examples):
        raise InputError(f"example {wanted[-1]} is past the end of {str(path)!r} ({len(examples)} examples)")
    return [examples[i] for i in wanted]
