"""The HotpotQA context-pruning experiment (docs/architecture.md, Pruning > The HotpotQA
pruning experiment) as one resumable run.

For every example:

* ``baseline``: the model answers with all paragraphs;
* ``oracle``: it answers with the gold paragraphs only (titles in ``supporting_facts``),
  in their original order;
* for every method and k: the paragraphs are ranked, the top k are kept in their original
  order, and the model answers again with only those.

Rankers. Attribution methods (``at2``, ``loo``, ``attention``, ``contextcite``, ``proxy``,
...) attribute the *baseline answer* to the paragraphs (passage level). ``hierarchical``
runs at sentence level (its passage pass, then sentences of the kept passages); a
paragraph's score is the sum of its scored sentences, and paragraphs its rule dropped
rank after the kept ones, by their first-pass score. Two registered methods read
neither the model nor the answer (methods/baselines.py): ``random`` (a seeded
permutation, its seed drawn per example) and ``question-similarity`` (cosine similarity
of all-MiniLM-L6-v2 embeddings between the *question* and each paragraph: what a
retriever or reranker would keep). Every ranking is a method: which option takes the
per-example seed, and the name older caches hold its rankings under, are read from its
class (``example_seed_option``, ``cache_name``).

Answers are scored with the official HotpotQA exact match and F1. Means come with
percentile bootstrap 95% intervals; each method's F1 minus the baseline's, random's and
question-similarity's (same k) are paired: one set of resampled examples is used for
every statistic of the run.

Everything expensive (answers, keyed by the exact set of kept paragraphs, and rankings)
goes to a JSON-lines cache as soon as it is computed, so an interrupted run resumes, and
kept sets shared by several methods are answered once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError, MethodNotAvailableError
from ..methods import METHODS, available_methods
from ..methods.spec import MethodSpec
from ..models import LoadedModel, dtype_info, dtype_key, proxy_dtype_key
from ..pruning import keep_indices
from ..scoring import PromptKV, response_from_ids
from . import qa_metrics
from .cache import NotCached, ResultsCache, data_signature, jsonable
from .hotpotqa import HotpotExample, load_slice
from .setup import build_attributor, load_models

DEFAULT_METHODS = ("at2", "loo", "hierarchical", "proxy", "attention", "question-similarity", "random")
DEFAULT_KS = (1, 2, 3, 4, 5)
# every ranking's F1 is compared with the baseline's and these rankings' (same k)
REFERENCE_RANKINGS = ("random", "question-similarity")
COMPARE_TO = ("baseline", *REFERENCE_RANKINGS)
# 2: every ranking is a registered method, named as such (question-similarity was "similarity")
REPORT_VERSION = 2
ANSWER_KEYS = ("answer", "em", "f1", "seconds")  # what a record keeps of each answer
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = ".prune-eval-cache"

# Chosen on hotpotqa/dev.json only (examples 40-51; BENCHMARKS.md, "prune-eval: choosing the
# prompt"): the best of four instructions by mean F1 of the full-context and top-2 answers.
# The default model mostly ignores requests for brevity and answers in sentences.
PRUNE_INSTRUCTION = "Answer in as few words as possible, using only the documents above."
PRUNE_MAX_NEW_TOKENS = 24
N_BOOT = 2000
MAX_PREFIXES = 3  # prompt KV caches kept per example for prefix reuse (the full prompt's + 2)


def clean_answer(text: str) -> str:
    """The answer as scored: its first non-empty line, stripped."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass
class _Setup:
    attributor: Any
    cache: ResultsCache
    base: dict[str, Any]
    proxy: LoadedModel | None


def _ranker_seed(seed: int, example_id: str) -> int:
    return int(hashlib.sha256(f"prune:{seed}:{example_id}".encode()).hexdigest()[:8], 16)


def _answer(
    setup: _Setup,
    ex: HotpotExample,
    keep: Sequence[int],
    prefixes: list[PromptKV] | None = None,
    keep_response: bool = False,
) -> dict[str, Any]:
    """The model's answer with only the paragraphs ``keep`` (indices, original order).

    ``prefixes``: KV caches of this example's earlier prompts. The prompt reuses the one it
    shares the longest start with (kept paragraphs stay in their original order, so pruned
    prompts often share the system prompt and the first paragraphs with the full one), and
    its own cache is added to the list.
    """
    keep = sorted(int(i) for i in keep)
    desc = {**setup.base, "example": ex.id, "kind": "answer", "keep": keep}
    hit = setup.cache.get(desc)
    if hit is not None:
        return hit
    ps = [ex.passages[i] for i in keep]
    t0 = time.perf_counter()
    kw: dict[str, Any] = {} if prefixes is None else {"prefix": list(prefixes), "keep_prompt_kv": True}
    response = setup.attributor.generate(ex.question, ps, **kw)
    if prefixes is not None and response.prompt_kv is not None:
        prefixes.append(response.prompt_kv)
        del prefixes[1 : -(MAX_PREFIXES - 1)]  # keep the full prompt's and the latest ones
    seconds = time.perf_counter() - t0
    text = clean_answer(response.text)
    stored = setup.cache.put(
        desc,
        {
            "ids": response.token_ids,
            "raw": response.text,
            "answer": text,
            "seconds": seconds,
            "em": qa_metrics.exact_match(text, ex.answer),
            "f1": qa_metrics.f1_score(text, ex.answer),
        },
    )
    # the live response carries its AT2 capture (kept only where asked: it holds a KV cache)
    return {**stored, "response": response} if keep_response else stored


def _ranking(setup: _Setup, ex: HotpotExample, method: str, baseline: dict[str, Any], seed: int) -> dict[str, Any]:
    """Scores of the paragraphs (higher = keep first) and the time the ranking took."""
    spec = MethodSpec.parse(method)
    cls = spec.method_class
    desc = {**setup.base, "example": ex.id, "kind": "ranking", "method": cls.cached_as(method), "seed": seed}
    desc.update(spec.cache_identity_for(setup.base.get("model")))
    if spec.needs_proxy:
        desc["proxy"] = setup.proxy.name if setup.proxy is not None else None
        desc.update(proxy_dtype_key(setup.proxy))
    hit = setup.cache.get(desc)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    shared: dict[str, Any] = {"proxy": setup.proxy}
    if cls.example_seed_option:
        shared[cls.example_seed_option] = _ranker_seed(seed, ex.id)
    scores, info = _attribution_ranking(setup, ex, spec, shared, baseline["response"])
    seconds = time.perf_counter() - t0
    return setup.cache.put(desc, {"scores": jsonable(scores), "seconds": seconds, "info": info})


def _attribution_ranking(setup: _Setup, ex: HotpotExample, spec: MethodSpec, shared: dict[str, Any],
                         response: Any) -> tuple[np.ndarray, dict]:
    """The method's paragraph scores for the baseline answer, at the level it ranks at.
    ``spec``: a name or a name with options (``proxy-rescore:first_stage=at2:rescore=3``);
    ``shared``: the options the run gives every method that takes them."""
    cls = spec.method_class
    task = setup.attributor.task(ex.question, ex.passages, response, level=cls.ranking_level)
    out = setup.attributor.run(task, method=spec.create(shared))
    scores = cls.passage_scores(task, np.asarray(out.scores, dtype=np.float64), out.info or {})
    info: dict[str, Any] = {"forward_tokens": int(out.forward_tokens)}
    for key in ("kept_passages", "from_generation"):
        if key in (out.info or {}):
            info[key] = jsonable(out.info[key])
    return scores, info


def _method_availability(method: str, proxy: LoadedModel | None) -> str | None:
    """None if the method can run here, else why not."""
    spec = MethodSpec.parse(method)
    if spec.name not in available_methods():
        return f"no attribution method named {spec.name!r} in this version (available: {', '.join(available_methods())})"
    if spec.needs_proxy and proxy is None:
        return f"{method!r} needs a proxy model: pass --proxy-model NAME"
    return None


def _needs_proxy(method: str) -> bool:
    spec = MethodSpec.parse(method)
    return spec.name in available_methods() and spec.needs_proxy


def run_prune_eval(
    data: str,
    n: int = 200,
    methods: Sequence[str] = DEFAULT_METHODS,
    ks: Sequence[int] = DEFAULT_KS,
    model: str | LoadedModel = "smollm2-135m",
    *,
    proxy_model: str | LoadedModel | None = None,
    instruction: str = PRUNE_INSTRUCTION,
    max_new_tokens: int = PRUNE_MAX_NEW_TOKENS,
    seed: int = 0,
    offset: int = 0,
    n_boot: int = N_BOOT,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
    markdown: str | Path | None = None,
    command: str | None = None,
    oracle: bool = True,
    dtype: Any = None,
    read_caches: Sequence[str | Path] = (),
    cached_only: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the pruning experiment; returns the report (see the module doc).
    ``read_caches`` and ``cached_only`` as in :class:`~.cache.ResultsCache`: a report of
    the examples parallel runs have finished."""
    methods = list(dict.fromkeys(m.strip() for m in methods if m and m.strip()))
    ks = sorted(dict.fromkeys(int(k) for k in ks))
    if not ks or any(k < 1 for k in ks):
        raise InputError(f"--k needs positive integers, got {ks}")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    cache = ResultsCache(cache_dir, read_caches, cached_only)
    examples = load_slice(data, n, offset)
    target, proxy = load_models(model, proxy_model, needs_proxy=any(_needs_proxy(m) for m in methods), dtype=dtype)
    unavailable = {m: why for m in methods if (why := _method_availability(m, proxy)) is not None}
    attributor = build_attributor(target, instruction=instruction, max_new_tokens=max_new_tokens)
    base = {
        "v": CACHE_VERSION,
        "data": data_signature(data),
        "model": attributor.model_name,
        "instruction": instruction,
        "system_prompt": attributor.layout.system_prompt,
        "max_new_tokens": max_new_tokens,
        **dtype_key(target),
    }
    setup = _Setup(attributor, cache, base, proxy)
    runnable = [m for m in methods if m not in unavailable]
    per_example, not_cached = [], []
    with tqdm(total=len(examples) * (2 + len(runnable)), desc="prune-eval", unit="step", disable=not progress) as bar:
        for ex in examples:
            try:
                per_example.append(_example(setup, ex, runnable, unavailable, ks, seed, oracle, bar))
            except NotCached:
                not_cached.append(ex.id)
    if not per_example:
        raise InputError(f"none of the {len(examples)} examples has all its results in the cache")
    # a method that became unavailable part-way is dropped from every example
    for rec in per_example:
        for m in list(rec["methods"]):
            if m in unavailable:
                del rec["methods"][m]
    report = summarize(per_example, methods, ks, unavailable, n_boot=n_boot, seed=seed)
    report["by_type"] = summarize_by_type(per_example, methods, ks, unavailable, n_boot=n_boot, seed=seed)
    report.update({
        "version": REPORT_VERSION,
        "model": attributor.model_name,
        **dtype_info(target),
        "proxy_model": proxy.name if proxy is not None else None,
        "data": str(data),
        "offset": offset,
        "options": {"instruction": instruction, "max_new_tokens": max_new_tokens, "seed": seed, "n_boot": n_boot, "ks": ks},
        "examples": per_example,
    })
    if cached_only:
        report["not_cached"] = not_cached  # left out: some answer or ranking is not computed yet
    if markdown:
        Path(markdown).write_text(markdown_table(report, command=command), encoding="utf-8")
    return report


def _example(setup: _Setup, ex: HotpotExample, runnable: list[str], unavailable: dict[str, str],
             ks: list[int], seed: int, oracle: bool, bar: Any) -> dict[str, Any]:
    """One example: baseline and oracle answers, every ranking, then every pruned answer.
    ``runnable`` and ``unavailable`` are updated when a method turns out not to run."""
    short, n_par = ex.id[:8], len(ex.passages)
    gold = [i for i, p in enumerate(ex.passages) if p.title in ex.gold_titles]
    rec: dict[str, Any] = {"id": ex.id, "type": ex.type, "question": ex.question, "gold_answer": ex.answer, "gold": gold}
    bar.set_postfix_str(f"{short} baseline")
    prefixes: list[PromptKV] = []
    base_ans = _answer(setup, ex, range(n_par), prefixes, keep_response=True)
    baseline = base_ans if "response" in base_ans else {  # answered in an earlier run: no capture
        **base_ans, "response": response_from_ids(setup.attributor.lm.tokenizer, base_ans["ids"])}
    rec["baseline"] = {k: base_ans[k] for k in ANSWER_KEYS}
    bar.update(1)
    bar.set_postfix_str(f"{short} oracle")
    rec["oracle"] = {k: v for k, v in _answer(setup, ex, gold, prefixes).items() if k in ANSWER_KEYS} if oracle and gold else None
    bar.update(1)
    # Every ranking first, then the second answers: AT2 and attention read what the
    # baseline's generation captured, which later generations would replace.
    rankings: dict[str, dict[str, Any]] = {}
    for m in list(runnable):
        bar.set_postfix_str(f"{short} {m}")
        try:
            rankings[m] = _ranking(setup, ex, m, baseline, seed)
        except MethodNotAvailableError as exc:
            unavailable[m] = str(exc)
            runnable.remove(m)
            bar.update(1)
    rec["methods"] = _pruned_answers(setup, ex, rankings, ks, gold, prefixes)
    bar.update(len(rankings))
    return rec



def _pruned_answers(setup: _Setup, ex: HotpotExample, rankings: dict[str, dict[str, Any]], ks: list[int],
                    gold: list[int], prefixes: list[PromptKV]) -> dict[str, Any]:
    n_par = len(ex.passages)
    kept = {
        (m, k): keep_indices([np.nan if v is None else float(v) for v in rk["scores"]], k=min(k, n_par))
        for m, rk in rankings.items()
        for k in ks
    }
    # Answer the kept sets in sorted order: neighbours share the longest prompt starts.
    answers = {keep: _answer(setup, ex, keep, prefixes) for keep in sorted({tuple(sorted(v)) for v in kept.values()})}
    prefixes.clear()
    methods: dict[str, Any] = {}
    for m, rk in rankings.items():
        mres: dict[str, Any] = {"scores": rk["scores"], "seconds": rk["seconds"], "info": rk.get("info", {}), "k": {}}
        for k in ks:
            keep = kept[(m, k)]
            a = answers[tuple(sorted(keep))]
            mres["k"][str(k)] = {
                "keep": keep,
                **{key: a[key] for key in ANSWER_KEYS},
                "gold_recall": (len(set(keep) & set(gold)) / len(gold)) if gold else None,
            }
        methods[m] = mres
    return methods


def summarize(
    per_example: list[dict[str, Any]],
    methods: Sequence[str],
    ks: Sequence[int],
    unavailable: dict[str, str] | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Means, bootstrap intervals and paired differences from per-example records."""
    unavailable = dict(unavailable or {})
    n = len(per_example)
    if n == 0:
        raise InputError("no examples to summarize")
    idx = qa_metrics.bootstrap_indices(n, n_boot, seed)

    def stat(values: Sequence[float]) -> dict[str, Any]:
        return qa_metrics.mean_ci(values, idx)

    base_f1 = np.array([r["baseline"]["f1"] for r in per_example])
    report: dict[str, Any] = {
        "n": n,
        "baseline": {
            "f1": stat(base_f1),
            "em": stat([r["baseline"]["em"] for r in per_example]),
            "seconds_per_example": float(np.mean([r["baseline"]["seconds"] for r in per_example])),
        },
    }
    with_oracle = [r for r in per_example if r.get("oracle")]
    if with_oracle:
        o_idx = qa_metrics.bootstrap_indices(len(with_oracle), n_boot, seed)
        report["oracle"] = {
            "f1": qa_metrics.mean_ci([r["oracle"]["f1"] for r in with_oracle], o_idx),
            "em": qa_metrics.mean_ci([r["oracle"]["em"] for r in with_oracle], o_idx),
            "n": len(with_oracle),
            "seconds_per_example": float(np.mean([r["oracle"]["seconds"] for r in with_oracle])),
        }
    else:
        report["oracle"] = None

    def column(m: str, k: int, key: str) -> np.ndarray | None:
        if m not in per_example[0]["methods"]:
            return None
        return np.array([r["methods"][m]["k"][str(k)][key] for r in per_example], dtype=np.float64)

    out: dict[str, Any] = {}
    for m in methods:
        if m in unavailable or m not in per_example[0]["methods"]:
            out[m] = {"unavailable": unavailable.get(m, "not run")}
            continue
        secs = float(np.mean([r["methods"][m]["seconds"] for r in per_example]))
        out[m] = {}
        for k in ks:
            f1 = column(m, k, "f1")
            entry: dict[str, Any] = {"f1": stat(f1), "em": stat(column(m, k, "em"))}
            refs = {"baseline": base_f1, **{r: column(r, k, "f1") for r in REFERENCE_RANKINGS}}
            for name in COMPARE_TO:
                ref = refs[name]
                entry[f"f1_minus_{name}"] = None if ref is None or (name == m) else stat(f1 - ref)
            recalls = [r["methods"][m]["k"][str(k)]["gold_recall"] for r in per_example]
            recalls = [x for x in recalls if x is not None]
            entry["gold_recall"] = float(np.mean(recalls)) if recalls else None
            entry["seconds_per_example"] = secs
            entry["answer_seconds_per_example"] = float(
                np.mean([r["methods"][m]["k"][str(k)]["seconds"] for r in per_example])
            )
            out[m][str(k)] = entry
    report["methods"] = out
    return report


def summarize_by_type(
    per_example: list[dict[str, Any]],
    methods: Sequence[str],
    ks: Sequence[int],
    unavailable: dict[str, str] | None = None,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`summarize` per HotpotQA question type ("bridge", "comparison"), over the
    examples whose records carry it (records of files without a ``type`` are left out)."""
    types = sorted({r["type"] for r in per_example if r.get("type")})
    return {t: summarize([r for r in per_example if r.get("type") == t], methods, ks, unavailable, **kwargs)
            for t in types}


def current_examples(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A report's per-example records with every ranking under its method's current name:
    reports older than :data:`REPORT_VERSION` 2 name a ranking by the name its class
    declares it was cached under (``question-similarity`` was ``similarity``)."""
    if report.get("version", 1) >= REPORT_VERSION:
        return report["examples"]
    renamed = {cls.cache_name: cls.name for cls in METHODS.values() if cls.cache_name}
    return [{**rec, "methods": {renamed.get(m, m): v for m, v in rec["methods"].items()}} for rec in report["examples"]]


# ------------------------------------------------------------------ markdown
def _f(x: Any, d: int = 3) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _ms(s: dict[str, Any] | None, d: int = 3) -> str:
    if not s or s.get("mean") is None:
        return "-"
    lo, hi = s["ci95"]
    return f"{s['mean']:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


def markdown_table(report: dict[str, Any], command: str | None = None) -> str:
    lines = []
    if command:
        lines += ["```", command, "```", ""]
    lines.append(f"n = {report['n']} examples, model `{report['model']}`.")
    lines.append("")
    diffs = " | ".join(f"F1 - {name}" for name in COMPARE_TO)
    blank = " |" * len(COMPARE_TO)
    lines.append(f"| ranking | k | F1 [95% CI] | EM | {diffs} | gold recall | ranking s/ex |")
    lines.append("|---|---|---|---|" + "---|" * len(COMPARE_TO) + "---|---|")
    b = report["baseline"]
    lines.append(f"| baseline (all paragraphs) | all | {_ms(b['f1'])} | {_f(b['em']['mean'])} |{blank} | |")
    o = report.get("oracle")
    if o:
        lines.append(f"| oracle (gold paragraphs) | 2 | {_ms(o['f1'])} | {_f(o['em']['mean'])} |{blank} 1.000 | |")
    for m, per_k in report["methods"].items():
        if "unavailable" in per_k:
            lines.append(f"| {m} | - | unavailable: {per_k['unavailable']} | |{blank} | |")
            continue
        for k, e in per_k.items():
            cells = " | ".join(_ms(e.get(f"f1_minus_{name}")) for name in COMPARE_TO)
            lines.append(
                f"| {m} | {k} | {_ms(e['f1'])} | {_f(e['em']['mean'])} | {cells} | {_f(e['gold_recall'])} | "
                f"{_f(e['seconds_per_example'], 2)} |"
            )
    for qtype, sub in report.get("by_type", {}).items():
        lines += ["", f"By question type: **{qtype}** (n = {sub['n']}), F1 and F1 - baseline.", ""]
        lines += ["| ranking | " + " | ".join(f"k={k}" for k in report["options"]["ks"]) + " |",
                  "|---|" + "---|" * len(report["options"]["ks"])]
        lines.append(f"| baseline (all paragraphs) | {_ms(sub['baseline']['f1'])} |" + " |" * (len(report["options"]["ks"]) - 1))
        for m, per_k in sub["methods"].items():
            if "unavailable" not in per_k:
                cells = [f"{_ms(e['f1'])}; {_ms(e['f1_minus_baseline'])}" for e in per_k.values()]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_KS", "DEFAULT_METHODS", "PRUNE_INSTRUCTION", "clean_answer", "current_examples", "markdown_table",
    "run_prune_eval", "summarize", "summarize_by_type",
]
