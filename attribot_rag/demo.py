"""``attribot-rag demo``: offline RAG over the bundled handbook, with attribution.

Embeds the passages of ``examples/data/handbook.json`` (the employee handbook of a
fictional company, written for this project) with all-MiniLM-L6-v2, indexes them in FAISS,
retrieves the top passages for a few sample questions, answers with Qwen2.5-Coder-1.5B
(the smallest offline model here whose answers rest on the right passages; BENCHMARKS.md)
and prints each answer with its ranked sources. Methods that need a proxy get
Qwen2.5-Coder-0.5B, of the same family and tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from rich.console import Console

from .attributor import Attributor
from .index import PassageIndex, default_corpus_path
from .methods import METHODS
from .models import QUALITY_MODEL, QUALITY_PROXY, get_model
from .sources import Passage, coerce_passages

DEMO_MODEL, DEMO_PROXY = QUALITY_MODEL, QUALITY_PROXY

SAMPLE_QUESTIONS = [
    "What is the nightly hotel limit for international business travel?",
    "On what date do annual salary adjustments take effect?",
    "How quickly must the on-call engineer acknowledge a page?",
]


def load_corpus(path: str | Path | None = None) -> list[Passage]:
    path = Path(path) if path else default_corpus_path()
    return coerce_passages(json.loads(path.read_text(encoding="utf-8")))


def run_demo(
    model=DEMO_MODEL,
    method: str = "loo",
    proxy_model=DEMO_PROXY,
    k: int = 4,
    questions: Sequence[str] | None = None,
    console: Console | None = None,
    dtype=None,
) -> list:
    console = console or Console()
    passages = load_corpus()
    retriever = PassageIndex.build(passages)
    attributor = Attributor(model, method=method, level="passage", dtype=dtype)
    options = {}
    if method in METHODS and METHODS[method].needs_proxy({}):
        options["proxy"] = get_model(proxy_model, dtype=dtype) if isinstance(proxy_model, str) else proxy_model
    meta = attributor.lm.metadata
    console.print(
        f"[bold]attribot-rag demo[/bold]: {len(passages)} handbook passages, "
        f"FAISS + all-MiniLM-L6-v2, model {attributor.model_name} "
        f"in {meta.get('dtype')} ({meta.get('dtype_reason')})"
    )
    results = []
    for question in questions or SAMPLE_QUESTIONS:
        hits = retriever.search(question, k)
        retrieved = [p for p, _ in hits]
        result = attributor.attribute(question, retrieved, **options)
        results.append(result)
        console.rule(question)
        console.print("[bold]Retrieved[/bold] (by embedding similarity): " + ", ".join(f"{p.id} ({s:.2f})" for p, s in hits))
        console.print(f"[bold]Answer:[/bold] {result.answer.strip()}")
        console.print(result.table())
        t = result.timings
        console.print(f"generation {t['generation_s']:.1f}s, attribution {t['attribution_s']:.1f}s ({method})")
    return results
