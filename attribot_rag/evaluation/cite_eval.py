"""The citation benchmark against gold evidence (``attribot-rag cite-eval``).

Per example and answer mode (``own``: the model's answer; ``external`` and
``external2``: the gold answer written as a sentence by two templates, as another LLM
would hand it over) the run records, per answer sentence, the *evidence a policy reads*:
every method's score for every source, the context gain, and the keep-only-this-source
support of the ranker's top candidates, with what each cost. Citation policies are then
applied to these records afterwards (:func:`attribot_rag.evaluation.cite_report.report`),
so choosing a threshold on the choice split needs no model run, and the held-out report
applies the chosen policy unchanged. Records go to a JSON-lines cache as soon as they
exist: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..citations.cite import looks_truncated as _looks_truncated
from ..citations.support import check_sources
from ..errors import InputError
from ..grounding import span_gain
from ..methods.spec import MethodSpec
from ..models import default_model, dtype_key
from ..scoring import response_from_ids
from ..sources import split_sentences
from .cache import ResultsCache, data_signature
from .cite_data import SUPPORT_RANKER, CiteExample

MODES = ("own", "external", "external2")
TEMPLATES = {"external": "The answer is {answer}.", "external2": "According to the documents, it is {answer}."}
DEFAULT_METHODS = ("at2", "attention", "similarity")  # recorded per sentence (the CLI's default)
SUPPORT_CANDIDATES = 3  # top sources by the ranker whose support is checked, per sentence
REFERENCE_CANDIDATES = 3  # lowest-ranked sources (whole answer) whose log-probs are kept
CACHE_VERSION = 2  # 2: log-probs of the support check kept (any reference can be computed)


@dataclass(frozen=True)
class SupportPlan:
    """Which sources the run checks for support: each listed ranker's top ``candidates`` per
    sentence (the first ranker, AT2 by default, is also the one whose lowest-scored sources
    are the references). Checking more, or more rankers, lets a policy with up to that many
    candidates, on any of them, be replayed from the records."""

    candidates: int = SUPPORT_CANDIDATES
    rankers: tuple[str, ...] = (SUPPORT_RANKER,)
    joint: bool = False  # also pairs of candidates kept together (kept beside each record)

    def __post_init__(self) -> None:
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise InputError(f"support candidates must be a positive integer, got {self.candidates!r}")
        if not self.rankers:
            raise InputError("the support check needs at least one ranker")

    def checked_against(self, methods: Sequence[str]) -> "SupportPlan":
        missing = [r for r in self.rankers if r not in methods]
        if missing:
            raise InputError(f"support ranker(s) {', '.join(missing)} not among the recorded methods {', '.join(methods)}")
        return self

    def key(self) -> dict[str, Any]:
        """Its part of the records' cache key (the original plan keeps the original keys)."""
        extra = {"support_rankers": list(self.rankers)} if self.rankers != (SUPPORT_RANKER,) else {}
        return {"support_candidates": self.candidates, **extra}


@dataclass
class CiteRun:
    attributor: Any
    cache: ResultsCache
    base: dict[str, Any]  # what every cache key shares (model, dtype, data, version)
    methods: Sequence[str] = DEFAULT_METHODS
    ranker: str = SUPPORT_RANKER  # the first of the plan's rankers
    gain_modes: Sequence[str] = MODES  # a text answer's gain costs one more full pass
    support_candidates: int = SUPPORT_CANDIDATES
    joint: bool = False  # also record pairs of sources kept together (``joint_gain`` policies)
    # rankers whose top candidates get the support check (default: the ranker alone), so a
    # policy can be replayed on any of them
    checked: Sequence[str] = ()
    prefill_every: int = 4  # time one plain forward pass over prompt + answer every k examples

    def record(self, ex: CiteExample, mode: str, position: int) -> dict[str, Any]:
        desc = {**self.base, "example": ex.id, "mode": mode, "methods": list(self.methods)}
        rec = self.cache.get(desc)
        if rec is None:
            rec = self.cache.put(desc, self._compute(ex, mode, position))
        if rec.get("gain") is None and mode in self.gain_modes:
            gain = self.cache.get(gain_desc(desc)) or self.cache.put(gain_desc(desc), self._gain(ex, rec))
            rec = with_gain(rec, gain)
        if self.joint:
            joint = self.cache.get(joint_desc(desc)) or self.cache.put(joint_desc(desc), self._joint(ex, rec))
            rec = with_joint(rec, joint)
        return rec

    def _joint(self, ex: CiteExample, rec: dict[str, Any]) -> dict[str, Any]:
        """Log-probs of the answer with pairs of sources kept together, kept beside its
        record: per checked ranker and sentence, the best-supported of its top k (every k
        up to the plan's) with each other of its top candidates, which is every pair a
        ``joint_gain`` policy with the default references and up to that many candidates
        checks (:meth:`CitationPolicy.joint_to_check`)."""
        from ..citations import CitationPolicy
        from ..citations.support import check_sets, contrast
        from .cite_report import support_cache

        answer = rec["answer"]
        if "answer_ids" in rec:
            answer = response_from_ids(self.attributor.lm.tokenizer, rec["answer_ids"])
        task = self.attributor.task(ex.question, ex.passages, answer, level="sentence")
        ids = list(task.response.token_ids)
        if ids != rec.get("answer_ids", ids) or len(ids) != rec["answer_tokens"]:
            why = "the answer's tokens were not recorded and it tokenizes differently as text"
            return {"together": None, "why": why, "seconds": 0.0}
        cache, pairs = support_cache(rec), set()
        ref = CitationPolicy().reference_sources(rec["whole"][rec["ranker"]])
        for ranker in rec.get("checked", [rec["ranker"]]):
            for s, target in zip(rec["scores"][ranker], rec["targets"]):
                if s is None or target is None:
                    continue
                top = _top(s, self.support_candidates)
                sup = contrast(cache, top, tuple(target), ref)
                for k in range(2, len(top) + 1):
                    best = max(top[:k], key=lambda i: (sup[i], -i))
                    pairs |= {tuple(sorted((best, j))) for j in top if j != best}
        t0, tok0 = time.perf_counter(), task.scorer.forward_tokens
        together = check_sets(task, sorted(pairs)).together
        return {
            "together": {",".join(map(str, key)): _finite(lp) for key, lp in together.items()},
            "seconds": time.perf_counter() - t0,
            "tokens": task.scorer.forward_tokens - tok0,
        }

    def _gain(self, ex: CiteExample, rec: dict[str, Any]) -> dict[str, Any]:
        """The context gain of each sentence of a recorded answer (one full pass for a
        text answer), kept beside its record: what a policy's fallback is gated by."""
        task = self.attributor.task(ex.question, ex.passages, rec["answer"], level="sentence")
        t0 = time.perf_counter()
        gains = [None if t is None else span_gain(task, tuple(t)) for t in rec["targets"]]
        return {"gain": gains, "seconds": time.perf_counter() - t0}

    def _answer(self, ex: CiteExample, mode: str) -> tuple[Any, float]:
        if mode == "own":
            t0 = time.perf_counter()
            response = self.attributor.generate(ex.question, ex.passages)
            return response, time.perf_counter() - t0
        return TEMPLATES[mode].format(answer=ex.answers[0]), 0.0

    def _compute(self, ex: CiteExample, mode: str, position: int) -> dict[str, Any]:
        att = self.attributor
        answer, gen_s = self._answer(ex, mode)
        task = att.task(ex.question, ex.passages, answer, level="sentence")
        spans = split_sentences(task.response.text)
        targets = [_token_slice(task.response, s) for s in spans]
        out: dict[str, Any] = {
            "answer": task.response.text,
            "sentences": [list(s) for s in spans],
            "targets": [None if t is None else list(t) for t in targets],
            "truncated": _looks_truncated(att, task.response),
            "prompt_tokens": len(task.prompt),
            "answer_tokens": len(task.response),
            "answer_ids": list(task.response.token_ids),  # the answer as scored (text may re-tokenize)
            "seconds": {"generation": gen_s},
            "tokens": {},
            "scores": {},
        }
        out["whole"] = {}
        for name in self.methods:
            t0, tok0 = time.perf_counter(), task.scorer.forward_tokens
            # a spec may carry options (``at2:weights=FILE``): built as bench builds it
            result = att.run(task, method=MethodSpec.parse(name).create(att.method_options))
            out["scores"][name] = [None if t is None else _finite(result.effects.query(t).scores) for t in targets]
            out["whole"][name] = _finite(result.scores)
            out["seconds"][name] = time.perf_counter() - t0
            out["tokens"][name] = task.scorer.forward_tokens - tok0
        out["ranker"] = self.ranker
        out["checked"] = list(self.checked_rankers)
        out.update(self._support(task, [out["scores"][r] for r in self.checked_rankers], out["whole"][self.ranker]))
        if mode in self.gain_modes:
            t0, tok0 = time.perf_counter(), task.scorer.forward_tokens
            out["gain"] = [None if t is None else span_gain(task, t) for t in targets]
            out["seconds"]["gain"] = time.perf_counter() - t0
            out["tokens"]["gain"] = task.scorer.forward_tokens - tok0
        if position % self.prefill_every == 0:
            t0 = time.perf_counter()
            task.scorer.logprobs(task.prompt.input_ids, task.response.token_ids)
            out["seconds"]["prefill"] = time.perf_counter() - t0
        return out

    @property
    def checked_rankers(self) -> list[str]:
        return list(dict.fromkeys([self.ranker, *self.checked]))

    def _support(self, task: Any, per_ranker: list, whole: list) -> dict[str, Any]:
        """Log-probs of the answer after each checked source alone (every checked ranker's
        top candidates), after the lowest-ranked (reference) sources alone and after no
        passage: any policy's support is a contrast of these
        (:func:`attribot_rag.citations.support.contrast`)."""
        cands = {i for scores in per_ranker for s in scores if s is not None for i in _top(s, self.support_candidates)}
        lowest = _top([None if v is None else -v for v in whole], REFERENCE_CANDIDATES)
        t0, tok0 = time.perf_counter(), task.scorer.forward_tokens
        cache = check_sources(task, sorted(cands | set(lowest)), no_context=True)  # kept for comparison
        return {
            "support_lp": {
                "none": _finite(cache.no_context),
                "alone": {str(i): _finite(v) for i, v in cache.alone.items()},
            },
            "lowest": lowest,
            "support_seconds": time.perf_counter() - t0,
            "support_tokens": task.scorer.forward_tokens - tok0,
        }


def _finite(scores: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(scores, dtype=np.float64)]


def _top(scores: Sequence[float | None], k: int) -> list[int]:
    valid = [(float(v), i) for i, v in enumerate(scores) if v is not None]
    return [i for _, i in sorted(valid, key=lambda t: (-t[0], t[1]))[:k]]


def _token_slice(response: Any, span: tuple[int, int]) -> tuple[int, int] | None:
    try:
        return response.token_slice(span)
    except InputError:
        return None


def collect(
    attributor: Any,
    examples: Sequence[CiteExample],
    *,
    data: str,
    cache: ResultsCache,
    modes: Sequence[str] = MODES,
    methods: Sequence[str] = DEFAULT_METHODS,
    gain_modes: Sequence[str] = MODES,
    support: "SupportPlan | None" = None,
) -> list[dict[str, Any]]:
    """Evidence records for every example and mode (cached ones are read back)."""
    for m in modes:
        if m not in MODES:
            raise InputError(f"unknown answer mode {m!r}: use {', '.join(MODES)}")
    plan = (support or SupportPlan()).checked_against(methods)
    base = _base(attributor.model_name, dtype_key(attributor.lm), data, methods, plan)
    run = CiteRun(attributor, cache, base, methods=methods, gain_modes=gain_modes,
                  ranker=plan.rankers[0], support_candidates=plan.candidates, checked=plan.rankers[1:], joint=plan.joint)
    rows = []
    for k, ex in enumerate(tqdm(examples, desc="cite-eval", unit="ex")):
        for mode in modes:
            rows.append({"example": ex, "mode": mode, "record": run.record(ex, mode, k)})
    return rows




# ------------------------------------------------------------------ the command
def load_examples(dataset: str, data: str, n: int, offset: int, embedder: Any = None) -> list[CiteExample]:
    """The benchmark's examples of a dataset ("hotpotqa" or "nq"), as a retriever hands them over."""
    from ..embeddings import load_embedder
    from .cite_data import load_hotpotqa_cite, load_nq_cite

    loaders = {"hotpotqa": load_hotpotqa_cite, "nq": load_nq_cite}
    if dataset not in loaders:
        raise InputError(f"unknown dataset {dataset!r}: use {', '.join(loaders)}")
    if n < 1 or offset < 0:
        raise InputError(f"--n must be >= 1 and --offset >= 0, got {n} and {offset}")
    return loaders[dataset](data, n, offset, embedder or load_embedder())


def cached_items(
    examples: Sequence[CiteExample], cache: ResultsCache, base: dict[str, Any], modes: Sequence[str], methods: Sequence[str]
) -> tuple[list[tuple[CiteExample, str, dict[str, Any]]], list[str]]:
    """The (example, mode, record) triples already in the cache, and the ids missing one."""
    items, missing = [], []
    for ex in examples:
        descs = [{**base, "example": ex.id, "mode": m, "methods": list(methods)} for m in modes]
        recs = [cache.data.get(cache.key(d)) for d in descs]
        if any(r is None for r in recs):
            missing.append(ex.id)
            continue
        gains = [cache.data.get(cache.key(gain_desc(d))) for d in descs]
        joints = [cache.data.get(cache.key(joint_desc(d))) for d in descs]
        for m, r, g, j in zip(modes, recs, gains, joints):
            r = r if g is None else with_gain(r, g)
            items.append((ex, m, r if j is None else with_joint(r, j)))
    return items, missing


def gain_desc(desc: dict[str, Any]) -> dict[str, Any]:
    """The cache key of a record's context gains, computed after it (text answers)."""
    return {**desc, "kind": "gain"}


def with_gain(rec: dict[str, Any], gain: dict[str, Any]) -> dict[str, Any]:
    return {**rec, "gain": gain["gain"], "seconds": {**rec["seconds"], "gain": gain["seconds"]}}


def joint_desc(desc: dict[str, Any]) -> dict[str, Any]:
    """The cache key of a record's pair log-probs, computed after it."""
    return {**desc, "kind": "joint"}


def with_joint(rec: dict[str, Any], joint: dict[str, Any]) -> dict[str, Any]:
    return {**rec, "joint_lp": joint["together"], "seconds": {**rec["seconds"], "joint": joint["seconds"]}}


def run_cite_eval(
    *,
    dataset: str,
    data: str,
    n: int,
    offset: int = 0,
    model: str | None = None,
    dtype: str | None = None,
    modes: Sequence[str] = MODES,
    methods: Sequence[str] = DEFAULT_METHODS,
    cache_dir: str | None = None,
    read_caches: Sequence[str] = (),
    cached_only: bool = False,
    command: str | None = None,
    support: SupportPlan | None = None,
) -> dict[str, Any]:
    """Collect (or read back) the evidence records, then report every default citer."""
    from .cite_report import default_citers, report
    from .setup import build_attributor, load

    plan = (support or SupportPlan()).checked_against(methods)
    examples = load_examples(dataset, data, n, offset)
    cache = ResultsCache(cache_dir, read_also=read_caches, cached_only=cached_only)
    if cached_only:
        lm_name = model or default_model()
        base = record_base(lm_name, dtype, data, methods, plan)
    else:
        att = build_attributor(load(model, dtype), level="sentence")
        lm_name = att.model_name
        collect(att, examples, data=data, cache=cache, modes=modes, methods=methods, support=plan)
        base = _base(lm_name, dtype_key(att.lm), data, methods, plan)
    items, missing = cached_items(examples, cache, base, modes, methods)
    return {
        "command": command,
        "dataset": dataset,
        "examples": f"{offset}-{offset + n - 1}",
        "model": lm_name,
        "answers": len(items),
        "missing": missing,
        "report": report(items, default_citers(), lm_name),
        "per_example": [{"example": ex.id, "mode": m, "answer": r["answer"]} for ex, m, r in items],
    }


def record_base(
    model: str, dtype: str | None, data: str, methods: Sequence[str], support: SupportPlan | None = None,
    at2_tag: str | None = None,
) -> dict[str, Any]:
    """The records' shared key without loading the model: the dtype as named (``auto``
    names no dtype, so its records are found only by a run that loads the model).
    ``at2_tag``: the cache tag of the AT2 weights that shipped when the records were made,
    where another set ships now (records of ``at2`` are read as that set's, never as the
    current one's)."""
    base = _base(model, {"dtypes": [dtype]} if dtype and dtype != "float32" else {}, data, methods, support)
    return {**base, "at2_weights": at2_tag} if at2_tag else base


def _base(
    model: str, dtype_entry: dict[str, Any], data: str, methods: Sequence[str], support: SupportPlan | None = None
) -> dict[str, Any]:
    # each method's identity on this model too (e.g. the AT2 weights that ship for it)
    identity = {k: v for m in methods for k, v in MethodSpec.parse(m).cache_identity_for(model).items()}
    return {"v": CACHE_VERSION, "model": model, **dtype_entry, "data": data_signature(data),
            **(support or SupportPlan()).key(), **identity}


__all__ = [
    "MODES", "TEMPLATES", "CiteRun", "SupportPlan", "cached_items", "collect", "load_examples", "record_base", "run_cite_eval",
]
