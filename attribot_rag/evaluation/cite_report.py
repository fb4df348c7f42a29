"""Citation quality from cite-eval's evidence records, for any citer.

A *citer* is a ranker (a method whose scores the run recorded) and a
:class:`~attribot_rag.citations.CitationPolicy`, applied to the records by the very rule
:func:`~attribot_rag.citations.cite` runs (``policy.choose``); or the trivial baseline
that cites, for every sentence, the first retrieved passage's sentence most similar to it.

Per answer (one example in one answer mode), over its complete sentences:

* **precision**: cited sources that are gold evidence (a supporting-fact sentence;
  passage level: a gold passage), micro-averaged over citations;
* **recall**: gold facts (and gold passages) cited by some sentence of the answer;
* **uncited**: correct answers with their gold evidence in the context that cite nothing;
* **cost**: citation seconds over generation seconds (own answers) or over one forward
  pass over prompt + answer (answers given as text).

Means come with percentile-bootstrap 95% intervals over answers (docs/architecture.md,
Metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..citations import Calibration, Choice, CitationPolicy, ResolvedPolicy, SentenceEvidence
from ..citations.relevance import QuestionTerms, verdict
from ..citations.support import SupportCache, contrast, contrast_sets
from ..sources import Source, make_sources
from . import qa_metrics
from .cite_data import SUPPORT_RANKER, CiteExample

FIRST_RETRIEVED = "first-retrieved"
N_BOOT = 1000
CORRECT_F1 = 0.5


@dataclass(frozen=True)
class Citer:
    """A row of the report: a ranker read from the records and a policy (or the baseline)."""

    name: str
    ranker: str
    policy: CitationPolicy | None = None  # None: the first-retrieved baseline
    calibration: Calibration | None = None  # None: the one shipped for the model


def correct(ex: CiteExample, mode: str, answer: str) -> bool:
    """An answer given as text is the gold answer; the model's own is correct when its F1
    against a gold answer is >= 0.5 or it contains one (sentences are longer than spans)."""
    if mode != "own":
        return True
    norm = qa_metrics.normalize_answer(answer)
    return any(
        qa_metrics.f1_score(answer, gold) >= CORRECT_F1 or (qa_metrics.normalize_answer(gold) or "\0") in norm
        for gold in ex.answers
    )


def evidence(rec: dict[str, Any], ranker: str, policy: CitationPolicy, ex: CiteExample | None = None) -> list[SentenceEvidence]:
    """What ``policy`` reads per sentence, from the record: the ranker's scores, the context
    gain, and (for the ranker the run checked) each candidate's support against the
    policy's reference sources; with the example, each source's relevance to the question
    and passage (computed, not recorded: they need no model), which bridges read."""
    scores = rec["scores"].get(ranker)
    if scores is None:
        raise KeyError(f"the records hold no scores of {ranker!r}: run cite-eval with it in --methods")
    checked = ranker in rec.get("checked", [rec.get("ranker", SUPPORT_RANKER)]) and "support_lp" in rec
    cache = support_cache(rec) if checked else None
    # the references are the run's ranker's lowest-scored sources (their log-probs are kept)
    reference = policy.reference_sources(rec["whole"][rec.get("ranker", SUPPORT_RANKER)]) if checked else []
    gains = rec.get("gain") or [None] * len(scores)
    bridged = ex is not None and policy.reads_question()
    terms = example_terms(ex) if bridged else None  # type: ignore[arg-type]
    passage_of = [s.passage_index for s in sentence_sources(ex)] if bridged else None  # type: ignore[arg-type]
    out = []
    for k, s in enumerate(scores):
        target = rec["targets"][k]
        support = joint = None
        if cache is not None and s is not None and target is not None:
            ref = [i for i in reference if i in cache.alone]
            cands = [i for i in policy.to_check(s) if i in cache.alone]
            support = contrast(cache, cands, tuple(target), ref)
            pair = policy.joint_to_check(s, support)
            if pair is not None:  # the pairs the run recorded (a pair not recorded: not checked)
                companions = [j for j in pair[1] if cache.has((pair[0], j))]
                joint = contrast_sets(cache, pair[0], companions, tuple(target), ref)
        tokens = 1 if target is None else target[1] - target[0]
        out.append(SentenceEvidence(s, tokens, gains[k], support, joint, terms, passage_of, _verdict(policy, ex, rec, k)))
    return out


def _verdict(policy: CitationPolicy, ex: CiteExample | None, rec: dict[str, Any], k: int) -> str | None:
    """Whether sentence ``k`` is a yes/no verdict, as ``cite`` tells (supports policies
    that cite verdicts by their rule only)."""
    if ex is None or not policy.cites_verdicts():
        return None
    a, b = rec["sentences"][k]
    return verdict(ex.question, rec["answer"][a:b])


def support_cache(rec: dict[str, Any]) -> SupportCache:
    """The support check's log-probs a record keeps (and its pairs, where recorded)."""
    lp = rec["support_lp"]
    as_array = lambda v: np.array([np.nan if x is None else x for x in v], dtype=np.float64)  # noqa: E731
    together = {tuple(int(i) for i in key.split(",")): as_array(v) for key, v in (rec.get("joint_lp") or {}).items()}
    return SupportCache(as_array(lp["none"]), {int(i): as_array(v) for i, v in lp["alone"].items()}, together)


_SOURCES: dict[tuple[str, tuple[str, ...]], list[Source]] = {}
_TERMS: dict[tuple[str, tuple[str, ...]], QuestionTerms] = {}


def sentence_sources(ex: CiteExample) -> list[Source]:
    """The example's sentence sources, split once per example (a report applies many citers)."""
    key = (ex.id, tuple(p.id for p in ex.passages))
    if key not in _SOURCES:
        _SOURCES[key] = make_sources(ex.passages, "sentence")
    return _SOURCES[key]


def example_terms(ex: CiteExample) -> QuestionTerms:
    """The question's and the sentence sources' terms, as ``cite`` computes them (once per example)."""
    key = (ex.id, tuple(p.id for p in ex.passages))
    if key not in _TERMS:
        _TERMS[key] = QuestionTerms.of(ex.question, ex.passages, sentence_sources(ex))
    return _TERMS[key]


def explained(citer: Citer, ex: CiteExample, rec: dict[str, Any], model: str) -> list[Choice]:
    """The policy's choice for every sentence of the record, by the rule ``cite`` runs."""
    rp = ResolvedPolicy.of(citer.policy, citer.ranker, model, citer.calibration)  # type: ignore[arg-type]
    return rp.policy.explain_answer(evidence(rec, citer.ranker, rp.policy, ex), per_token=rp.per_token)


def choose(citer: Citer, ex: CiteExample, rec: dict[str, Any], model: str) -> tuple[list[list[int]], bool]:
    """The sources each sentence cites under the citer (indices into the sentence sources),
    and whether a supports policy cited some sentence by its fallback (which reads the gain)."""
    if citer.policy is None:
        return _first_retrieved(ex, rec), False
    choices = explained(citer, ex, rec, model)
    chosen = [choice.sources for choice in choices]
    if rec.get("truncated") and chosen:
        chosen[-1] = []  # a sentence the length limit cut is not cited (as cite does)
    fallback = citer.policy.evidence == "supports" and any(choice.kind == "used" for choice in choices)
    return chosen, fallback


def _first_retrieved(ex: CiteExample, rec: dict[str, Any]) -> list[list[int]]:
    sources = sentence_sources(ex)
    first = [s.index for s in sources if s.passage_index == 0]
    sims = rec["scores"].get("similarity")
    out = []
    for k in range(len(rec["sentences"])):
        row = sims[k] if sims is not None else None
        if row is None:
            out.append(first[:1])
            continue
        out.append([max(first, key=lambda i: (row[i] if row[i] is not None else -1e9, -i))])
    return out


def answer_metrics(citer: Citer, ex: CiteExample, mode: str, rec: dict[str, Any], model: str) -> dict[str, Any]:
    """One answer's counts under one citer."""
    sources = sentence_sources(ex)
    chosen, fell_back = choose(citer, ex, rec, model)
    cited: list[Source] = [sources[i] for c in chosen for i in c]
    ok = correct(ex, mode, rec["answer"])
    facts = ex.gold_facts
    return {
        "correct": ok,
        "citations": len(cited),
        "gold_sentence": sum(ex.is_gold_source(s) for s in cited) if facts else None,
        "gold_passage": sum(s.passage_id in ex.gold_passages for s in cited),
        "facts": len(facts),
        "facts_cited": sum(ex.fact_cited(f, cited) for f in facts),
        "passages": len(ex.gold_passages & {p.id for p in ex.passages}),
        "passages_cited": len(ex.gold_passages & {s.passage_id for s in cited}),
        "uncited": not cited,
        "gold_in_context": ex.gold_in_context(),
        "cost": _cost(citer, mode, rec, fell_back),
        "type": ex.type,
    }


def _cost(citer: Citer, mode: str, rec: dict[str, Any], fallback: bool = False) -> float | None:
    """Seconds the citer's evidence cost over the answer's reference time (the gain only
    where the policy reads it: contributive rules, or a supports policy's fallback)."""
    sec = rec["seconds"]
    if citer.policy is None:
        spent = sec.get("similarity", 0.0)
    else:
        spent = sec.get(citer.ranker, 0.0)
        if citer.policy.evidence == "supports":
            spent += rec.get("support_seconds", 0.0)
            if citer.policy.joint_gain is not None:  # every recorded pair: an upper bound
                spent += sec.get("joint", 0.0)
        if citer.policy.min_context_gain is not None and (citer.policy.evidence == "used" or fallback):
            spent += sec.get("gain", 0.0)
    ref = sec.get("generation") if mode == "own" else sec.get("prefill")
    return spent / ref if ref else None


def _ratio(num: Sequence[float], den: Sequence[float]) -> float | None:
    d = float(np.sum(den))
    return float(np.sum(num)) / d if d else None


STATS: dict[str, Callable[[list[dict[str, Any]]], float | None]] = {
    "precision_sentence": lambda rows: _ratio(
        [r["gold_sentence"] for r in rows if r["facts"]], [r["citations"] for r in rows if r["facts"]]
    ),  # sentence-level gold exists for HotpotQA only
    "precision_passage": lambda rows: _ratio([r["gold_passage"] for r in rows], [r["citations"] for r in rows]),
    "recall_sentence": lambda rows: _ratio([r["facts_cited"] for r in rows], [r["facts"] for r in rows]),
    "recall_passage": lambda rows: _ratio([r["passages_cited"] for r in rows], [r["passages"] for r in rows]),
    "uncited_with_gold": lambda rows: _ratio(
        [r["uncited"] for r in rows if r["gold_in_context"]], [1 for r in rows if r["gold_in_context"]]
    ),
    "gold_cited_share": lambda rows: _ratio([r["passages_cited"] > 0 for r in rows], [1 for _ in rows]),
}


def summarize(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Each statistic with its 95% bootstrap interval (answers resampled)."""
    out: dict[str, Any] = {"answers": len(rows)}
    if not rows:
        return out
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(N_BOOT)]
    for name, stat in STATS.items():
        value = stat(rows)
        boots = [b for b in (stat([rows[i] for i in d]) for d in draws) if b is not None]
        lo, hi = (np.percentile(boots, [2.5, 97.5]).tolist() if boots else (None, None))
        out[name] = {"value": value, "ci": [lo, hi]}
    costs = [r["cost"] for r in rows if r["cost"] is not None]
    out["cost_median"] = float(np.median(costs)) if costs else None
    return out


def report(
    items: Sequence[tuple[CiteExample, str, dict[str, Any]]], citers: Sequence[Citer], model: str, correct_only: bool = True
) -> dict[str, Any]:
    """Per citer and answer mode (and HotpotQA question type), the summarized metrics."""
    out: dict[str, Any] = {}
    for citer in citers:
        by: dict[str, list[dict[str, Any]]] = {}
        for ex, mode, rec in items:
            row = answer_metrics(citer, ex, mode, rec, model)
            if correct_only and not row["correct"]:
                continue
            by.setdefault(mode, []).append(row)
            if row["type"]:
                by.setdefault(f"{mode}/{row['type']}", []).append(row)
        out[citer.name] = {group: summarize(rows) for group, rows in sorted(by.items())}
    return out


def default_citers() -> list[Citer]:
    """The rows the benchmark reports: the default policy, contributive evidence by each
    recorded ranker, the similarity citer and the first-retrieved baseline."""
    used = CitationPolicy(evidence="used")
    return [
        Citer("supports (default, at2 ranker)", "at2", CitationPolicy()),
        Citer("used: at2", "at2", used),
        Citer("used: at2, no gate", "at2", used.with_options(min_context_gain=None)),
        Citer("used: attention", "attention", used),
        Citer("similarity (MiniLM)", "similarity", used.with_options(min_context_gain=None)),
        Citer(FIRST_RETRIEVED, "similarity", None),
    ]


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("value") is None:
        return "-"
    lo, hi = stat["ci"]
    return f"{stat['value']:.2f}" + ("" if lo is None else f" [{lo:.2f}, {hi:.2f}]")


COLUMNS = (
    ("precision_sentence", "sentence precision"),
    ("recall_sentence", "fact recall"),
    ("precision_passage", "passage precision"),
    ("recall_passage", "passage recall"),
    ("uncited_with_gold", "uncited (gold in context)"),
)


def markdown_table(result: dict[str, Any], command: str | None = None) -> str:
    """The report as a Markdown table: a row per citer and answer mode (question types
    left to the JSON), each statistic with its 95% interval."""
    head = "| citer | answers | " + " | ".join(label for _, label in COLUMNS) + " | cost (median) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for name, groups in result.items():
        for group, stats in groups.items():
            if "/" in group:
                continue
            cost = stats.get("cost_median")
            cells = " | ".join(_cell(stats.get(key)) for key, _ in COLUMNS)
            lines.append(f"| {name} ({group}) | {stats['answers']} | {cells} | {'-' if cost is None else f'{cost:.2f}x'} |")
    if command:
        lines += ["", f"`{command}`"]
    return "\n".join(lines) + "\n"


__all__ = ["Citer", "FIRST_RETRIEVED", "answer_metrics", "choose", "correct", "default_citers", "evidence", "markdown_table", "report"]
