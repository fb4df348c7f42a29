"""``attribot-rag bench``: every method on the same first N examples, in one run.

Per example: the target model generates the answer (timed), exact ``loo`` of the target
at the same level is computed once (timed: the "exact" time, and the ground truth), then
every requested method runs on a fresh task (so each pays for its own full pass).
A method given as ``loo`` reuses the exact run instead of running twice.

Per method (the first five keys are the original ones and stay):

* ``seconds_per_example``, ``tokens_per_example`` (tokens fed through any model, the
  proxy's included), ``speedup_vs_naive`` (naive time / method time in this run),
  ``max_abs_diff_vs_naive``, ``spearman_vs_naive``;
* ``speedup_vs_exact`` (exact ``loo`` time / method time), ``seconds_vs_generation``;
* ``map_vs_exact`` (outlier positives, :mod:`.metrics`), ``spearman_vs_exact``;
* ``topk_drop`` {"1", "3", "5"}: LL(C) - LL(C without the method's top k sources) over
  the target span, one batched ablation pass per method and example;
* ``lds``: Spearman, over ``lds_masks`` (>= 16) seeded random masks with keep
  probability 1/2, between the sum of the method's scores over the kept sources
  (nan = 0) and the target's actual log-probability under the mask; the masked
  log-probabilities are computed once per example and shared by all methods;
* ``gold_recall_at_2`` / ``gold_recall_at_3``: HotpotQA gold paragraphs among the
  method's top passages (sentence level: passages of the top sentences, deduplicated).

Top level: ``n``, ``model``, ``level``, ``generation_seconds_per_example``,
``peak_rss_mb``, plus ``exact`` (the same quality keys for exact LOO itself), the
proxy model and the options.

Methods can carry options in their name: ``hierarchical:keep=3:sentence_context=kept``
(the full string is the row name), so variants can be compared in one run.

Two processes can share the work: each runs its own example range into its own cache,
then one run with ``read_caches`` (the others' folders) and ``cached_only`` reports the
examples whose every result is done, listing the rest under ``not_cached``.

Resumable: every generation, method result (scores, seconds, tokens), top-k drop and
set of masked log-probabilities is appended to ``<cache_dir>/results.jsonl`` under a key
made of (data file, example id, what, level, models, options). An interrupted run picks
up where it stopped; cached timings are reported as measured when they were computed.
"""

from __future__ import annotations

import copy
import hashlib
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..methods import available_methods
from ..methods.spec import MethodSpec
from ..models import LoadedModel, dtype_info, dtype_key, proxy_dtype_key
from ..scoring import response_from_ids
from . import metrics
from .cache import NotCached, ResultsCache, _data_signature, _file_sha256, _jsonable, _upgraded_desc  # noqa: F401 (re-exported)
from .hotpotqa import load_ranges, load_slice
from .setup import build_attributor, load_models

NAIVE = "loo-naive"
EXACT = "loo"
TOPK = (1, 3, 5)
MIN_LDS_MASKS = 16
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = ".bench-cache"


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


@dataclass
class _Rows:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    diff_naive: list[float] = field(default_factory=list)
    rho_naive: list[float] = field(default_factory=list)
    ap: list[float] = field(default_factory=list)
    rho_exact: list[float] = field(default_factory=list)
    topk: dict[str, list[float]] = field(default_factory=lambda: {str(k): [] for k in TOPK})
    lds: list[float] = field(default_factory=list)
    recall2: list[float] = field(default_factory=list)
    recall3: list[float] = field(default_factory=list)


def _scores(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _example_seed(seed: int, example_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()[:8], 16)


# ------------------------------------------------------------------ the run
def run_bench(
    data: str,
    n: int = 10,
    level: str = "sentence",
    methods: Sequence[str] = ("loo-naive", "loo"),
    model: str | LoadedModel = "smollm2-135m",
    batch_size: int | None = None,
    max_new_tokens: int = 32,
    progress: bool = True,
    *,
    proxy_model: str | LoadedModel | None = None,
    keep: int | None = None,
    keep_mass: float | None = None,
    rescore: int | None = None,
    lds_masks: int = MIN_LDS_MASKS,
    seed: int = 0,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    markdown: str | Path | None = None,
    command: str | None = None,
    offset: int = 0,
    dtype: Any = None,
    read_caches: Sequence[str | Path] = (),
    cached_only: bool = False,
    example_ranges: Sequence[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """``example_ranges`` ([start, stop) index pairs) replaces ``n`` and ``offset``."""
    specs = _check_specs(methods, keep, keep_mass, lds_masks, proxy_model)
    cache = ResultsCache(cache_dir, read_caches, cached_only)
    examples = load_ranges(data, example_ranges) if example_ranges else load_slice(data, n, offset)
    target, proxy = load_models(model, proxy_model, needs_proxy=any(s.needs_proxy for s in specs), dtype=dtype)
    attributor = build_attributor(target, level=level, max_new_tokens=max_new_tokens, batch_size=batch_size or None)
    shared = {"proxy": proxy, "keep": keep, "keep_mass": keep_mass, "rescore": rescore}
    run = _BenchRun(attributor, proxy, cache, _data_signature(data), specs, shared, lds_masks, seed)
    steps = len(examples) * (3 + sum(1 for s in specs if not run.is_exact(s)))
    with tqdm(total=steps, desc="bench", disable=not progress, unit="step") as bar:
        not_cached = [ex.id for ex in examples if not run.example(ex, bar)]
    done = len(examples) - len(not_cached)
    if not done:
        raise InputError(f"none of the {len(examples)} examples has all its results in the cache")
    report = run.report(done, offset)
    if example_ranges:
        report["offset"] = None
        report["examples"] = ",".join(f"{a}-{b - 1}" for a, b in example_ranges)
    if cached_only:
        report["not_cached"] = not_cached  # left out: some result of theirs is not computed yet
    report["options"] = {
        "keep": keep, "keep_mass": keep_mass, "rescore": rescore, "lds_masks": lds_masks, "seed": seed,
        "max_new_tokens": max_new_tokens, "batch_size": attributor.batch_size,
    }
    report["peak_rss_mb"] = peak_rss_mb()
    if markdown:
        Path(markdown).write_text(markdown_table(report, command=command), encoding="utf-8")
    return report


def _check_specs(methods, keep, keep_mass, lds_masks, proxy_model) -> list[MethodSpec]:
    specs = [MethodSpec.parse(m) for m in dict.fromkeys(m for m in methods if m.strip())]
    if not specs:
        raise InputError("no methods to benchmark")
    unknown = [s.label for s in specs if s.name not in available_methods()]
    if unknown:
        raise InputError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available_methods())}"
        )
    if keep is not None and keep_mass is not None:
        raise InputError("give --keep or --keep-mass, not both")
    if lds_masks and lds_masks < MIN_LDS_MASKS:
        raise InputError(f"LDS needs at least {MIN_LDS_MASKS} masks (0: only where cached), got {lds_masks}")
    needs_proxy = [s.label for s in specs if s.needs_proxy]
    if needs_proxy and proxy_model is None:
        raise InputError(f"method(s) {', '.join(needs_proxy)} need a proxy model: pass --proxy-model NAME")
    return specs


# Info a method reports that the bench keeps with its cached result.
KEPT_INFO = (
    "kept_passages", "rescored", "first_stage_scores", "scored_sources", "proxy_model", "from_generation", "full_pass",
)


class _BenchRun:
    """One bench run: per example, the answer, exact LOO, each method and the quality
    metrics, every step cached; then the report over the examples."""

    def __init__(self, attributor, proxy, cache, data_signature, specs, shared, lds_masks, seed) -> None:
        self.attributor, self.proxy, self.cache = attributor, proxy, cache
        self.specs, self.shared, self.lds_masks, self.seed = specs, shared, lds_masks, seed
        self.level = attributor.level
        self.base = {
            "v": CACHE_VERSION,
            "data": data_signature,
            "model": attributor.model_name,
            "level": self.level,
            "max_new_tokens": attributor.max_new_tokens,
            "batch_size": attributor.batch_size,
            **dtype_key(attributor.lm),
        }
        self.rows = {s.label: _Rows() for s in specs}
        self.exact_rows = _Rows()
        self.gen_times: list[float] = []

    @staticmethod
    def is_exact(spec: MethodSpec) -> bool:
        return spec.name == EXACT and not spec.options

    def example(self, ex: Any, bar: Any) -> bool:
        """Runs (or reads) one example into the rows; False, with the rows as they were,
        when a cached-only run finds some result of it missing."""
        if not self.cache.cached_only:
            self._example(ex, bar)
            return True
        before = copy.deepcopy((self.rows, self.exact_rows, self.gen_times))
        try:
            self._example(ex, bar)
            return True
        except NotCached:
            self.rows, self.exact_rows, self.gen_times = before
            return False

    def _example(self, ex: Any, bar: Any) -> None:
        key = {**self.base, "example": ex.id}
        short = ex.id[:8]
        bar.set_postfix_str(f"{short} generate")
        response = self.answer(ex, key)
        bar.update(1)
        bar.set_postfix_str(f"{short} exact loo")
        exact = self.method_result(ex, key, response, MethodSpec.parse(EXACT))
        bar.update(1)
        results: dict[str, dict[str, Any]] = {}
        for spec in self.specs:
            if self.is_exact(spec):
                results[spec.label] = exact
                continue
            bar.set_postfix_str(f"{short} {spec.label}")
            spec_key = {**key, **spec.cache_identity_for(key["model"]), **(proxy_dtype_key(self.proxy) if spec.needs_proxy else {})}
            results[spec.label] = self.method_result(ex, spec_key, response, spec)
            bar.update(1)
        bar.set_postfix_str(f"{short} metrics")
        self.record(ex, key, response, exact, results)
        bar.update(1)

    def answer(self, ex: Any, key: dict[str, Any]) -> Any:
        desc = {**key, "kind": "generation"}
        gen = self.cache.get(desc)
        if gen is None:
            t0 = time.perf_counter()
            response = self.attributor.generate(ex.question, ex.passages)  # carries its AT2 capture
            gen = self.cache.put(
                desc, {"ids": response.token_ids, "text": response.text, "seconds": time.perf_counter() - t0}
            )
        else:
            response = response_from_ids(self.attributor.lm.tokenizer, gen["ids"])
        self.gen_times.append(float(gen["seconds"]))
        return response

    def method_result(self, ex: Any, key: dict[str, Any], response: Any, spec: MethodSpec) -> dict[str, Any]:
        options = {k: _jsonable(v) for k, v in sorted(spec.resolve(self.shared).items())}
        desc = {**key, "kind": "method", "method": spec.name, "options": options}
        hit = self.cache.get(desc)
        if hit is not None:
            return hit
        task = self.attributor.task(ex.question, ex.passages, response, level=self.level)
        c0 = time.process_time()
        res = self.attributor.run(task, method=spec.create(self.shared))
        cpu = time.process_time() - c0
        info = res.info or {}
        return self.cache.put(
            desc,
            {
                "scores": _jsonable(res.scores),
                "seconds": res.timings["attribution_s"],
                "cpu_seconds": cpu,
                "tokens": res.forward_tokens + _other_model_tokens(spec.method_class, info),
                "info": _jsonable({k: info[k] for k in KEPT_INFO if k in info}),
            },
        )

    def record(self, ex: Any, key: dict[str, Any], response: Any, exact: dict, results: dict[str, dict]) -> None:
        """Adds this example's speed and quality numbers to every row."""
        mtask = self.attributor.task(ex.question, ex.passages, response, level=self.level)
        quality = _Quality(self, ex, key, mtask, _scores(exact["scores"]))
        _add_timing(self.exact_rows, exact)
        quality.add(self.exact_rows, quality.exact)
        naive = _scores(results[NAIVE]["scores"]) if NAIVE in results else None
        for spec in self.specs:
            res, r = results[spec.label], self.rows[spec.label]
            scores = _scores(res["scores"])
            _add_timing(r, res)
            if naive is not None:
                diff = np.abs(scores - naive)
                r.diff_naive.append(float(np.nanmax(diff)) if not np.all(np.isnan(diff)) else float("nan"))
                r.rho_naive.append(metrics.spearman(scores, naive))
            quality.add(r, scores)

    def report(self, n: int, offset: int) -> dict[str, Any]:
        gen_mean = float(np.mean(self.gen_times))
        naive = self.rows.get(NAIVE)
        report: dict[str, Any] = {
            "n": n,
            "offset": offset,
            "model": self.attributor.model_name,
            **dtype_info(self.attributor.lm),
            "level": self.level,
            "generation_seconds_per_example": gen_mean,
            "methods": {s.label: _method_keys(self.rows[s.label], naive, self.exact_rows, n, gen_mean) for s in self.specs},
        }
        ex = self.exact_rows
        report["exact"] = {
            "method": EXACT,
            "seconds_per_example": sum(ex.seconds) / n,
            "cpu_seconds_per_example": sum(ex.cpu) / n,
            "tokens_per_example": float(np.mean(ex.tokens)),
            **_quality_keys(ex),
        }
        report["proxy_model"] = self.proxy.name if self.proxy is not None else None
        return report


def _other_model_tokens(method_class: type, info: dict[str, Any]) -> int:
    """Forward tokens the method ran on models other than the task's (a proxy's), from the
    info keys its class declares (``other_model_tokens``)."""
    return sum(int(info.get(key) or 0) for key in method_class.other_model_tokens)


class _Quality:
    """One example's quality metrics against exact LOO: the LDS masks' log-probs are
    computed once and shared by every method; top-k drops are cached per removal set."""

    def __init__(self, run: _BenchRun, ex: Any, key: dict[str, Any], task: Any, exact: np.ndarray) -> None:
        self.run, self.key, self.task, self.exact = run, key, task, exact
        self.passage_ids = [s.passage_id for s in task.sources]
        self.gold = ex.gold_passage_ids
        self.masks, self.mask_ll = self._lds_data(_example_seed(run.seed, ex.id))

    def _lds_data(self, mseed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        n_src, cache = len(self.task.sources), self.run.cache
        n_masks = self.run.lds_masks or MIN_LDS_MASKS
        desc = {**self.key, "kind": "lds", "n_masks": n_masks, "seed": mseed, "n_sources": n_src}
        if not self.run.lds_masks:  # LDS only where an earlier run computed it
            try:
                data = cache.get(desc)
            except NotCached:
                data = None
            if data is None:
                return None, None
        data = cache.get(desc)
        if data is None:
            masks = metrics.random_masks(self.run.lds_masks, n_src, 0.5, mseed)
            lps = self._ablated([[i for i in range(n_src) if not m[i]] for m in masks])
            data = cache.put(desc, {"masks": masks.astype(int).tolist(), "ll": [self.task.target_ll(lp) for lp in lps]})
        return np.array(data["masks"], dtype=bool), np.array(data["ll"], dtype=np.float64)

    def _ablated(self, removals: list[list[int]]) -> list[np.ndarray]:
        full = self.task.full_pass()
        return self.task.scorer.ablation_logprobs(full, self.task.ablated_prompt_ids(removals))

    def topk_drops(self, scores: np.ndarray) -> dict[str, float]:
        tops = [metrics.top_k_sources(scores, k) for k in TOPK]
        desc = {**self.key, "kind": "topk", "removals": [sorted(t) for t in tops]}
        hit = self.run.cache.get(desc)
        if hit is not None:
            return hit
        full_ll = self.task.target_ll(self.task.full_pass().logprobs)
        lps = self._ablated(tops)
        return self.run.cache.put(
            desc, {str(k): metrics.top_k_drop(full_ll, self.task.target_ll(lp)) for k, lp in zip(TOPK, lps)}
        )

    def add(self, r: _Rows, scores: np.ndarray) -> None:
        r.ap.append(metrics.average_precision(scores, self.exact))
        r.rho_exact.append(metrics.spearman(scores, self.exact))
        for k, v in self.topk_drops(scores).items():
            r.topk[k].append(v)
        r.lds.append(metrics.lds(scores, self.masks, self.mask_ll) if self.masks is not None else float("nan"))
        r.recall2.append(metrics.gold_recall_at_k(scores, self.passage_ids, self.gold, 2))
        r.recall3.append(metrics.gold_recall_at_k(scores, self.passage_ids, self.gold, 3))


def _add_timing(r: _Rows, result: dict[str, Any]) -> None:
    r.seconds.append(float(result["seconds"]))
    r.cpu.append(float(result.get("cpu_seconds", float("nan"))))
    r.tokens.append(float(result["tokens"]))


def _ratio(num: float | None, den: float) -> float | None:
    if num is None or den <= 0 or math.isnan(num) or math.isnan(den):
        return None
    return num / den


def _map_interval(ap: list[float], n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap 95% interval of the mAP over the examples with positives."""
    from .qa_metrics import bootstrap_indices, mean_ci

    values = [v for v in ap if v is not None and not math.isnan(v)]
    if len(values) < 2:
        return None
    return mean_ci(values, bootstrap_indices(len(values), n_boot, seed))["ci95"]


def _quality_keys(r: _Rows) -> dict[str, Any]:
    return {
        "map_vs_exact": _mean(r.ap),
        "map_vs_exact_ci95": _map_interval(r.ap),
        "ap_per_example": [None if math.isnan(v) else v for v in r.ap],
        "spearman_vs_exact": _mean(r.rho_exact),
        "topk_drop": {k: _mean(v) for k, v in r.topk.items()},
        "lds": _mean(r.lds),
        "gold_recall_at_2": _mean(r.recall2),
        "gold_recall_at_3": _mean(r.recall3),
    }


def _method_keys(r: _Rows, naive: _Rows | None, exact: _Rows, n: int, gen_mean: float) -> dict[str, Any]:
    total, cpu = sum(r.seconds), sum(r.cpu)
    naive_time = sum(naive.seconds) if naive else None
    return {
        "seconds_per_example": total / n,
        "tokens_per_example": float(np.mean(r.tokens)),
        "speedup_vs_naive": (naive_time / total) if naive_time and total > 0 else None,
        "max_abs_diff_vs_naive": max(r.diff_naive) if r.diff_naive else None,
        "spearman_vs_naive": _mean(r.rho_naive),
        "speedup_vs_exact": (sum(exact.seconds) / total) if total > 0 else None,
        "seconds_vs_generation": (total / n) / gen_mean if gen_mean > 0 else None,
        # CPU time of this process: steadier than wall time on a shared machine
        "cpu_seconds_per_example": cpu / n,
        "cpu_speedup_vs_naive": _ratio(sum(naive.cpu) if naive else None, cpu),
        "cpu_speedup_vs_exact": _ratio(sum(exact.cpu), cpu),
        **_quality_keys(r),
    }

# ------------------------------------------------------------------ markdown
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(report: dict[str, Any], command: str | None = None) -> str:
    """The bench report as a Markdown table (one row per method, exact LOO first)."""
    lines = []
    proxy = f", proxy {report['proxy_model']}" if report.get("proxy_model") else ""
    lines.append(
        f"n = {report['n']}, model {report['model']}{proxy}, level {report['level']}, "
        f"generation {_fmt(report['generation_seconds_per_example'], 2)} s/example, "
        f"peak RSS {_fmt(report.get('peak_rss_mb'), 0)} MB"
    )
    if command:
        lines += ["", f"`{command}`"]
    lines.append("")
    head = [
        "method", "s/example", "CPU s/example", "tokens/example", "speedup vs naive",
        "CPU speedup vs naive", "speedup vs exact", "time / generation", "mAP vs exact", "Spearman vs exact",
        "top-1 drop", "top-3 drop", "top-5 drop", "LDS", "gold R@2", "gold R@3",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    ex = report.get("exact")
    rows = []
    if ex:
        gen = report.get("generation_seconds_per_example") or 0.0
        rows.append(("exact loo (ground truth)", {**ex, "speedup_vs_exact": 1.0, "map_vs_exact": 1.0,
                                                   "spearman_vs_exact": 1.0,
                                                   "seconds_vs_generation": ex["seconds_per_example"] / gen if gen else None}))
    rows += list(report["methods"].items())
    naive = report["methods"].get(NAIVE, {})

    def vs_naive(m: dict[str, Any], key: str) -> float | None:
        if naive.get(key) and m.get(key):
            return naive[key] / m[key]
        return None

    for name, m in rows:
        drop = m.get("topk_drop") or {}
        cells = [
            f"`{name}`" if not name.startswith("exact") else name,
            _fmt(m["seconds_per_example"], 2),
            _fmt(m.get("cpu_seconds_per_example"), 2),
            _fmt(m["tokens_per_example"], 0),
            _fmt(vs_naive(m, "seconds_per_example"), 2),
            _fmt(vs_naive(m, "cpu_seconds_per_example"), 2),
            _fmt(m.get("speedup_vs_exact"), 2),
            _fmt(m.get("seconds_vs_generation"), 3),
            _fmt(m.get("map_vs_exact")),
            _fmt(m.get("spearman_vs_exact")),
            _fmt(drop.get("1"), 2),
            _fmt(drop.get("3"), 2),
            _fmt(drop.get("5"), 2),
            _fmt(m.get("lds")),
            _fmt(m.get("gold_recall_at_2"), 2),
            _fmt(m.get("gold_recall_at_3"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["MethodSpec", "ResultsCache", "markdown_table", "peak_rss_mb", "run_bench"]
