"""Issue 17 item 5: what a pruned and cited query costs against a plain one, with the
library defaults (one answer length, method "auto", fusion "guarded").

Per HotpotQA dev question (the 10 paragraphs; a retriever's top 5 by all-MiniLM-L6-v2
question-paragraph similarity, embedded once per question and counted in both):

* plain: retrieve, generate the answer over the 5 passages;
* pruned + cited: retrieve, :func:`attribot_rag.filter_passages` with the filters'
  defaults and ``top_n=2`` (what the postprocessor / compressor run: draft, attribute),
  generate the answer over the kept passages, :func:`attribot_rag.cite` it against them
  (``method="auto"``, the integrations' citation default).

The two runs of a question alternate in one process, so machine load hits both alike.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/query_cost_ratio.py \
        --data ../shared/data/hotpotqa/dev.json --n 5 --out benchmarks/query-cost-ratio.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def retrieve(emb, question, passages, k=5):
    q = emb.encode([question], normalize_embeddings=True)
    p = emb.encode([f"{x.title}: {x.text}" for x in passages], normalize_embeddings=True)
    sims = p @ q[0]
    order = sorted(range(len(passages)), key=lambda i: (-sims[i], i))[:k]
    return [passages[i] for i in order], [float(sims[i]) for i in order]


def main() -> None:
    from attribot_rag import Attributor, cite, filter_passages
    from attribot_rag.embeddings import load_embedder
    from attribot_rag.evaluation.hotpotqa import load_slice
    from attribot_rag.integration import DEFAULT_METHOD
    from attribot_rag.models import get_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the HotpotQA dev file (e.g. ../shared/data/hotpotqa/dev.json)")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--top-n", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/query-cost-ratio.json")
    args = ap.parse_args()
    att = Attributor(get_model())
    emb = load_embedder()
    rows = []
    for ex in load_slice(args.data, args.n, args.offset):
        t0 = time.perf_counter()
        ps, _ = retrieve(emb, ex.question, ex.passages)
        plain = att.generate(ex.question, ps).text
        t1 = time.perf_counter()
        ps, sims = retrieve(emb, ex.question, ex.passages)
        result, _ = filter_passages(att, ex.question, ps, top_n=args.top_n, retrieval_scores=sims)
        t2 = time.perf_counter()
        answer = att.generate(ex.question, result.kept_passages)
        t3 = time.perf_counter()
        cited = cite(att, ex.question, result.kept_passages, answer, method=DEFAULT_METHOD)
        t4 = time.perf_counter()
        rows.append({
            "question": ex.question, "plain_answer": plain, "cited_answer": cited.text,
            "plain_s": t1 - t0, "filter_s": t2 - t1, "answer_s": t3 - t2, "cite_s": t4 - t3,
            "pruned_cited_s": t4 - t1, "filter_method": result.attribution.method, "cite_method": cited.method,
        })
        print(f"{rows[-1]['plain_s']:.1f}s vs {rows[-1]['pruned_cited_s']:.1f}s  {cited.text[:70]!r}", flush=True)
    plain_s = float(np.mean([r["plain_s"] for r in rows]))
    pruned_s = float(np.mean([r["pruned_cited_s"] for r in rows]))
    summary = {
        "examples": f"dev {args.offset}-{args.offset + args.n - 1}",
        "max_new_tokens": att.max_new_tokens,
        "plain_s": plain_s,
        "pruned_cited_s": pruned_s,
        "ratio": pruned_s / plain_s,
        "parts_s": {k: float(np.mean([r[k] for r in rows])) for k in ("filter_s", "answer_s", "cite_s")},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
