"""Gold evidence for the citation benchmark: HotpotQA supporting facts and NQ-open gold passages.

Both are handed over as a retriever would: HotpotQA's ten paragraphs ordered by MiniLM
similarity to the question; NQ-open's top 5 passages from a FAISS index (MiniLM,
inner product over normalised embeddings) of every distinct gold passage of the file's
first ``NQ_CORPUS_LINES`` lines (later lines are never read).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..methods.at2 import AT2
from ..sources import Passage, Source
from .hotpotqa import load_hotpotqa

NQ_CORPUS_LINES = 1000  # NQ-open lines 1000+ are never used
SUPPORT_RANKER = AT2.name  # the ranker whose top candidates cite-eval checks (records say so too)
NQ_TOP_K = 5


@dataclass(frozen=True)
class GoldFact:
    """A gold evidence span: a passage, and a character span of its text (whole text for
    passage-level gold)."""

    passage_id: str
    start: int
    end: int


@dataclass(frozen=True)
class CiteExample:
    id: str
    dataset: str
    question: str
    answers: tuple[str, ...]
    passages: list[Passage]  # in retriever order
    gold_passages: frozenset[str]
    gold_facts: tuple[GoldFact, ...]  # sentence-level gold (HotpotQA); empty for NQ
    type: str | None = None

    def gold_in_context(self) -> bool:
        return bool(self.gold_passages & {p.id for p in self.passages})

    def is_gold_source(self, source: Source) -> bool:
        """Whether a sentence source overlaps a gold fact by at least half of the shorter."""
        return any(_overlaps(source, f) for f in self.gold_facts)

    def fact_cited(self, fact: GoldFact, sources: Sequence[Source]) -> bool:
        return any(_overlaps(s, fact) for s in sources)


def _overlaps(source: Source, fact: GoldFact) -> bool:
    if source.passage_id != fact.passage_id:
        return False
    inter = min(source.end, fact.end) - max(source.start, fact.start)
    shorter = max(min(source.end - source.start, fact.end - fact.start), 1)
    return inter >= 0.5 * shorter


def _unit(embedder: Any, texts: Sequence[str]) -> np.ndarray:
    emb = np.asarray(embedder.encode(list(texts)), dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _fact_spans(sentences: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of HotpotQA's sentences in the passage text (joined, then stripped)."""
    joined = "".join(sentences)
    lead = len(joined) - len(joined.lstrip())
    spans, pos = [], 0
    for s in sentences:
        spans.append((max(pos - lead, 0), max(pos + len(s) - lead, 0)))
        pos += len(s)
    return spans


def load_hotpotqa_cite(path: str | Path, n: int, offset: int, embedder: Any) -> list[CiteExample]:
    """HotpotQA examples ``offset .. offset + n - 1`` with sentence-level gold facts."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))[offset : offset + n]
    parsed = load_hotpotqa(path, offset + n)[offset:]
    out = []
    for obj, ex in zip(raw, parsed):
        spans = {title: _fact_spans(sents) for title, sents in obj["context"]}
        facts = []
        for title, k in obj.get("supporting_facts", []):
            pid = next((p.id for p in ex.passages if p.title == title), None)
            if pid is not None and k < len(spans.get(title, [])):
                facts.append(GoldFact(pid, *spans[title][k]))
        q = _unit(embedder, [ex.question])[0]
        sims = _unit(embedder, [f"{p.title}\n{p.text}" for p in ex.passages]) @ q
        order = sorted(range(len(ex.passages)), key=lambda i: (-float(sims[i]), i))
        out.append(
            CiteExample(
                id=ex.id, dataset="hotpotqa", question=ex.question, answers=(ex.answer,),
                passages=[ex.passages[i] for i in order], gold_passages=frozenset(ex.gold_passage_ids),
                gold_facts=tuple(facts), type=ex.type,
            )
        )
    return out


def _nq_lines(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for k, line in enumerate(fh):
            if k >= NQ_CORPUS_LINES:
                break
            rows.append(json.loads(line))
    return rows


def load_nq_cite(path: str | Path, n: int, offset: int, embedder: Any) -> list[CiteExample]:
    """NQ-open lines ``offset .. offset + n - 1`` with the FAISS top 5 as their passages."""
    import faiss

    if offset + n > NQ_CORPUS_LINES:
        raise InputError(f"NQ-open lines from {NQ_CORPUS_LINES} on are never used: offset + n must be <= {NQ_CORPUS_LINES}")
    rows = _nq_lines(path)
    corpus: dict[tuple[str, str], int] = {}
    for row in rows:
        ctx = row["ctxs"][0]
        corpus.setdefault((str(ctx.get("title", "")), str(ctx["text"])), len(corpus))
    keys = list(corpus)
    index = faiss.IndexFlatIP(int(_unit(embedder, ["x"]).shape[1]))
    index.add(_unit(embedder, [f"{t}\n{x}" for t, x in keys]))
    out = []
    for k in range(offset, min(offset + n, len(rows))):
        row = rows[k]
        ctx = row["ctxs"][0]
        gold = corpus[(str(ctx.get("title", "")), str(ctx["text"]))]
        _, ids = index.search(_unit(embedder, [row["question"]]), NQ_TOP_K)
        passages = [Passage(id=f"d{int(i)}", text=keys[int(i)][1], title=keys[int(i)][0] or None) for i in ids[0]]
        out.append(
            CiteExample(
                id=f"nq{k}", dataset="nq", question=str(row["question"]), answers=tuple(map(str, row["answers"])),
                passages=passages, gold_passages=frozenset({f"d{gold}"}), gold_facts=(),
            )
        )
    return out


__all__ = ["CiteExample", "GoldFact", "load_hotpotqa_cite", "load_nq_cite"]
