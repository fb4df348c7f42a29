"""The choice-split table of BENCHMARKS.md (Citations, how the default was chosen): a few
policies, each AT2 set with its own calibration (benchmarks/cite-calibrations/), on the
cite-eval records of the choice split. Prints Markdown rows: quality (as calibrate measures
it), then precision / recall / uncited per answer mode."""
import sys, json
sys.path.insert(0, "benchmarks")
from cite_policy_grid import rows, quality
from attribot_rag.citations import CitationPolicy, Calibration
from attribot_rag.evaluation.cache import ResultsCache
from attribot_rag.evaluation.cite_eval import SupportPlan, cached_items, load_examples, record_base
from attribot_rag.evaluation.cite_report import Citer
FIRST = "at2:weights=benchmarks/at2-train/qwen2.5-coder-1.5b-squad23.safetensors"
methods = ["at2", FIRST, "attention", "similarity"]; plan = SupportPlan(5, ("at2", FIRST))
loo = Calibration.load("benchmarks/cite-calibrations/qwen2.5-coder-1.5b-loo20.calibration.json")
first = Calibration.load("benchmarks/cite-calibrations/qwen2.5-coder-1.5b-squad23.calibration.json")
from dataclasses import replace
P = CitationPolicy()
citers = [
  Citer("previous default: c2, gate 0.05 (generic)", "at2", P, replace(loo, min_context_gain=0.05)),
  Citer("default: c2, fitted gate (none)", "at2", P, loo),
  Citer("c3, references 1", "at2", P.with_options(candidates=3, references=1), loo),
  Citer("c3, kept 3", "at2", P.with_options(candidates=3, max_per_sentence=3), loo),
  Citer("joint_gain 0.1", "at2", P.with_options(joint_gain=0.1), loo),
  Citer("first AT2 set, its calibration", FIRST, P, first),
  Citer("used: at2, fitted gate", "at2", CitationPolicy(evidence="used"), loo),
]
for ds, data, off, n, cache in [("hotpotqa", "../shared/data/hotpotqa/dev.json", 20, 100, "benchmarks/cite-eval-cache/qwen15-hotpotqa-choice"), ("nq", "../shared/data/nq_open/nq-open-oracle.jsonl.gz", 1, 120, "benchmarks/cite-eval-cache/qwen15-nq-choice")]:
    ex = load_examples(ds, data, n, off)
    items, _ = cached_items(ex, ResultsCache(cache, cached_only=True), record_base("qwen2.5-coder-1.5b", "bfloat16", data, methods, plan, "loo-dev0-19-2026-12-06"), ["own", "external"], methods)
    items = [t for t in items if t[2].get("joint_lp") is not None]
    lvl = "sentence" if ds == "hotpotqa" else "passage"
    print(f"\n{ds}: {len({e.id for e,_,_ in items})} examples")
    by = {}
    for r in rows(items, citers, "qwen2.5-coder-1.5b"): by.setdefault(r["policy"], []).append(r)
    for name, rs in by.items():
        cells = " | ".join(f"{r['mode']} ({r['answers']}): {r['precision_'+lvl]:.2f} / {r['recall_'+lvl]:.2f} / {r['uncited_with_gold']:.2f}" for r in rs)
        print(f"| {name} | {quality(rs):.3f} | {cells} |")
