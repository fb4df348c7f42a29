"""Replay citation policies on cite-eval's records of the choice split (no model runs).

cite-eval records every ranker's scores, the support check's log-probs for each checked
ranker's top candidates and the context gains, so any policy within what was checked can
be applied afterwards by the rule ``cite`` runs. This script applies a grid of policies to
the records a cite-eval run left in its cache (the examples recorded so far) and writes
one row per policy and answer mode: the numbers the policy defaults are chosen from.
``--choose GRID.json [GRID.json ...]`` ranks the policies by their quality (as
``calibrate`` measures it) averaged over the grids, one per dataset.
Run it on the choice split only (HotpotQA dev outside 200-239 and 400-585, NQ-open lines
0-499); the chosen policy is then reported once on the held-out records.

    python benchmarks/cite_policy_grid.py --dataset hotpotqa --data ../shared/data/hotpotqa/dev.json \\
        --offset 20 --n 100 --cache benchmarks/cite-eval-cache/qwen15-hotpotqa-choice \\
        --methods at2,at2:weights=FIRST,attention,similarity --support-candidates 5 \\
        --support-rankers at2,at2:weights=FIRST --json benchmarks/cite-policy-grid-hotpotqa.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from typing import Any

from attribot_rag.citations import Calibration, CitationPolicy
from attribot_rag.evaluation.cache import ResultsCache
from attribot_rag.evaluation.calibrate import mode_quality
from attribot_rag.evaluation.cite_eval import SupportPlan, cached_items, load_examples, record_base
from attribot_rag.evaluation.cite_report import STATS as STAT_FUNCS
from attribot_rag.evaluation.cite_report import Citer, answer_metrics

STATS = ("precision_sentence", "recall_sentence", "precision_passage", "recall_passage", "uncited_with_gold")


def grid(rankers: list[str], max_candidates: int, calibrations: dict[str, Calibration] | None = None) -> list[Citer]:
    """The policies tried: the default's fields, one at a time and crossed where they
    interact (candidates x kept per sentence x relative support x fallback gate)."""
    out = []
    for ranker, cands, keep, rel, gate, refs, joint in itertools.product(
        rankers, range(1, max_candidates + 1), (1, 2, 3, 4), (0.3, None), ("auto", None), (1, 2),
        (None, 0.0, 0.1, 0.25),
    ):
        if keep > cands or (joint is not None and cands < 2):
            continue
        policy = CitationPolicy(candidates=cands, max_per_sentence=keep, support_relative=rel,
                                min_context_gain=gate, references=refs, joint_gain=joint)
        name = f"{short(ranker)} c{cands} k{keep} rel{rel} gate{gate} refs{refs} joint{joint}"
        out.append(Citer(name, ranker, policy, (calibrations or {}).get(ranker)))
    for ranker in rankers:
        cal = (calibrations or {}).get(ranker)
        out.append(Citer(f"{short(ranker)} used", ranker, CitationPolicy(evidence="used"), cal))
        out.append(Citer(f"{short(ranker)} used nogate", ranker, CitationPolicy(evidence="used", min_context_gain=None), cal))
    return out


def short(ranker: str) -> str:
    return "at2-first" if "squad23" in ranker else ranker


def rows(items: list, citers: list[Citer], model: str) -> list[dict[str, Any]]:
    """Each policy's statistics per answer mode over the correct answers (no intervals:
    the grid is for choosing; the held-out report gives intervals)."""
    out = []
    for citer in citers:
        by: dict[str, list[dict[str, Any]]] = {}
        for ex, mode, rec in items:
            row = answer_metrics(citer, ex, mode, rec, model)
            if row["correct"]:
                by.setdefault(mode, []).append(row)
        for mode, rs in sorted(by.items()):
            out.append({"policy": citer.name, "mode": mode, "answers": len(rs), **{k: STAT_FUNCS[k](rs) for k in STATS}})
    return out


def quality(rows_of_policy: list[dict[str, Any]]) -> float:
    """The calibration's measure (``evaluation.calibrate.citation_quality``): the mean over
    answer modes of F1(precision, recall) - uncited share, sentence-level gold where the
    data has it."""
    out = []
    for r in rows_of_policy:
        level = "sentence" if r["precision_sentence"] is not None else "passage"
        out.append(mode_quality(r[f"precision_{level}"], r[f"recall_{level}"], r["uncited_with_gold"]))
    return sum(out) / len(out)


def choose(paths: list[str], top: int = 15) -> list[tuple[float, str]]:
    """Policies ranked by their quality averaged over the grids given (one per dataset)."""
    per: dict[str, list[float]] = {}
    for path in paths:
        by: dict[str, list[dict[str, Any]]] = {}
        for r in json.load(open(path, encoding="utf-8"))["rows"]:
            by.setdefault(r["policy"], []).append(r)
        for name, rs in by.items():
            per.setdefault(name, []).append(quality(rs))
    ranked = sorted(((sum(v) / len(v), k) for k, v in per.items() if len(v) == len(paths)), key=lambda t: -t[0])
    return ranked[:top]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--choose":
        for score, name in choose(argv[1:]):
            print(f"{score:.3f}  {name}")
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=["hotpotqa", "nq"])
    p.add_argument("--data", required=True)
    p.add_argument("--offset", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--methods", required=True)
    p.add_argument("--modes", default="own,external")
    p.add_argument("--support-candidates", type=int, default=3)
    p.add_argument("--support-rankers", default="at2")
    p.add_argument("--json", required=True)
    p.add_argument("--recorded-at2-tag", default=None, help="the cache tag of the AT2 set that shipped when the records were made")
    p.add_argument("--calibration", action="append", default=[], metavar="FILE",
                   help="a calibration per support ranker, in --support-rankers order (default: the shipped one)")
    args = p.parse_args(argv)
    if args.dataset == "hotpotqa" and not set(range(args.offset, args.offset + args.n)).isdisjoint(
        set(range(200, 240)) | set(range(400, 586))
    ):
        sys.exit("refused: HotpotQA dev 200-239 and 400-585 are held out; choose elsewhere")
    if args.dataset == "nq" and args.offset + args.n > 500:
        sys.exit("refused: NQ-open lines 500+ are for reporting; choose on 0-499")
    methods = args.methods.split(",")
    plan = SupportPlan(args.support_candidates, tuple(args.support_rankers.split(",")))
    examples = load_examples(args.dataset, args.data, args.n, args.offset)
    cache = ResultsCache(args.cache, cached_only=True)
    base = record_base(args.model, args.dtype, args.data, methods, plan, args.recorded_at2_tag)
    items, missing = cached_items(examples, cache, base, args.modes.split(","), methods)
    # every policy on the same answers: those whose pairs were recorded too
    items = [(ex, m, r) for ex, m, r in items if r.get("joint_lp") is not None]
    print(f"{len(items)} answers from {len({ex.id for ex, _, _ in items})} examples ({len(missing)} not recorded yet)")
    cals = {r: Calibration.load(f) for r, f in zip(plan.rankers, args.calibration)}
    citers = grid(list(plan.rankers), plan.candidates, cals)
    table = rows(items, citers, args.model)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump({"examples": sorted({ex.id for ex, _, _ in items}), "rows": table}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
