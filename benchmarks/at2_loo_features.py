"""AT2 features of answers whose exact sentence LOO a bench run cached: the data to fit AT2's
head weights to leave-one-out effects and to compare weights offline.

Per example, read from bench caches (``attribot-rag bench --cache DIR``): the answer's token
ids and its exact LOO scores. Then one forward pass of the model gives each source's
features averaged over the answer's tokens, F [sources, layers * heads] (what the ``at2``
method scores with w . F). One ``.npz`` per example in ``--out`` (resumable):
``F``, ``loo`` (exact LOO per source), ``example``, ``index`` (position in the data file).

``--answers-of TARGET``: the answers are another model's (a bench run of TARGET with
``--proxy-model MODEL``), and the exact LOO is ``--model``'s own, as that run's ``proxy``
method cached it (the proxy's exact LOO of the target's answer). Both models must share a
tokenizer. This gives the proxy's AT2 its training data without a run of its own.

    OMP_NUM_THREADS=1 python benchmarks/at2_loo_features.py --data ../shared/data/hotpotqa/dev.json \
      --examples 0-19 --model qwen2.5-coder-1.5b --dtype bfloat16 \
      --bench-cache benchmarks/bench-cache/qwen15-sentence-bf16-a ... --out benchmarks/at2-train/loo-features-qwen15
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from attribot_rag.at2.features import task_features
from attribot_rag.evaluation.hotpotqa import load_ranges, parse_index_ranges
from attribot_rag.evaluation.setup import build_attributor, load
from attribot_rag.scoring import response_from_ids


def cached_answers(cache_dirs: list[str], model: str, level: str, answers_of: str | None = None) -> dict[str, dict]:
    """example id -> {"ids": answer ids, "loo": exact LOO scores} from bench caches: ``model``'s
    answers and LOO, or ``answers_of``'s answers with ``model``'s LOO as its proxy."""
    target = answers_of or model
    gens: dict[str, list[int]] = {}
    loo: dict[str, list[float]] = {}
    for d in cache_dirs:
        for line in (Path(d) / "results.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            desc, value = rec["desc"], rec["value"]
            if desc.get("model") != target or desc.get("level") != level:
                continue
            if desc.get("kind") == "generation":
                gens.setdefault(desc["example"], value["ids"])
            elif desc.get("kind") == "method" and _exact_loo_of(desc, model, target):
                loo.setdefault(desc["example"], value["scores"])
    return {ex: {"ids": gens[ex], "loo": loo[ex]} for ex in gens if ex in loo}


def _exact_loo_of(desc: dict, model: str, target: str) -> bool:
    """Whether a cached method result is ``model``'s exact LOO of ``target``'s answer."""
    if model == target:
        return desc.get("method") == "loo" and not desc.get("options")
    return desc.get("method") == "proxy" and desc.get("options") == {"proxy": model}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--examples", required=True, help="index ranges, e.g. 0-19,200-215")
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--level", default="sentence")
    ap.add_argument("--bench-cache", nargs="+", required=True)
    ap.add_argument("--answers-of", default=None, help="the target whose answers a proxy run of --model scored")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    answers = cached_answers(args.bench_cache, args.model, args.level, args.answers_of)
    ranges = parse_index_ranges(args.examples)
    indices = [i for a, b in ranges for i in range(a, b)]
    examples = load_ranges(args.data, ranges)
    attributor = build_attributor(load(args.model, args.dtype), level=args.level, max_new_tokens=32)
    for index, ex in zip(indices, examples):
        path = out / f"{index:04d}-{ex.id}.npz"
        if path.exists() or ex.id not in answers:
            print(f"{index} {ex.id}: {'cached' if path.exists() else 'no exact LOO in the bench caches'}")
            continue
        t0 = time.perf_counter()
        response = response_from_ids(attributor.lm.tokenizer, answers[ex.id]["ids"])
        task = attributor.task(ex.question, ex.passages, response, level=args.level)
        feats = task_features(task).mean(dim=1).numpy()  # [S, L*H]
        loo = np.array([np.nan if v is None else v for v in answers[ex.id]["loo"]], dtype=np.float64)
        if len(loo) != feats.shape[0]:
            raise SystemExit(f"{ex.id}: {len(loo)} cached LOO scores for {feats.shape[0]} sources")
        np.savez(path, F=feats.astype(np.float32), loo=loo, example=np.array(ex.id), index=np.array(index))
        print(f"{index} {ex.id}: {feats.shape[0]} sources in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
