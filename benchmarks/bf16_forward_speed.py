"""One forward pass in float32 and in bfloat16, same process, same tokens: is bf16 fast here?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bf16_forward_speed.py --model smollm2-135m --tokens 300
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attribot_rag.models import load_model
from attribot_rag.precision import cpu_bf16_support


def forward_seconds(model: str, dtype: str, ids: torch.Tensor, repeats: int) -> float:
    lm = load_model(model, dtype=dtype)
    with torch.no_grad():
        lm.model(ids)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            lm.model(ids)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ids = torch.randint(0, 20000, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    fp32 = forward_seconds(args.model, "float32", ids, args.repeats)
    bf16 = forward_seconds(args.model, "bfloat16", ids, args.repeats)
    print(json.dumps({
        "model": args.model, "tokens": args.tokens, "float32_s": round(fp32, 3), "bfloat16_s": round(bf16, 3),
        "bf16_speedup": round(fp32 / bf16, 2), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_support": cpu_bf16_support(), "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
