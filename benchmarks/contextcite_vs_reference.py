"""This project's ``contextcite`` against the reference implementation, ``context-cite``
0.0.4 from PyPI, on the same work, side by side in one process.

The same work: one model object, one HotpotQA dev example, the same answer (generated
once), the same sources (this project's sentences), the same ablated prompts token for
token (the reference's ``ContextCiter`` is given this project's prompt for each of its
masks), 64 ablations with keep probability 1/2, its defaults otherwise (batch size 1,
LASSO alpha 0.01). Timed: everything from the answer to the scores, for each side. LDS
for both on the same held-out masks (a seed neither side uses), from exact forward passes.

    python -m venv .venv-cc && .venv-cc/bin/pip install torch==2.13.0 && \\
      .venv-cc/bin/pip install -c requirements/lock.txt -e . datasets nltk spacy pandas && \\
      .venv-cc/bin/pip install --no-deps context-cite==0.0.4
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv-cc/bin/python benchmarks/contextcite_vs_reference.py \\
      --data ../shared/data/hotpotqa/dev.json --examples 1 --out benchmarks/contextcite-vs-reference.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

from attribot_rag import Attributor
from attribot_rag.evaluation import metrics
from attribot_rag.evaluation.hotpotqa import load_slice
from attribot_rag.methods.contextcite import AblationEffects, ContextCite
from attribot_rag.models import dtype_info, load_model
from attribot_rag.scoring import response_from_ids

LDS_MASKS, LDS_SEED = 32, 12345


def reference_citer(task, ablations: int):
    """context-cite's ContextCiter, fed this task's sources, prompts and answer."""
    from context_cite import ContextCiter
    from context_cite.context_partitioner import BaseContextPartitioner

    texts = [s.text for s in task.sources]

    class Sources(BaseContextPartitioner):
        num_sources = len(texts)

        def split_context(self) -> None:
            pass

        def get_source(self, index: int) -> str:
            return texts[index]

        def get_context(self, mask=None) -> str:
            keep = np.ones(len(texts), dtype=bool) if mask is None else mask
            return " ".join(t for t, k in zip(texts, keep) if k)

    class SameWork(ContextCiter):
        def _get_prompt_ids(self, mask=None, return_prompt=False):
            removed = [] if mask is None else [i for i in range(len(texts)) if not mask[i]]
            ids = task.ablated_prompt_ids([removed])[0]
            return (ids, task.lm.tokenizer.decode(ids)) if return_prompt else ids

        @property
        def _response_ids(self):
            return list(task.response.token_ids)

    context = " ".join(texts)
    return SameWork(task.lm.model, task.lm.tokenizer, context, task.question,
                    num_ablations=ablations, partitioner=Sources(context))


def run_reference(task, ablations: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    cc = reference_citer(task, ablations)
    weights, _ = cc._get_attributions_for_ids_range(0, len(task.response.token_ids))
    return np.asarray(weights, dtype=np.float64), time.perf_counter() - t0


class ReferenceMasks(ContextCite):
    """This project's ContextCite on the reference's own mask draws (its seeds 0..M-1,
    keep probability 1/2), so both sides fit the same ablations."""

    def effects(self, task):
        from context_cite.utils import _create_mask

        masks = np.array([_create_mask(len(task.sources), self.keep_prob, s) for s in range(self.ablations)])
        full = task.full_pass()
        prompts = task.ablated_prompt_ids([[task.sources[i].index for i in np.flatnonzero(~m)] for m in masks])
        per_mask = task.scorer.ablation_logprobs_chained(full, prompts)
        return AblationEffects(masks, np.array(per_mask, dtype=np.float64), full.logprobs, self.alpha)


def run_ours(attributor, task, ablations: int, same_masks: bool) -> tuple[np.ndarray, float, dict]:
    t0 = time.perf_counter()
    method = ReferenceMasks(ablations=ablations) if same_masks else "contextcite"
    res = attributor.run(task, method=method, ablations=ablations)
    return np.asarray(res.scores), time.perf_counter() - t0, {"forward_passes": res.forward_passes, "forward_tokens": res.forward_tokens}


def lds_data(task) -> tuple[np.ndarray, np.ndarray]:
    masks = metrics.random_masks(LDS_MASKS, len(task.sources), 0.5, LDS_SEED)
    prompts = task.ablated_prompt_ids([[i for i in range(len(m)) if not m[i]] for m in masks])
    lps = task.scorer.ablation_logprobs_naive(prompts, task.response.token_ids)
    return masks, np.array([task.target_ll(lp) for lp in lps])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/hotpotqa/dev.json")
    ap.add_argument("--offset", type=int, default=1, help="first dev example (the issue's: 1)")
    ap.add_argument("--examples", type=int, default=1)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ablations", type=int, default=64, help="the reference's ablations")
    ap.add_argument("--ours-ablations", type=int, help="this project's ablations (default: --ablations)")
    ap.add_argument("--ours-dtype", default="float32",
                    help="dtype of this project's model (the LDS ground truth stays float32); "
                         "'auto' is what a user gets: bfloat16 on CPUs with AVX512-BF16/AMX")
    ap.add_argument("--reference-dtype", default="float32",
                    help="dtype of the model handed to the reference (bfloat16: both sides in bf16)")
    ap.add_argument("--same-masks", action="store_true",
                    help="run ours on the reference's own mask draws (like-for-like LDS; default: ours draws its own)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", help="write the JSON report here")
    args = ap.parse_args()
    import context_cite  # noqa: F401  (fail early without the reference)
    from importlib.metadata import version

    lm = load_model(args.model, dtype="float32")
    attributor = Attributor(lm, level="sentence", max_new_tokens=args.max_new_tokens)
    sides = {"float32": attributor}  # one attributor per dtype; the fp32 one also gives the LDS truth
    for dtype in {args.ours_dtype, args.reference_dtype} - {"float32"}:
        sides[dtype] = Attributor(load_model(args.model, dtype=dtype), level="sentence")
    rows = []
    for ex in load_slice(args.data, args.examples, args.offset):
        response = attributor.generate(ex.question, ex.passages)
        task = lambda: attributor.task(ex.question, ex.passages, response, level="sentence")  # noqa: E731

        def side_task(dtype):
            att = sides[dtype]
            ids = response_from_ids(att.lm.tokenizer, response.token_ids)
            att.task(ex.question, ex.passages, ids, level="sentence").full_pass()  # warm-up, one-time costs
            return att.task(ex.question, ex.passages, ids, level="sentence")  # fresh: no cached full pass

        ref_scores, ref_s = run_reference(side_task(args.reference_dtype), args.ablations)
        ours_task = side_task(args.ours_dtype)
        our_scores, our_s, work = run_ours(sides[args.ours_dtype], ours_task, args.ours_ablations or args.ablations,
                                           args.same_masks)
        masks, ll = lds_data(task())
        rows.append({
            "id": ex.id, "sources": len(task().sources), "answer": response.text,
            "answer_tokens": len(response.token_ids), "prompt_tokens": len(task().prompt),
            "reference_seconds": ref_s, "ours_seconds": our_s, "speedup": ref_s / our_s,
            "reference_lds": metrics.lds(ref_scores, masks, ll), "ours_lds": metrics.lds(our_scores, masks, ll),
            "spearman_ours_vs_reference": metrics.spearman(our_scores, ref_scores), **work,
        })
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "model": lm.name,
        "ours_dtype": dtype_info(sides[args.ours_dtype].lm),
        "reference_dtype": dtype_info(sides[args.reference_dtype].lm), "ablations": args.ablations,
        "ours_ablations": args.ours_ablations or args.ablations, "same_masks": args.same_masks,
        "versions": {p: version(p) for p in ("torch", "transformers", "context-cite", "attribot-rag")},
        "lds_masks": LDS_MASKS, "lds_seed": LDS_SEED,
        "speedup_total": sum(r["reference_seconds"] for r in rows) / sum(r["ours_seconds"] for r in rows),
        "examples": rows,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=2))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
