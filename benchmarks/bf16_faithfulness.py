"""bf16 exact LOO against fp32 exact LOO, and the speedup, in one run (issue 13, item 3).

Phase 1 loads the model in float32: per example, greedy answer (the bench's 32 new
tokens) and exact ``loo`` (prefix-KV reuse, batching), timed. Phase 2 frees it, loads the
same model in bfloat16 and runs exact ``loo`` on the *same* answer token ids, timed.
Against the fp32 scores as ground truth (bench's metric functions): average precision
over the outlier positives, Spearman, max |difference|, top-1 agreement; speedup is fp32
LOO time / bf16 LOO time. One model in memory at a time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bf16_faithfulness.py --model smollm2-135m \\
        --data ../shared/data/hotpotqa/dev.json --n 10 --levels passage \\
        --out benchmarks/bf16-smollm2-135m-passage-dev0-9.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch
import transformers

from attribot_rag import Attributor
from attribot_rag.evaluation import metrics
from attribot_rag.evaluation.hotpotqa import load_slice
from attribot_rag.models import load_model
from attribot_rag.scoring import response_from_ids


def _loo(attributor: Attributor, ex, response, level: str) -> tuple[list[float], float]:
    task = attributor.task(ex.question, ex.passages, response, level=level)
    t0 = time.perf_counter()
    scores = attributor.run(task, method="loo").scores
    return [float(s) for s in scores], time.perf_counter() - t0


def fp32_phase(model: str, examples, levels, max_new_tokens: int) -> list[dict]:
    att = Attributor(load_model(model, dtype="float32"), max_new_tokens=max_new_tokens)
    rows = []
    for ex in examples:
        t0 = time.perf_counter()
        response = att.generate(ex.question, ex.passages)
        row = {"id": ex.id, "answer": response.text, "ids": list(response.token_ids),
               "generation_s": time.perf_counter() - t0, "levels": {}}
        for level in levels:
            scores, seconds = _loo(att, ex, response, level)
            row["levels"][level] = {"fp32": scores, "fp32_s": seconds}
        rows.append(row)
        print(f"fp32 {ex.id[:8]} {row['answer']!r}", flush=True)
    return rows


def bf16_phase(model: str, examples, rows, levels) -> str:
    lm = load_model(model, dtype="bfloat16")
    att = Attributor(lm)
    for ex, row in zip(examples, rows):
        response = response_from_ids(lm.tokenizer, row["ids"])
        for level in levels:
            scores, seconds = _loo(att, ex, response, level)
            row["levels"][level].update({"bf16": scores, "bf16_s": seconds})
        print(f"bf16 {ex.id[:8]} done", flush=True)
    return lm.metadata["dtype_reason"]


def compare(rows, level: str) -> dict:
    aps, rhos, diffs, top1, t32, t16 = [], [], [], [], 0.0, 0.0
    for row in rows:
        r = row["levels"][level]
        ref, low = np.array(r["fp32"]), np.array(r["bf16"])
        r["ap"] = metrics.average_precision(low, ref)
        r["spearman"] = metrics.spearman(low, ref)
        r["max_abs_diff"] = float(np.max(np.abs(low - ref)))
        r["same_top1"] = bool(np.argmax(low) == np.argmax(ref))
        aps.append(r["ap"]), rhos.append(r["spearman"]), diffs.append(r["max_abs_diff"])
        top1.append(r["same_top1"])
        t32, t16 = t32 + r["fp32_s"], t16 + r["bf16_s"]
    return {
        "map": metrics.nanmean(aps), "spearman": metrics.nanmean(rhos),
        "max_abs_diff": max(diffs), "mean_max_abs_diff": float(np.mean(diffs)),
        "max_abs_fp32_score": max(float(np.max(np.abs(row["levels"][level]["fp32"]))) for row in rows),
        "same_top1": float(np.mean(top1)),
        "fp32_loo_s_per_example": t32 / len(rows), "bf16_loo_s_per_example": t16 / len(rows),
        "speedup_bf16_vs_fp32": t32 / t16 if t16 > 0 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="HotpotQA dev file (never test.json)")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--levels", default="passage", help="comma-separated: passage,sentence")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if "test" in args.data.rsplit("/", 1)[-1]:
        raise SystemExit("bf16_faithfulness: use the dev split, never test.json")
    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    examples = load_slice(args.data, args.n, args.offset)
    started = time.time()
    rows = fp32_phase(args.model, examples, levels, args.max_new_tokens)
    gc.collect()
    reason = bf16_phase(args.model, examples, rows, levels)
    summary = {level: compare(rows, level) for level in levels}
    report = {
        "model": args.model, "data": args.data, "n": len(rows), "offset": args.offset,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1), "bf16_reason": reason,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "summary": summary, "examples": rows,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=2))


if __name__ == "__main__":
    main()
