"""Bridges and verdicts on the choice split: the default policy with and without them,
and the settings around the chosen ones, replayed on cite-eval's records (no model runs;
the relevance to the question is computed from the examples). Prints Markdown rows:
quality (as ``calibrate`` measures it), then precision / recall / uncited per answer mode
(sentence level on HotpotQA, passage level on NQ), correct answers only.

    python benchmarks/cite_bridge_choice.py [--hotpotqa-n 100] [--nq-n 120] [--grid]

``--grid`` prints instead the quality of every (bridge_relevance, bridge_candidates) pair,
averaged over the two datasets: what the defaults were chosen from. The third dataset,
"verdicts", is every yes/no question of the HotpotQA dev ranges choices are made on
(``benchmarks/hotpotqa_verdicts.py``); ``verdict_relevance`` was chosen on it.
"""

from __future__ import annotations

import argparse
import sys

sys.path.insert(0, "benchmarks")
from cite_policy_grid import quality, rows  # noqa: E402

from attribot_rag.citations import CitationPolicy  # noqa: E402
from attribot_rag.evaluation.cache import ResultsCache  # noqa: E402
from attribot_rag.evaluation.cite_eval import SupportPlan, cached_items, load_examples, record_base  # noqa: E402
from attribot_rag.evaluation.cite_report import Citer  # noqa: E402

MODEL = "qwen2.5-coder-1.5b"
FIRST = "at2:weights=benchmarks/at2-train/qwen2.5-coder-1.5b-squad23.safetensors"
METHODS = ["at2", FIRST, "attention", "similarity"]
PLAN = SupportPlan(5, ("at2", FIRST))
SPLITS = {  # the choice split: HotpotQA dev from 20 (not 200-239, 400-585), NQ-open lines from 1
    "hotpotqa": ("../shared/data/hotpotqa/dev.json", 20, "benchmarks/cite-eval-cache/qwen15-hotpotqa-choice"),
    "nq": ("../shared/data/nq_open/nq-open-oracle.jsonl.gz", 1, "benchmarks/cite-eval-cache/qwen15-nq-choice"),
    "verdicts": ("benchmarks/data/hotpotqa-dev-choice-verdicts.json", 0,
                 "benchmarks/cite-eval-cache/qwen15-hotpotqa-choice-verdicts"),
    # the other dev range choices may be made on (recorded from 2026-12-07, afternoon)
    "hotpotqa-240": ("../shared/data/hotpotqa/dev.json", 240, "benchmarks/cite-eval-cache/qwen15-hotpotqa-choice-240"),
}
DATASET = {"hotpotqa": "hotpotqa", "nq": "nq", "verdicts": "hotpotqa", "hotpotqa-240": "hotpotqa"}


def citers() -> list[Citer]:
    p = CitationPolicy()
    out = [Citer("default", "at2", p), Citer("no bridges", "at2", p.with_options(bridge_relevance=None))]
    out += [Citer(f"bridge_relevance {t}", "at2", p.with_options(bridge_relevance=t)) for t in (0.05, 0.1, 0.15, 0.25, 0.3)]
    out += [Citer(f"bridge_candidates {k}", "at2", p.with_options(bridge_candidates=k)) for k in (2, 4, 5)]
    out += [Citer("3 kept", "at2", p.with_options(max_per_sentence=3))]
    out += [Citer("verdicts cited like any sentence", "at2", p.with_options(verdict_relevance=None))]
    out += [Citer(f"verdict_relevance {t}", "at2", p.with_options(verdict_relevance=t)) for t in (0.05, 0.15, 0.2, 0.3)]
    out += [Citer("answer_relative_threshold 0.2", "at2", p.with_options(answer_relative_threshold=0.2)),
            Citer("answer_relative_threshold 0.3", "at2", p.with_options(answer_relative_threshold=0.3)),
            Citer("used", "at2", CitationPolicy(evidence="used")),
            Citer("used, answer_relative_threshold 0.1", "at2", CitationPolicy(evidence="used", answer_relative_threshold=0.1)),
            Citer("used, answer_relative_threshold 0.3", "at2", CitationPolicy(evidence="used", answer_relative_threshold=0.3)),
            Citer("references 2", "at2", p.with_options(references=2)),
            Citer("2 candidates", "at2", p.with_options(candidates=2)),
            Citer("2 candidates, references 2", "at2", p.with_options(candidates=2, references=2)),
            Citer("2 candidates, references 2, no bridges (the previous default)", "at2",
                  p.with_options(candidates=2, references=2, bridge_relevance=None))]
    return out


def grid() -> list[Citer]:
    p = CitationPolicy()
    return [Citer(f"bridge_relevance {t}, bridge_candidates {k}", "at2", p.with_options(bridge_relevance=t, bridge_candidates=k))
            for t in (0.1, 0.15, 0.2, 0.25, 0.3) for k in (2, 3, 4, 5, 6)]


LAST_CHOICE = {"hotpotqa": 199, "nq": 499, "verdicts": 13, "hotpotqa-240": 399}  # HotpotQA dev 200-239 and NQ-open 500+ are held out


def records(ds: str, n: int) -> list:
    data, offset, cache = SPLITS[ds]
    if offset + n - 1 > LAST_CHOICE[ds]:
        sys.exit(f"refused: {ds} beyond {LAST_CHOICE[ds]} is held out; choose on the choice split only")
    examples = load_examples(DATASET[ds], data, n, offset)
    base = record_base(MODEL, "bfloat16", data, METHODS, PLAN, "loo-dev0-19-2026-12-06")
    items, _ = cached_items(examples, ResultsCache(cache, cached_only=True), base, ["own", "external"], METHODS)
    return items


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hotpotqa-n", type=int, default=100)  # dev 20-119
    ap.add_argument("--nq-n", type=int, default=120)
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args()
    per: dict[str, list[float]] = {}
    for ds, n in (("hotpotqa", args.hotpotqa_n), ("nq", args.nq_n), ("verdicts", 14)):
        items = records(ds, n)
        level = "sentence" if DATASET[ds] == "hotpotqa" else "passage"
        print(f"\n{ds}: {len({e.id for e, _, _ in items})} examples")
        by: dict[str, list] = {}
        for r in rows(items, grid() if args.grid else citers(), MODEL):
            by.setdefault(r["policy"], []).append(r)
        if args.grid:
            for name, rs in by.items():
                per.setdefault(name, []).append(quality(rs))
            continue
        for name, rs in by.items():
            cells = " | ".join(
                f"{r['mode']} ({r['answers']}): " + " / ".join(_num(r[k]) for k in (f"precision_{level}", f"recall_{level}", "uncited_with_gold"))
                for r in rs
            )
            print(f"| {name} | {quality(rs):.3f} | {cells} |")
    for name, qs in sorted(per.items(), key=lambda t: -sum(t[1])):
        print(f"{sum(qs) / len(qs):.3f}  {name}  ({', '.join(f'{q:.3f}' for q in qs)})")


if __name__ == "__main__":
    main()
