"""Batch attribution throughput on HotpotQA dev: records per minute with 1 and 2 Ray
workers, in one run (one local Ray cluster, the same records for both).

    OMP_NUM_THREADS=1 python benchmarks/batch_throughput.py --n 50 --workers 2,1

Writes the records to OUT/input.jsonl and each run's output to OUT/workers-N.jsonl.
Never reads hotpotqa/test.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_records(data: Path, n: int, out: Path) -> int:
    """The first n HotpotQA examples as batch records {id, question, passages} (no answer:
    the model answers, as it would when logging its own answers)."""
    from attribot_rag.sources import hotpotqa_passages

    if data.name == "test.json":
        raise SystemExit("use the dev split: hotpotqa/test.json is held out")
    examples = json.loads(data.read_text(encoding="utf-8"))[:n]
    with out.open("w", encoding="utf-8") as fh:
        for ex in examples:
            passages = [p.to_dict() for p in hotpotqa_passages(ex)]
            fh.write(json.dumps({"id": ex["_id"], "question": ex["question"], "passages": passages}) + "\n")
    return len(examples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/hotpotqa/dev.json")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--method", default="at2")
    parser.add_argument("--model", default=None, help="default: the package's default model")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/batch-hotpotqa")
    args = parser.parse_args()

    import ray

    from attribot_rag.batch import run_batch
    from attribot_rag.models import default_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = write_records(Path(args.data), args.n, out / "input.jsonl")
    counts = [int(w) for w in args.workers.split(",")]
    ray.init(num_cpus=max(counts), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    results = []
    for workers in counts:
        target = out / f"workers-{workers}.jsonl"
        target.unlink(missing_ok=True)
        summary = run_batch(out / "input.jsonl", target, method=args.method, workers=workers, model=args.model,
                            max_new_tokens=args.max_new_tokens, progress=False)
        results.append(summary.to_dict())
        print(json.dumps(results[-1]), flush=True)
    ray.shutdown()
    base = next((r for r in results if r["workers"] == 1), results[0])["records_per_minute"]
    report = {
        "records": n,
        "method": args.method,
        "model": args.model or default_model(),
        "runs": results,
        "ratio": {r["workers"]: round(r["records_per_minute"] / base, 3) for r in results},
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "ray": ray.__version__,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
