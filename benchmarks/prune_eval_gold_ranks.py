"""Where the gold paragraphs rank, and what the model does with them (issue 14).

Reads a prune-eval (or prune_eval_merge) ``--json`` report and prints, per ranking and k:
how often the kept paragraphs hold *both* gold paragraphs, F1 on those examples and on
the others, and the baseline's F1 on the same two groups; plus the mean rank (1 = kept
first) of each example's better- and worse-ranked gold paragraph. It separates the two
reasons pruning can fail to beat the baseline: the ranking drops a gold paragraph, or the
model answers no better from the gold paragraphs than from all of them.

    python benchmarks/prune_eval_gold_ranks.py benchmarks/prune-eval-test-qwen15-merged.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def gold_ranks(scores: list[float | None], gold: list[int]) -> list[int]:
    """1-based ranks of the gold paragraphs under ``scores`` (higher first, ties by index,
    unscored last), best first."""
    vals = np.array([-np.inf if s is None else float(s) for s in scores])
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))
    rank = {p: r + 1 for r, p in enumerate(order)}
    return sorted(rank[g] for g in gold)


def mean(a: np.ndarray) -> str:
    return f"{a.mean():.3f}" if len(a) else "-"


def rows(examples: list[dict], method: str, ks: list[int]) -> list[str]:
    have = [e for e in examples if method in e["methods"] and len(e["gold"]) == 2]
    ranks = np.array([gold_ranks(e["methods"][method]["scores"], e["gold"]) for e in have])
    out = [f"{method} (n = {len(have)}): mean rank of the better gold paragraph {ranks[:, 0].mean():.2f}, "
           f"of the other {ranks[:, 1].mean():.2f}"]
    for k in ks:
        both = [e["methods"][method]["k"][str(k)]["gold_recall"] == 1.0 for e in have]
        f1 = np.array([e["methods"][method]["k"][str(k)]["f1"] for e in have])
        base = np.array([e["baseline"]["f1"] for e in have])
        mask = np.array(both)
        out.append(f"  k={k}: both gold kept {mask.mean():.2f}; F1 there {mean(f1[mask])} (baseline {mean(base[mask])}), "
                   f"elsewhere {mean(f1[~mask])} (baseline {mean(base[~mask])})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="a prune-eval or prune_eval_merge --json report")
    args = ap.parse_args()
    rep = json.loads(Path(args.report).read_text(encoding="utf-8"))
    examples = rep["examples"]
    ks = rep["options"]["ks"]
    oracle = np.array([e["oracle"]["f1"] for e in examples])
    base = np.array([e["baseline"]["f1"] for e in examples])
    print(f"{len(examples)} examples: baseline F1 {base.mean():.3f}, oracle {oracle.mean():.3f}; "
          f"oracle worse than baseline on {(oracle < base).mean():.2f}, better on {(oracle > base).mean():.2f}")
    methods = list(dict.fromkeys(m for e in examples for m in e["methods"]))
    for m in methods:
        print("\n".join(rows(examples, m, ks)))


if __name__ == "__main__":
    main()
