"""What the default citation costs on a model, measured on ``cite`` itself.

cite-eval's records time every piece of evidence a policy *could* read (all checked
candidates, a no-passage pass, every recorded pair), so their cost column is an upper
bound. This script times what a user pays. Per example (cite-eval's passages, in
retriever order):

* own answer: ``attributor.generate`` timed, then ``attributor.cite`` on that response
  (which carries its generation: AT2 reads the attention captured while generating);
  the ratio is cite time over generation time;
* text answer ("The answer is {gold}.", as another LLM would hand it over): one plain
  forward pass over prompt + answer timed, then ``attributor.cite`` on the text; the
  ratio is cite time over that pass.

The library defaults apply (model, method "auto", the default ``CitationPolicy``) unless
``--policy`` gives fields as JSON. Records go to a JSON-lines file per example (resumable).

    OMP_NUM_THREADS=1 python benchmarks/cite_cost.py --dataset hotpotqa --data ../shared/data/hotpotqa/dev.json \\
        --offset 400 --n 10 --out benchmarks/cite-cost/qwen15-hotpotqa-400.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

TEMPLATE = "The answer is {answer}."


def measure(att: Any, ex: Any, policy: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    response = att.generate(ex.question, ex.passages)
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    own = att.cite(ex.question, ex.passages, response, policy=policy)
    cite_own = time.perf_counter() - t0
    text = TEMPLATE.format(answer=ex.answers[0])
    task = att.task(ex.question, ex.passages, text)
    t0 = time.perf_counter()
    task.scorer.logprobs(task.prompt.input_ids, task.response.token_ids)
    forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    external = att.cite(ex.question, ex.passages, text, policy=policy)
    cite_text = time.perf_counter() - t0
    return {
        "example": ex.id, "answer": own.answer, "prompt_tokens": len(task.prompt), "answer_tokens": len(response),
        "generation_s": gen, "cite_own_s": cite_own, "own_ratio": cite_own / gen,
        "forward_s": forward, "cite_text_s": cite_text, "text_ratio": cite_text / forward,
        "own_citations": len(own.citations), "text_citations": len(external.citations),
        "own_forward_tokens": own.forward_tokens, "text_forward_tokens": external.forward_tokens,
    }


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {"examples": 0}
    med = lambda k: float(np.median([r[k] for r in records]))  # noqa: E731
    return {
        "examples": len(records),
        "own_ratio_median": med("own_ratio"), "text_ratio_median": med("text_ratio"),
        "generation_s_median": med("generation_s"), "cite_own_s_median": med("cite_own_s"),
        "forward_s_median": med("forward_s"), "cite_text_s_median": med("cite_text_s"),
        "machine": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    from attribot_rag import Attributor, CitationPolicy
    from attribot_rag.evaluation.cite_eval import load_examples

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["hotpotqa", "nq"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--offset", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--model", default=None, help="default: the library's default model")
    p.add_argument("--policy", default="{}", help="CitationPolicy fields as JSON (default: the default policy)")
    p.add_argument("--out", required=True, help="per-example records (JSON lines; a rerun resumes)")
    args = p.parse_args(argv)
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    examples = load_examples(args.dataset, args.data, args.n, args.offset)
    have = {r["example"] for r in done}
    todo = [ex for ex in examples if ex.id not in have]
    if todo:
        att = Attributor(args.model) if args.model else Attributor()
        policy = CitationPolicy(**json.loads(args.policy))
        out.parent.mkdir(parents=True, exist_ok=True)
        for ex in todo:
            rec = {**measure(att, ex, policy), "model": att.model_name, "policy": policy.to_dict()}
            done.append(rec)
            with out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{ex.id}: own {rec['own_ratio']:.2f}x, text {rec['text_ratio']:.2f}x", flush=True)
    ids = {ex.id for ex in examples}
    print(json.dumps(summary([r for r in done if r["example"] in ids]), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
