"""``attribot-rag bench``: every method on the same first N examples, in one run.

Per method: seconds_per_example, tokens_per_example, speedup_vs_naive (naive time /
method time in this run), max_abs_diff_vs_naive, spearman_vs_naive. Top level: n, model,
level, generation_seconds_per_example, peak_rss_mb. (Later issues add keys; these stay.)
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any, Sequence

import numpy as np
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from ..attributor import Attributor
from ..errors import InputError
from ..methods import available_methods
from .hotpotqa import load_hotpotqa

NAIVE = "loo-naive"


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    mask = ~(np.isnan(a) | np.isnan(b))
    if mask.sum() < 2 or np.std(a[mask]) == 0 or np.std(b[mask]) == 0:
        return float("nan")
    return float(spearmanr(a[mask], b[mask]).statistic)


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def run_bench(
    data: str,
    n: int = 10,
    level: str = "sentence",
    methods: Sequence[str] = ("loo-naive", "loo"),
    model: str = "smollm2-135m",
    batch_size: int | None = None,
    max_new_tokens: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        raise InputError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available_methods())}"
        )
    if not methods:
        raise InputError("no methods to benchmark")
    examples = load_hotpotqa(data, n)
    kwargs = {"batch_size": batch_size} if batch_size else {}
    attributor = Attributor(model, level=level, max_new_tokens=max_new_tokens, **kwargs)

    gen_times: list[float] = []
    times: dict[str, list[float]] = {m: [] for m in methods}
    tokens: dict[str, list[int]] = {m: [] for m in methods}
    diffs: dict[str, list[float]] = {m: [] for m in methods}
    rhos: dict[str, list[float]] = {m: [] for m in methods}
    bar = tqdm(total=len(examples) * len(methods), desc="bench", disable=not progress, unit="run")
    for ex in examples:
        t0 = time.perf_counter()
        response = attributor.generate(ex.question, ex.passages)
        gen_times.append(time.perf_counter() - t0)
        task = attributor.task(ex.question, ex.passages, response, level=level)
        results = {}
        for m in methods:
            bar.set_postfix_str(f"{ex.id[:8]} {m}")
            fresh = attributor.task(ex.question, ex.passages, response, level=level)
            res = attributor.run(fresh, method=m)
            results[m] = res
            times[m].append(res.timings["attribution_s"])
            tokens[m].append(res.forward_tokens)
            bar.update(1)
        if NAIVE in results:
            ref = results[NAIVE].scores
            for m, res in results.items():
                diffs[m].append(float(np.nanmax(np.abs(res.scores - ref))))
                rhos[m].append(_spearman(res.scores, ref))
        del task
    bar.close()

    naive_time = sum(times[NAIVE]) if NAIVE in times else None
    report: dict[str, Any] = {
        "n": len(examples),
        "model": attributor.model_name,
        "level": level,
        "generation_seconds_per_example": float(np.mean(gen_times)),
        "methods": {},
    }
    for m in methods:
        total = sum(times[m])
        report["methods"][m] = {
            "seconds_per_example": total / len(examples),
            "tokens_per_example": float(np.mean(tokens[m])),
            "speedup_vs_naive": (naive_time / total) if naive_time and total > 0 else None,
            "max_abs_diff_vs_naive": max(diffs[m]) if diffs[m] else None,
            "spearman_vs_naive": _mean(rhos[m]),
        }
    report["peak_rss_mb"] = peak_rss_mb()
    return report
