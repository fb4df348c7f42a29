"""``attribot-rag demo``: offline RAG over the bundled handbook, with attribution.

Embeds the passages of ``examples/data/handbook.json`` (the employee handbook of a
fictional company, written for this project) with all-MiniLM-L6-v2, indexes them in FAISS,
retrieves the top passages for a few sample questions, answers with the default model and
prints each answer with its ranked sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from rich.console import Console

from .attributor import Attributor
from .errors import InputError
from .models import DEFAULT_MODEL
from .sources import Passage, coerce_passages

SAMPLE_QUESTIONS = [
    "What is the nightly hotel limit for international business travel?",
    "On what date do annual salary adjustments take effect?",
    "How quickly must the on-call engineer acknowledge a page?",
]


def corpus_path() -> Path:
    here = Path(__file__).resolve().parent.parent / "examples" / "data" / "handbook.json"
    if not here.exists():
        raise InputError(
            f"the demo corpus {here} is missing: run the demo from a checkout of attribot-rag"
        )
    return here


def load_corpus(path: str | Path | None = None) -> list[Passage]:
    path = Path(path) if path else corpus_path()
    return coerce_passages(json.loads(path.read_text(encoding="utf-8")))


class FaissRetriever:
    """Cosine-similarity retrieval over passages with a flat FAISS inner-product index."""

    def __init__(self, passages: Sequence[Passage], embedder=None) -> None:
        import faiss

        from .embeddings import load_embedder

        self.passages = list(passages)
        self.embedder = embedder or load_embedder()
        texts = [f"{p.title}. {p.text}" if p.title else p.text for p in self.passages]
        vectors = self.embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors.astype("float32"))

    def retrieve(self, query: str, k: int = 4) -> list[tuple[Passage, float]]:
        q = self.embedder.encode([query], normalize_embeddings=True, convert_to_numpy=True)
        scores, idx = self.index.search(q.astype("float32"), min(k, len(self.passages)))
        return [(self.passages[i], float(s)) for s, i in zip(scores[0], idx[0]) if i >= 0]


def run_demo(
    model=DEFAULT_MODEL,
    method: str = "loo",
    k: int = 4,
    questions: Sequence[str] | None = None,
    console: Console | None = None,
    dtype=None,
) -> list:
    console = console or Console()
    passages = load_corpus()
    retriever = FaissRetriever(passages)
    attributor = Attributor(model, method=method, level="passage", max_new_tokens=48, dtype=dtype)
    meta = attributor.lm.metadata
    console.print(
        f"[bold]attribot-rag demo[/bold]: {len(passages)} handbook passages, "
        f"FAISS + all-MiniLM-L6-v2, model {attributor.model_name} "
        f"in {meta.get('dtype')} ({meta.get('dtype_reason')})"
    )
    results = []
    for question in questions or SAMPLE_QUESTIONS:
        hits = retriever.retrieve(question, k)
        retrieved = [p for p, _ in hits]
        result = attributor.attribute(question, retrieved)
        results.append(result)
        console.rule(question)
        console.print("[bold]Retrieved[/bold] (by embedding similarity): " + ", ".join(f"{p.id} ({s:.2f})" for p, s in hits))
        console.print(f"[bold]Answer:[/bold] {result.answer.strip()}")
        console.print(result.table())
        t = result.timings
        console.print(f"generation {t['generation_s']:.1f}s, attribution {t['attribution_s']:.1f}s ({method})")
    return results
