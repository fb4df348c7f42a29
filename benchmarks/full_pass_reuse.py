"""What reusing the generation's prompt KV cache saves, per method, in one run.

When the model that generated the answer also attributes it, the full-context pass every
LOO-based method starts from needs only the answer's tokens: generation's KV cache
already holds the prompt's keys and values (``AttributionTask.full_pass``). Per example
the model generates the answer once (its AT2 capture included); then every method runs
twice on that same response, once as the library does it and once with the reuse
switched off (the prompt runs again), in alternating order so that neither side always
runs first. Reported per method: seconds and forward tokens of both, their ratio, and
the largest score difference (0 up to float noise: the reuse is exact, not an
approximation).

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/full_pass_reuse.py --model qwen2.5-coder-1.5b \\
        --dtype bfloat16 --data ../shared/data/hotpotqa/dev.json --offset 240 --n 3 --level sentence \\
        --methods proxy-rescore:first_stage=at2:rescore=5,hierarchical --out benchmarks/full-pass-reuse-qwen15.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import numpy as np
import torch
import transformers

from attribot_rag import Attributor
from attribot_rag.evaluation.hotpotqa import load_slice
from attribot_rag.methods import base
from attribot_rag.methods.spec import MethodSpec
from attribot_rag.models import get_model


@contextmanager
def reuse_switched_off():
    original = base.generation_prompt_kv
    base.generation_prompt_kv = lambda *args: (None, "switched off by benchmarks/full_pass_reuse.py")
    try:
        yield
    finally:
        base.generation_prompt_kv = original


def timed_run(att: Attributor, ex, response, spec: MethodSpec, level: str) -> dict:
    task = att.task(ex.question, ex.passages, response, level=level)
    t0 = time.perf_counter()
    res = att.run(task, method=spec.create({}))
    return {
        "seconds": time.perf_counter() - t0,
        "tokens": int(res.forward_tokens),
        "scores": np.asarray(res.scores, dtype=np.float64),
        "full_pass": res.info.get("full_pass"),
    }


def compare(att: Attributor, ex, response, spec: MethodSpec, level: str, reused_first: bool) -> dict:
    runs = {}
    for reuse in ([True, False] if reused_first else [False, True]):
        if reuse:
            runs["reused"] = timed_run(att, ex, response, spec, level)
        else:
            with reuse_switched_off():
                runs["rerun"] = timed_run(att, ex, response, spec, level)
    both = ~np.isnan(runs["reused"]["scores"]) & ~np.isnan(runs["rerun"]["scores"])
    diff = np.abs(runs["reused"]["scores"] - runs["rerun"]["scores"])[both]
    return {
        side: {k: v for k, v in r.items() if k != "scores"} for side, r in runs.items()
    } | {
        "speedup": runs["rerun"]["seconds"] / runs["reused"]["seconds"],
        "max_abs_diff": float(diff.max()) if diff.size else None,
        "same_sources_scored": bool(np.array_equal(np.isnan(runs["reused"]["scores"]), np.isnan(runs["rerun"]["scores"]))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--data", required=True)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--level", default="sentence")
    ap.add_argument("--methods", default="loo,proxy-rescore:first_stage=at2:rescore=5,hierarchical")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    att = Attributor(get_model(args.model, dtype=args.dtype), level=args.level, max_new_tokens=args.max_new_tokens)
    specs = [MethodSpec.parse(m) for m in args.methods.split(",") if m.strip()]
    rows = []
    for i, ex in enumerate(load_slice(args.data, args.n, args.offset)):
        t0 = time.perf_counter()
        response = att.generate(ex.question, ex.passages)
        row = {"id": ex.id, "answer": response.text, "generation_s": time.perf_counter() - t0, "methods": {}}
        for j, spec in enumerate(specs):
            row["methods"][spec.label] = compare(att, ex, response, spec, args.level, reused_first=(i + j) % 2 == 0)
            m = row["methods"][spec.label]
            print(f"{ex.id[:8]} {spec.label}: {m['rerun']['seconds']:.1f} s -> {m['reused']['seconds']:.1f} s "
                  f"({m['speedup']:.2f}x), max diff {m['max_abs_diff']}", flush=True)
        rows.append(row)
        write(args, rows)


def write(args, rows) -> None:
    summary = {}
    for label in rows[0]["methods"]:
        ms = [r["methods"][label] for r in rows]
        rerun, reused = sum(m["rerun"]["seconds"] for m in ms), sum(m["reused"]["seconds"] for m in ms)
        summary[label] = {
            "rerun_s_per_example": rerun / len(ms),
            "reused_s_per_example": reused / len(ms),
            "speedup": rerun / reused,
            "tokens_saved_per_example": float(np.mean([m["rerun"]["tokens"] - m["reused"]["tokens"] for m in ms])),
            "max_abs_diff": max((m["max_abs_diff"] or 0.0) for m in ms),
        }
    out = {
        "command": vars(args),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "threads": torch.get_num_threads()},
        "n": len(rows),
        "generation_s_per_example": float(np.mean([r["generation_s"] for r in rows])),
        "summary": summary,
        "examples": rows,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
