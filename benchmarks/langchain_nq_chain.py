"""NQ-open answers written by another LLM, cited through the LangChain chain, end to end.

The chain is the README's: a FAISS vector store (MiniLM, normalised) over every distinct
gold passage of NQ-open lines 0-999 as LangChain ``Document``s, its retriever's top 5
(optionally an ``AttribotRetriever`` with ``top_n`` in front), an answer step standing in
for an external LLM (cite-eval's ``external`` template "The answer is {gold}.", or with
``--template external2`` its second one), and
``AttribotCitations`` with every default (the default model, method and policy). Per
question it records the retrieved documents, whether the gold passage is among them and
which documents were cited; the report gives, over the questions whose gold passage was
retrieved, the share that cite it, the share left uncited, and the share whose first
retrieved document is the gold one (the cite-the-first-retrieved baseline).

Records go to a JSON-lines file as each question finishes, so a run resumes.

    OMP_NUM_THREADS=1 python benchmarks/langchain_nq_chain.py --data ../shared/data/nq_open/nq-open-oracle.jsonl.gz \\
        --offset 500 --n 40 --out benchmarks/langchain-nq-chain/nq-500.jsonl [--top-n 2] [--template external2]
"""

from __future__ import annotations

import argparse
import json
import time
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

CORPUS_LINES = 1000  # NQ-open lines 1000+ are never read


def corpus_documents(rows: list[dict[str, Any]]) -> tuple[list[Any], dict[int, str]]:
    """Every distinct gold passage as a Document (id ``d<k>``), and each line's gold id."""
    from langchain_core.documents import Document

    ids: dict[tuple[str, str], str] = {}
    gold = {}
    for k, row in enumerate(rows):
        ctx = row["ctxs"][0]
        key = (str(ctx.get("title", "")), str(ctx["text"]))
        gold[k] = ids.setdefault(key, f"d{len(ids)}")
    docs = [Document(page_content=text, id=i, metadata={"title": title}) for (title, text), i in ids.items()]
    return docs, gold


def build_chain(docs: list[Any], top_n: int | None, template: str) -> Any:
    from langchain_community.vectorstores import FAISS
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough
    from langchain_huggingface import HuggingFaceEmbeddings

    from attribot_rag.embeddings import minilm_path
    from langchain_attribot import AttribotCitations, AttribotCompressor, AttribotRetriever

    embeddings = HuggingFaceEmbeddings(model_name=str(minilm_path()), encode_kwargs={"normalize_embeddings": True})
    retriever = FAISS.from_documents(docs, embeddings).as_retriever(search_kwargs={"k": 5})
    citations = AttribotCitations()  # every default: the default model, method and policy
    if top_n is not None:
        retriever = AttribotRetriever(base_retriever=retriever,
                                      compressor=AttribotCompressor(attributor=citations.attributor, top_n=top_n))
    external_llm = RunnableLambda(lambda x: template.format(answer=x["gold_answer"]))
    return (
        RunnablePassthrough.assign(context=itemgetter("question") | retriever).assign(answer=external_llm)
        | citations
    )


def record(chain: Any, k: int, row: dict[str, Any], gold_id: str, template: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = chain.invoke({"question": row["question"], "gold_answer": str(row["answers"][0])})
    context = [d.id for d in out["context"]]
    cited = sorted({str(c["source_id"]).split("#")[0] for c in out["citations"]})
    return {
        "line": k, "template": template, "question": row["question"], "answer": out["answer"], "gold": gold_id, "context": context,
        "gold_in_context": gold_id in context, "first_is_gold": bool(context) and context[0] == gold_id,
        "cited": cited, "gold_cited": gold_id in cited, "uncited": not out["citations"],
        "cited_answer": out["cited_answer"], "seconds": time.perf_counter() - t0,
    }


def summary(records: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Over the questions whose gold passage was retrieved: shares with bootstrap 95% intervals."""
    rows = [r for r in records if r["gold_in_context"]]
    out: dict[str, Any] = {"questions": len(records), "gold_in_context": len(rows)}
    rng = np.random.default_rng(seed)
    for name in ("gold_cited", "first_is_gold", "uncited"):
        vals = np.array([float(r[name]) for r in rows])
        if not len(vals):
            continue
        boots = [vals[rng.integers(0, len(vals), len(vals))].mean() for _ in range(1000)]
        out[name] = {"value": float(vals.mean()), "ci": np.percentile(boots, [2.5, 97.5]).tolist()}
    out["seconds_median"] = float(np.median([r["seconds"] for r in records])) if records else None
    return out


def main(argv: list[str] | None = None) -> int:
    from attribot_rag.evaluation.cite_data import _nq_lines
    from attribot_rag.evaluation.cite_eval import TEMPLATES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="NQ-open oracle JSONL(.gz)")
    p.add_argument("--offset", type=int, default=500)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--top-n", type=int, default=None, help="an AttribotRetriever keeping this many in front")
    p.add_argument("--template", choices=sorted(TEMPLATES), default="external",
                   help="how the stand-in external LLM phrases the gold answer (cite-eval's templates)")
    p.add_argument("--out", required=True, help="per-question records (JSON lines; a rerun resumes)")
    p.add_argument("--summary", action="store_true", help="report the records in --out, computing nothing")
    args = p.parse_args(argv)
    if args.offset + args.n > CORPUS_LINES:
        raise SystemExit(f"NQ-open lines from {CORPUS_LINES} on are never used")
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    mixed = sorted({r.get("template", "external") for r in done} - {args.template})  # older records: the first template
    if mixed:
        raise SystemExit(f"{out} holds answers phrased by template {', '.join(mixed)}: resume it with that --template")
    wanted = range(args.offset, args.offset + args.n)
    if not args.summary:
        rows = _nq_lines(args.data)[:CORPUS_LINES]
        docs, gold = corpus_documents(rows)
        chain = build_chain(docs, args.top_n, TEMPLATES[args.template])
        out.parent.mkdir(parents=True, exist_ok=True)
        have = {r["line"] for r in done}
        for k in wanted:
            if k in have:
                continue
            rec = record(chain, k, rows[k], gold[k], args.template)
            done.append(rec)
            with out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"line {k}: gold {'cited' if rec['gold_cited'] else 'not cited'}, {rec['seconds']:.1f} s", flush=True)
    print(json.dumps(summary([r for r in done if r["line"] in wanted]), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
