"""``attribot-rag calibrate``: fit a model's citation calibration on dev data.

Two values only data can tell, fitted on cite-eval's evidence records of the model's own
answers and of answers given as text (docs/architecture.md, Citations > Calibration):

* the AT2 null floor: the ``NULL_QUANTILE`` quantile of AT2 scores of sentences outside
  the gold paragraphs (what sources that support nothing reach);
* the least support: among the candidates the support check saw, the threshold that best
  separates gold evidence from the rest (highest F1 of "support >= t" as a classifier).

* the context-gain gate: among ``GATE_GRID``, the gate under which the default policy
  (with the floor and least support above) cites best on these records: the mean over
  answer modes of F1(precision, recall) minus the share of answers left uncited. Where
  the records hold no text answer's context gain, the gate keeps its generic value.

The result is a
:class:`~attribot_rag.citations.Calibration` file; ship it beside the model's AT2 weights
(``<weights>.calibration.json``) or pass it as ``Attributor(calibration=path)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..citations import DEFAULT_POLICY, GENERIC_MIN_CONTEXT_GAIN, Calibration, CitationPolicy, CompanionModel, ResolvedPolicy
from ..citations.companions import candidate_features
from ..errors import InputError
from ..methods.at2 import AT2
from ..sources import make_sources
from .cite_data import CiteExample
from .cite_report import evidence, sentence_sources

NULL_QUANTILE = 0.99
GATE_GRID: tuple[float | None, ...] = (None, 0.0, 0.02, 0.05, 0.1)  # nats per token; None: no gate
SUPPORT_GRID = tuple(round(x, 3) for x in np.arange(0.0, 0.505, 0.01))


def null_scores(items: Sequence[tuple[CiteExample, str, dict[str, Any]]], ranker: str = AT2.name) -> list[float]:
    """Ranker scores of sources outside the gold passages, for the model's own answers."""
    out = []
    for ex, mode, rec in items:
        if mode != "own":
            continue
        sources = make_sources(ex.passages, "sentence")
        for row in rec["scores"].get(ranker) or []:
            out += [float(v) for s, v in zip(sources, row or []) if v is not None and s.passage_id not in ex.gold_passages]
    return out


def labelled_support(
    items: Sequence[tuple[CiteExample, str, dict[str, Any]]], policy: CitationPolicy = DEFAULT_POLICY, ranker: str = AT2.name
) -> list[tuple[float, bool]]:
    """(support, is gold evidence) for every candidate the policy checks, in every sentence."""
    out = []
    for ex, _, rec in items:
        sources = make_sources(ex.passages, "sentence")
        for ev in evidence(rec, ranker, policy):
            for i, v in (ev.support or {}).items():
                if v is None or v != v:
                    continue
                src = sources[int(i)]
                gold = ex.is_gold_source(src) if ex.gold_facts else src.passage_id in ex.gold_passages
                out.append((float(v), bool(gold)))
    return out


def best_threshold(labelled: Sequence[tuple[float, bool]], grid: Sequence[float] = SUPPORT_GRID) -> float:
    """The grid value whose "support >= t" best separates gold from other candidates (F1)."""
    if not any(g for _, g in labelled):
        raise InputError("no checked candidate is gold evidence: calibrate on more examples")
    values = np.array([v for v, _ in labelled])
    gold = np.array([g for _, g in labelled])

    def f1(t: float) -> float:
        pred = values >= t
        tp = float(np.sum(pred & gold))
        return 0.0 if tp == 0 else 2 * tp / (float(np.sum(pred)) + float(np.sum(gold)))

    return max(grid, key=lambda t: (f1(t), -t))


def citation_quality(
    items: Sequence[tuple[CiteExample, str, dict[str, Any]]], policy: CitationPolicy, cal: Calibration, ranker: str = AT2.name
) -> float:
    """Mean over answer modes of F1(precision, recall) - uncited share, over correct
    answers (sentence-level gold where the data has it, else passage-level)."""
    from .cite_report import STATS, Citer, answer_metrics

    citer = Citer("calibrating", ranker, policy, cal)
    by: dict[str, list[dict[str, Any]]] = {}
    for ex, mode, rec in items:
        row = answer_metrics(citer, ex, mode, rec, cal.model)
        if row["correct"]:
            by.setdefault(mode, []).append(row)
    out = []
    for rows in by.values():
        level = "sentence" if any(r["facts"] for r in rows) else "passage"
        out.append(mode_quality(STATS[f"precision_{level}"](rows), STATS[f"recall_{level}"](rows),
                                STATS["uncited_with_gold"](rows)))
    return float(np.mean(out)) if out else float("nan")


def mode_quality(precision: float | None, recall: float | None, uncited: float | None) -> float:
    """One answer mode's citation quality: F1(precision, recall) - the uncited share."""
    p, r = precision or 0.0, recall or 0.0
    return (0.0 if p + r == 0 else 2 * p * r / (p + r)) - (uncited or 0.0)


def best_gate(items: Sequence[tuple[CiteExample, str, dict[str, Any]]], cal: Calibration, ranker: str = AT2.name) -> float | None:
    """The context-gain gate of ``GATE_GRID`` the default policy cites best with (on a tie,
    the one that refuses least: no gate, else the lowest)."""
    return max(GATE_GRID, key=lambda g: (citation_quality(items, DEFAULT_POLICY, replace(cal, min_context_gain=g), ranker),
                                         1.0 if g is None else -g))


def companion_data(
    items: Sequence[tuple[CiteExample, str, dict[str, Any]]], cal: Calibration, ranker: str = AT2.name,
    policy: CitationPolicy = DEFAULT_POLICY,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels (a supporting-fact sentence) of every candidate a companion is
    chosen from: in each sentence the policy (the default) cites (by support, its fallback
    and bridges; a verdict has its own rule), the sources it does not cite. Sentence-level
    gold only (HotpotQA)."""
    rp = ResolvedPolicy.of(policy.with_options(companion_probability=None), ranker, cal.model, cal)
    xs, gold = [], []
    for ex, _, rec in items:
        if not ex.gold_facts:
            continue
        sources = sentence_sources(ex)
        sentences = evidence(rec, ranker, rp.policy, ex)
        for ev, choice in zip(sentences, rp.policy.explain_answer(sentences, per_token=rp.per_token)):
            if not choice.sources or choice.kind == "question" or ev.scores is None or ev.terms is None:
                continue
            candidates, x = candidate_features(ev.scores, choice.sources, ev.terms, ev.passage_of or [])
            xs.append(x)
            gold += [ex.is_gold_source(sources[i]) for i in candidates]
    if not xs:
        raise InputError("no record with sentence-level gold evidence (HotpotQA): companions cannot be fitted")
    return np.vstack(xs), np.array(gold, dtype=bool)


def fit_companion(
    items: Sequence[tuple[CiteExample, str, dict[str, Any]]], cal: Calibration, ranker: str = AT2.name,
    policy: CitationPolicy = DEFAULT_POLICY,
) -> Calibration:
    """The calibration with a companion model fitted on these records, for the citations
    ``policy`` makes before companions."""
    x, gold = companion_data(items, cal, ranker, policy)
    note = f"companion model = logistic regression over {len(gold)} candidates ({int(gold.sum())} supporting facts); "
    return replace(cal, companion=CompanionModel.fit(x, gold), fitted_on=cal.fitted_on + note)


def has_text_gains(items: Sequence[tuple[CiteExample, str, dict[str, Any]]]) -> bool:
    return any(mode != "own" and rec.get("gain") is not None for _, mode, rec in items)


def fit(
    items: Sequence[tuple[CiteExample, str, dict[str, Any]]], model: str, fitted_on: str, ranker: str = AT2.name
) -> Calibration:
    """The calibration these records support, for the AT2 scores recorded as ``ranker``
    (another weight set is recorded as ``at2:weights=FILE``)."""
    nulls = null_scores(items, ranker)
    if len(nulls) < 20:
        raise InputError(f"only {len(nulls)} null scores: calibrate on more examples (own answers)")
    cal = Calibration(
        model=model,
        fitted_on=f"{fitted_on}: AT2 null floor = {NULL_QUANTILE} quantile of {len(nulls)} scores outside the gold "
        f"paragraphs; least support = best F1 over {len(labelled_support(items, ranker=ranker))} checked candidates; ",
        floors={str(AT2.null_floor_key): round(float(np.quantile(nulls, NULL_QUANTILE)), 5)},
        min_context_gain=GENERIC_MIN_CONTEXT_GAIN,
        min_support=best_threshold(labelled_support(items, ranker=ranker)),
    )
    if not has_text_gains(items):
        cal = replace(cal, fitted_on=cal.fitted_on + "context-gain gate: generic (no text answer's gain recorded); ")
    else:
        cal = replace(cal, min_context_gain=best_gate(items, cal, ranker), fitted_on=cal.fitted_on + (
            f"context-gain gate = best of {list(GATE_GRID)} for the default policy (F1 - uncited, mean over answer modes); "))
    if not any(ex.gold_facts for ex, _, _ in items):
        return replace(cal, fitted_on=cal.fitted_on + "no companion model (no sentence-level gold)")
    return fit_companion(items, cal, ranker)


__all__ = ["GATE_GRID", "NULL_QUANTILE", "best_gate", "best_threshold", "citation_quality", "companion_data", "fit",
           "fit_companion", "labelled_support", "mode_quality", "null_scores"]
