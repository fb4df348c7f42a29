"""One ranking before and after a change, on the same prune-eval examples (issue 34).

The AT2 weights of the 1.5B were refitted after the 200-example test run; the rankings of
the new weights were computed into a new cache while the answers of every kept set already
answered were read from the old ones. This pairs two (merged) prune-eval reports by
example id and reports, per k, the ranking's F1 before and after with the paired
difference and its bootstrap interval (one set of resampled examples for every
statistic), the after ranking against the baseline, and how many examples kept a
different set of paragraphs.

    python benchmarks/prune_eval_compare.py --before benchmarks/prune-eval-test-qwen15-merged.json \
        --after benchmarks/prune-eval-test-qwen15-at2-loo20-merged.json --method at2 \
        --json OUT.json --markdown OUT.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attribot_rag.evaluation import qa_metrics
from prune_eval_merge import write_outputs  # the scripts sit side by side in benchmarks/

def paired_examples(before: dict[str, Any], after: dict[str, Any], method: str) -> list[tuple[dict, dict]]:
    """(before, after) records of the examples both reports ranked with ``method``."""
    old = {r["id"]: r for r in before["examples"] if method in r["methods"]}
    pairs = [(old[r["id"]], r) for r in after["examples"] if method in r["methods"] and r["id"] in old]
    if not pairs:
        raise SystemExit(f"no example has {method!r} in both reports")
    return pairs


def compare(pairs: list[tuple[dict, dict]], method: str, ks: list[int], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    idx = qa_metrics.bootstrap_indices(len(pairs), n_boot, seed)
    baseline = [a["baseline"]["f1"] for _, a in pairs]
    rows = []
    for k in ks:
        f1_before = [b["methods"][method]["k"][str(k)]["f1"] for b, _ in pairs]
        f1_after = [a["methods"][method]["k"][str(k)]["f1"] for _, a in pairs]
        kept_before = [b["methods"][method]["k"][str(k)]["keep"] for b, _ in pairs]
        kept_after = [a["methods"][method]["k"][str(k)]["keep"] for _, a in pairs]
        rows.append({
            "k": k,
            "before": qa_metrics.mean_ci(f1_before, idx),
            "after": qa_metrics.mean_ci(f1_after, idx),
            "after_minus_before": qa_metrics.mean_ci([y - x for x, y in zip(f1_before, f1_after)], idx),
            "after_minus_baseline": qa_metrics.mean_ci([y - x for x, y in zip(baseline, f1_after)], idx),
            "gold_recall_before": sum(b["methods"][method]["k"][str(k)]["gold_recall"] for b, _ in pairs) / len(pairs),
            "gold_recall_after": sum(a["methods"][method]["k"][str(k)]["gold_recall"] for _, a in pairs) / len(pairs),
            "kept_set_changed": sum(sorted(x) != sorted(y) for x, y in zip(kept_before, kept_after)),
        })
    return {"method": method, "n": len(pairs), "baseline_f1": qa_metrics.mean_ci(baseline, idx), "rows": rows}


def _ci(stat: dict[str, Any]) -> str:
    lo, hi = stat["ci95"]
    return f"{stat['mean']:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"`{report['method']}` before and after, n = {report['n']} paired examples; "
             f"baseline (all paragraphs) F1 {_ci(report['baseline_f1'])}.", "",
             "| k | F1 before | F1 after | after - before | after - baseline | gold recall before / after | kept set changed |",
             "|---|---|---|---|---|---|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['k']} | {_ci(r['before'])} | {_ci(r['after'])} | {_ci(r['after_minus_before'])} | "
                     f"{_ci(r['after_minus_baseline'])} | {r['gold_recall_before']:.3f} / {r['gold_recall_after']:.3f} | "
                     f"{r['kept_set_changed']} of {report['n']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="prune-eval (or merged) report with the old ranking")
    ap.add_argument("--after", required=True, help="prune-eval (or merged) report with the new ranking")
    ap.add_argument("--method", default="at2", help="the ranking to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the comparison here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args()
    before = json.loads(Path(args.before).read_text(encoding="utf-8"))
    after = json.loads(Path(args.after).read_text(encoding="utf-8"))
    ks = [int(k) for k in after["options"]["ks"]]
    n_boot = int(after["options"].get("n_boot", 2000))
    report = compare(paired_examples(before, after, args.method), args.method, ks, n_boot, args.seed)
    write_outputs(report, markdown(report), args.json, args.markdown)


if __name__ == "__main__":
    main()
