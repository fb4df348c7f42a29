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

Resumable: every generation, method result (scores, seconds, tokens), top-k drop and
set of masked log-probabilities is appended to ``<cache_dir>/results.jsonl`` under a key
made of (data file, example id, what, level, models, options). An interrupted run picks
up where it stopped; cached timings are reported as measured when they were computed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..attributor import Attributor
from ..errors import InputError
from ..methods import available_methods
from ..models import LoadedModel, dtype_info, dtype_key, get_model
from ..scoring import response_from_ids
from . import metrics
from .hotpotqa import load_slice

NAIVE = "loo-naive"
EXACT = "loo"
TOPK = (1, 3, 5)
MIN_LDS_MASKS = 16
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = ".bench-cache"
PROXY_METHODS = {"proxy", "proxy-rescore"}


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


# ------------------------------------------------------------------ method specs
def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in {"none", "null"}:
        return None
    if low in {"true", "false"}:
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class MethodSpec:
    """A method name with options, written ``name:key=value:key=value``."""

    label: str
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        parts = [p.strip() for p in text.strip().split(":")]
        name, opts = parts[0], {}
        for p in parts[1:]:
            if "=" not in p:
                raise InputError(f"method option {p!r} in {text!r} is not key=value")
            k, v = p.split("=", 1)
            opts[k.strip().replace("-", "_")] = _parse_value(v.strip())
        return cls(text.strip(), name, tuple(sorted(opts.items())))


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


# ------------------------------------------------------------------ results cache
class ResultsCache:
    """JSON-lines store of finished work, keyed by a hash of what produced it."""

    def __init__(self, directory: str | Path | None) -> None:
        self.path = Path(directory) / "results.jsonl" if directory else None
        self.data: dict[str, Any] = {}
        if self.path and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.data[rec["key"]] = rec["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interruption

    @staticmethod
    def key(desc: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, desc: dict[str, Any]) -> Any | None:
        return self.data.get(self.key(desc))

    def put(self, desc: dict[str, Any], value: Any) -> Any:
        k = self.key(desc)
        self.data[k] = value
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": k, "desc": desc, "value": value}, default=str) + "\n")
                fh.flush()
        return value


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, LoadedModel):
        return obj.name
    return obj


def _scores(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _data_signature(path: str) -> dict[str, Any]:
    """What identifies a data file in cache keys: its name and a hash of its content.

    Not its path or modification time: a copied or re-extracted file (same content, new
    mtime, another folder) must still find the results computed from it.
    """
    p = Path(path).resolve()
    st = p.stat()
    return {"name": p.name, "sha256": _file_sha256(str(p), st.st_size, st.st_mtime_ns)}


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
) -> dict[str, Any]:
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
    if lds_masks < MIN_LDS_MASKS:
        raise InputError(f"LDS needs at least {MIN_LDS_MASKS} masks, got {lds_masks}")
    def uses_proxy(spec: MethodSpec) -> bool:
        # proxy-rescore with another first stage (e.g. first_stage=at2) needs no proxy model
        return spec.name in PROXY_METHODS and dict(spec.options).get("first_stage", "proxy") == "proxy"

    needs_proxy = [s.label for s in specs if uses_proxy(s)]
    if needs_proxy and proxy_model is None:
        raise InputError(f"method(s) {', '.join(needs_proxy)} need a proxy model: pass --proxy-model NAME")

    examples = load_slice(data, n, offset)
    # dtype applies to the models loaded here by name (target and proxy)
    target = get_model(model, dtype=dtype) if isinstance(model, str) else model
    proxy = None
    if proxy_model is not None and needs_proxy:
        proxy = get_model(proxy_model, dtype=dtype) if isinstance(proxy_model, str) else proxy_model
    kwargs = {"batch_size": batch_size} if batch_size else {}
    attributor = Attributor(target, level=level, max_new_tokens=max_new_tokens, **kwargs)
    cache = ResultsCache(cache_dir)

    base = {
        "v": CACHE_VERSION,
        "data": _data_signature(data),
        "model": attributor.model_name,
        "level": level,
        "max_new_tokens": max_new_tokens,
        "batch_size": attributor.batch_size,
        **dtype_key(target, proxy),
    }

    def method_options(spec: MethodSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        """(options passed to the method, their description for the cache key)."""
        opts: dict[str, Any] = {}
        if spec.name == "hierarchical":
            if keep is not None:
                opts["keep"] = keep
            if keep_mass is not None:
                opts["keep_mass"] = keep_mass
        if uses_proxy(spec):
            opts["proxy"] = proxy
        if spec.name == "proxy-rescore" and rescore is not None:
            opts["rescore"] = rescore
        spec_opts = dict(spec.options)
        if spec.name == "hierarchical" and ("keep" in spec_opts or "keep_mass" in spec_opts):
            opts.pop("keep", None)
            opts.pop("keep_mass", None)
        opts.update(spec_opts)
        return opts, {k: _jsonable(v) for k, v in sorted(opts.items())}

    rows = {s.label: _Rows() for s in specs}
    exact_rows = _Rows()
    gen_times: list[float] = []
    steps_per_example = 3 + sum(1 for s in specs if not (s.name == EXACT and not s.options))
    bar = tqdm(total=len(examples) * steps_per_example, desc="bench", disable=not progress, unit="step")

    for ex in examples:
        ex_key = {**base, "example": ex.id}
        short = ex.id[:8]

        # 1. the answer
        bar.set_postfix_str(f"{short} generate")
        desc = {**ex_key, "kind": "generation"}
        gen = cache.get(desc)
        if gen is None:
            t0 = time.perf_counter()
            response = attributor.generate(ex.question, ex.passages)  # carries its AT2 capture
            gen = cache.put(
                desc,
                {"ids": response.token_ids, "text": response.text, "seconds": time.perf_counter() - t0},
            )
        else:
            response = response_from_ids(target.tokenizer, gen["ids"])
        gen_times.append(float(gen["seconds"]))
        bar.update(1)

        def run_method(spec_name: str, opts: dict[str, Any], opts_desc: dict[str, Any]) -> dict[str, Any]:
            d = {**ex_key, "kind": "method", "method": spec_name, "options": opts_desc}
            hit = cache.get(d)
            if hit is not None:
                return hit
            task = attributor.task(ex.question, ex.passages, response, level=level)
            c0 = time.process_time()
            res = attributor.run(task, method=spec_name, **opts)
            cpu = time.process_time() - c0
            info = res.info or {}
            extra = int(info.get("proxy_forward_tokens", 0) or 0)
            keep_info = {
                k: info[k]
                for k in ("kept_passages", "rescored", "first_stage_scores", "scored_sources", "proxy_model", "from_generation")
                if k in info
            }
            return cache.put(
                d,
                {
                    "scores": _jsonable(res.scores),
                    "seconds": res.timings["attribution_s"],
                    "cpu_seconds": cpu,
                    "tokens": res.forward_tokens + extra,
                    "info": _jsonable(keep_info),
                },
            )

        # 2. ground truth: exact LOO of the target, timed
        bar.set_postfix_str(f"{short} exact loo")
        exact = run_method(EXACT, {}, {})
        exact_scores = _scores(exact["scores"])
        bar.update(1)

        # 3. the methods
        results: dict[str, dict[str, Any]] = {}
        for spec in specs:
            opts, opts_desc = method_options(spec)
            if spec.name == EXACT and not opts:
                results[spec.label] = exact
                continue
            bar.set_postfix_str(f"{short} {spec.label}")
            results[spec.label] = run_method(spec.name, opts, opts_desc)
            bar.update(1)

        # 4. quality metrics: top-k drops and LDS masks (not timed; cached)
        bar.set_postfix_str(f"{short} metrics")
        mtask = attributor.task(ex.question, ex.passages, response, level=level)
        n_src = len(mtask.sources)
        passage_ids = [s.passage_id for s in mtask.sources]
        gold = ex.gold_passage_ids

        def topk_drops(scores: np.ndarray) -> dict[str, float]:
            tops = [metrics.top_k_sources(scores, k) for k in TOPK]
            d = {**ex_key, "kind": "topk", "removals": [sorted(t) for t in tops]}
            hit = cache.get(d)
            if hit is not None:
                return hit
            full = mtask.full_pass()
            full_ll = mtask.target_ll(full.logprobs)
            lps = mtask.scorer.ablation_logprobs(full, mtask.ablated_prompt_ids(tops))
            return cache.put(
                d, {str(k): metrics.top_k_drop(full_ll, mtask.target_ll(lp)) for k, lp in zip(TOPK, lps)}
            )

        mseed = _example_seed(seed, ex.id)
        d = {**ex_key, "kind": "lds", "n_masks": lds_masks, "seed": mseed, "n_sources": n_src}
        lds_data = cache.get(d)
        if lds_data is None:
            masks = metrics.random_masks(lds_masks, n_src, 0.5, mseed)
            removals = [[i for i in range(n_src) if not m[i]] for m in masks]
            full = mtask.full_pass()
            lps = mtask.scorer.ablation_logprobs(full, mtask.ablated_prompt_ids(removals))
            lds_data = cache.put(
                d, {"masks": masks.astype(int).tolist(), "ll": [mtask.target_ll(lp) for lp in lps]}
            )
        masks = np.array(lds_data["masks"], dtype=bool)
        mask_ll = np.array(lds_data["ll"], dtype=np.float64)

        def quality(r: _Rows, scores: np.ndarray) -> None:
            r.ap.append(metrics.average_precision(scores, exact_scores))
            r.rho_exact.append(metrics.spearman(scores, exact_scores))
            for k, v in topk_drops(scores).items():
                r.topk[k].append(v)
            r.lds.append(metrics.lds(scores, masks, mask_ll))
            r.recall2.append(metrics.gold_recall_at_k(scores, passage_ids, gold, 2))
            r.recall3.append(metrics.gold_recall_at_k(scores, passage_ids, gold, 3))

        exact_rows.seconds.append(float(exact["seconds"]))
        exact_rows.cpu.append(float(exact.get("cpu_seconds", float("nan"))))
        exact_rows.tokens.append(float(exact["tokens"]))
        quality(exact_rows, exact_scores)
        naive_scores = _scores(results[NAIVE]["scores"]) if NAIVE in results else None
        for spec in specs:
            res = results[spec.label]
            r = rows[spec.label]
            scores = _scores(res["scores"])
            r.seconds.append(float(res["seconds"]))
            r.cpu.append(float(res.get("cpu_seconds", float("nan"))))
            r.tokens.append(float(res["tokens"]))
            if naive_scores is not None:
                diff = np.abs(scores - naive_scores)
                r.diff_naive.append(float(np.nanmax(diff)) if not np.all(np.isnan(diff)) else float("nan"))
                r.rho_naive.append(metrics.spearman(scores, naive_scores))
            quality(r, scores)
        bar.update(1)
    bar.close()

    gen_mean = float(np.mean(gen_times))
    naive_time = sum(rows[NAIVE].seconds) if NAIVE in rows else None
    exact_time = sum(exact_rows.seconds)
    naive_cpu = sum(rows[NAIVE].cpu) if NAIVE in rows else None
    exact_cpu = sum(exact_rows.cpu)

    def ratio(num: float | None, den: float) -> float | None:
        if num is None or den <= 0 or math.isnan(num) or math.isnan(den):
            return None
        return num / den

    def quality_keys(r: _Rows) -> dict[str, Any]:
        return {
            "map_vs_exact": _mean(r.ap),
            "spearman_vs_exact": _mean(r.rho_exact),
            "topk_drop": {k: _mean(v) for k, v in r.topk.items()},
            "lds": _mean(r.lds),
            "gold_recall_at_2": _mean(r.recall2),
            "gold_recall_at_3": _mean(r.recall3),
        }

    report: dict[str, Any] = {
        "n": len(examples),
        "offset": offset,
        "model": attributor.model_name,
        **dtype_info(target),
        "level": level,
        "generation_seconds_per_example": gen_mean,
        "methods": {},
    }
    for spec in specs:
        r = rows[spec.label]
        total = sum(r.seconds)
        report["methods"][spec.label] = {
            "seconds_per_example": total / len(examples),
            "tokens_per_example": float(np.mean(r.tokens)),
            "speedup_vs_naive": (naive_time / total) if naive_time and total > 0 else None,
            "max_abs_diff_vs_naive": max(r.diff_naive) if r.diff_naive else None,
            "spearman_vs_naive": _mean(r.rho_naive),
            "speedup_vs_exact": (exact_time / total) if total > 0 else None,
            "seconds_vs_generation": (total / len(examples)) / gen_mean if gen_mean > 0 else None,
            # CPU time of this process: steadier than wall time on a shared machine
            "cpu_seconds_per_example": sum(r.cpu) / len(examples),
            "cpu_speedup_vs_naive": ratio(naive_cpu, sum(r.cpu)),
            "cpu_speedup_vs_exact": ratio(exact_cpu, sum(r.cpu)),
            **quality_keys(r),
        }
    report["exact"] = {
        "method": EXACT,
        "seconds_per_example": exact_time / len(examples),
        "cpu_seconds_per_example": exact_cpu / len(examples),
        "tokens_per_example": float(np.mean(exact_rows.tokens)),
        **quality_keys(exact_rows),
    }
    report["proxy_model"] = proxy.name if proxy is not None else None
    report["options"] = {
        "keep": keep,
        "keep_mass": keep_mass,
        "rescore": rescore,
        "lds_masks": lds_masks,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "batch_size": attributor.batch_size,
    }
    report["peak_rss_mb"] = peak_rss_mb()
    if markdown:
        Path(markdown).write_text(markdown_table(report, command=command), encoding="utf-8")
    return report


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
