"""Choosing the adaptive rescoring rule offline, from bench caches (no model runs).

AT2-first rescoring returns exact LOO for the sources it rescores, so any stopping rule
can be replayed on cached results: a bench cache that holds both ``at2`` and exact
``loo`` sentence scores for an example says what each rule would rescore and what
mAP against exact LOO it would reach. The rules replayed here are the ones
``proxy-rescore`` implements (``stop_ratio``, ``stop_coverage``, fixed ``rescore``),
each with the first-stage-ranked tail (``tail=first_stage``) and without it.

    python benchmarks/rescore_rules.py --cache benchmarks/bench-cache/qwen15-sentence-bf16-a \
        benchmarks/bench-cache/qwen15-sentence-bf16-b benchmarks/bench-cache/qwen15-sentence-bf16-c0 \
        benchmarks/bench-cache/qwen15-sentence-bf16-c1 --model qwen2.5-coder-1.5b

``--gains FILE`` (JSON: example id -> {"gain": LL(full) - LL(no passages)}) adds the
coverage rule, which needs each answer's context gain. Use it on the choice split only
(HotpotQA dev outside 200-239 and 400-585); the chosen rule is then measured live on
held-out dev with ``attribot-rag bench``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from attribot_rag.evaluation.metrics import average_precision
from attribot_rag.methods.proxy import within_ratio


def cached_scores(caches: list[str], model: str, at2_weights: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """example id -> {"at2": scores, "loo": scores} for the examples that have both; AT2's
    with the weights whose cache tag is ``at2_weights`` (None: the untagged first set)."""
    by: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for folder in caches:
        for line in (Path(folder) / "results.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            desc = rec["desc"]
            if desc.get("kind") != "method" or desc.get("options") or desc.get("model") != model:
                continue
            if desc.get("method") == "at2" and desc.get("at2_weights") != at2_weights:
                continue
            if desc.get("level") == "sentence" and desc["method"] in ("at2", "loo"):
                by[desc["example"]][desc["method"]] = np.asarray(rec["value"]["scores"], dtype=np.float64)
    return {e: v for e, v in by.items() if {"at2", "loo"} <= v.keys()}


def replay(first: np.ndarray, exact: np.ndarray, count, tail: bool) -> tuple[float, int]:
    """AP against exact LOO and the number rescored, for a rule ``count(first, exact, order)``."""
    order = list(np.argsort(-first, kind="stable"))
    k = count(first, exact, order)
    if k == 0:  # the first stage alone
        return average_precision(first, exact), 0
    scores = np.full(len(first), np.nan)
    scores[order[:k]] = exact[order[:k]]
    if tail:
        floor = min(0.0, float(np.min(exact[order[:k]]))) if k else 0.0
        rest = order[k:]
        scores[rest] = floor - 1.0 - np.arange(len(rest)) / max(1, len(rest))
    return average_precision(scores, exact), k


def fixed(cap: int):
    return lambda first, exact, order: min(cap, len(order))


def ratio(r: float, cap: int):
    return lambda first, exact, order: len(within_ratio(first, order[:cap], r))


def coverage(f: float, cap: int, gain: float):
    def count(first, exact, order):
        found = 0.0
        for k, i in enumerate(order[:cap], start=1):
            found += max(0.0, exact[i])
            if gain <= 0 or found >= f * gain:
                return k
        return min(cap, len(order))
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", nargs="+", required=True, help="bench cache folders")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--gains", help="JSON of context gains per example (adds the coverage rule)")
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--at2-weights", default=None, help="the AT2 weights' cache tag (default: the first, untagged set)")
    args = parser.parse_args()
    data = cached_scores(args.cache, args.model, args.at2_weights)
    gains = json.loads(Path(args.gains).read_text()) if args.gains else {}
    rules: dict[str, object] = {"at2 alone": fixed(0)}
    for cap in (3, 5, 8):
        rules[f"rescore={cap}"] = fixed(cap)
        for r in (0.3, 0.5, 0.7):
            rules[f"stop_ratio={r}:rescore={cap}"] = ratio(r, cap)
    rows = []
    for name, rule in rules.items():
        for tail in (False, True):
            res = [replay(v["at2"], v["loo"], rule, tail) for v in data.values()]
            rows.append({"rule": name, "tail": "first_stage" if tail else "none", "n": len(res),
                         "map": float(np.nanmean([a for a, _ in res])), "rescored": float(np.mean([k for _, k in res]))})
    for cap in (5, 8, 12):
        for f in (0.5, 0.75, 1.0):
            ids = [e for e in data if e in gains]
            if not ids:
                continue
            res = [replay(data[e]["at2"], data[e]["loo"], coverage(f, cap, gains[e]["gain"]), True) for e in ids]
            rows.append({"rule": f"stop_coverage={f}:rescore={cap}", "tail": "first_stage", "n": len(res),
                         "map": float(np.nanmean([a for a, _ in res])), "rescored": float(np.mean([k for _, k in res]))})
    print(f"{len(data)} examples with cached at2 and exact loo scores ({args.model})")
    print("| rule | tail | n | mAP vs exact | sources rescored |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rule']} | {r['tail']} | {r['n']} | {r['map']:.3f} | {r['rescored']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
