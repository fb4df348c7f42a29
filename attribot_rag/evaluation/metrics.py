"""Attribution-quality metrics (docs/architecture.md, Metrics), on plain numpy arrays.

Conventions shared by every function here:

* ``scores`` is one value per source; ``nan`` means *not scored* (hierarchical drops
  passages, proxy-rescore rescores only a few sources). An unscored source is never
  "retrieved": it ranks below every scored source and never counts as a top source.
* ``exact`` is the ground truth (the target model's exact LOO scores, no nan).

Metrics:

* :func:`outlier_positives` / :func:`average_precision` / :func:`mean_average_precision`:
  AttriBoT's faithfulness to exact LOO. Positives are the outlier sources of one
  example: exact score >= mean + one (population) standard deviation of that example's
  scores, and > 0. AP = mean over positives of precision at the positive's rank in the
  method's ranking; a positive the method did not score contributes precision 0 (as an
  unretrieved document does in IR). Examples without positives have AP = nan and are
  left out of the mean.
* :func:`spearman`: rank correlation; unscored sources tie at the bottom.
* :func:`top_k_sources` / :func:`top_k_drop`: LL(C) - LL(C without the top k sources).
* :func:`random_masks` / :func:`lds`: linear datamodeling score. Spearman between the
  sum of the method's scores over the kept sources (nan counted as 0) and the target's
  actual log-probability under each mask. The target can also be written as the
  logit-probability log p - log(1 - p) (docs/architecture.md, Metrics > Linear datamodeling
  score); it is a strictly increasing function of log p, so the Spearman
  correlation is the same with either.
* :func:`gold_recall_at_k`: HotpotQA gold paragraphs among the method's top k passages
  (for sentence sources: the passages of the top sentences, deduplicated, in rank order).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..methods.contextcite import random_masks  # the one mask generator (re-exported here)
from ..result import ranking as _ranking

__all__ = [
    "average_precision",
    "gold_recall_at_k",
    "lds",
    "mean_average_precision",
    "nanmean",
    "outlier_positives",
    "random_masks",
    "ranking",
    "spearman",
    "top_k_drop",
    "top_k_passages",
    "top_k_sources",
]


def _arr(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def outlier_positives(exact: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean mask of the outlier sources: score >= mean + std (population) and > 0."""
    e = _arr(exact)
    valid = ~np.isnan(e)
    out = np.zeros(len(e), dtype=bool)
    if not valid.any():
        return out
    vals = e[valid]
    threshold = vals.mean() + vals.std()
    out[valid] = (vals >= threshold) & (vals > 0)
    return out


def ranking(scores: Sequence[float] | np.ndarray) -> list[int]:
    """Indices of the scored sources, best first (ties keep document order); nan left out."""
    return _ranking(_arr(scores))


def average_precision(scores: Sequence[float] | np.ndarray, exact: Sequence[float] | np.ndarray) -> float:
    """AP of the method's ranking over the outlier positives of ``exact`` (nan: no positives)."""
    s, e = _arr(scores), _arr(exact)
    if len(s) != len(e):
        raise ValueError(f"{len(s)} scores for {len(e)} exact scores")
    pos = outlier_positives(e)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return float("nan")
    hits = 0
    total = 0.0
    for rank, i in enumerate(ranking(s), start=1):
        if pos[i]:
            hits += 1
            total += hits / rank
    # Positives the method left unscored are never retrieved: they add precision 0.
    return total / n_pos


def mean_average_precision(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """mAP over (scores, exact) pairs; examples without positives are skipped."""
    return nanmean([average_precision(s, e) for s, e in pairs])


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman correlation; nan entries tie below every number (not scored = last).

    nan when either side is constant or there are fewer than two values.
    """
    x, y = _arr(a).copy(), _arr(b).copy()
    if len(x) != len(y):
        raise ValueError(f"length mismatch: {len(x)} and {len(y)}")
    if len(x) < 2:
        return float("nan")
    for v in (x, y):
        nan = np.isnan(v)
        if nan.all():
            return float("nan")
        if nan.any():
            v[nan] = np.nanmin(v) - 1.0
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def top_k_sources(scores: Sequence[float] | np.ndarray, k: int) -> list[int]:
    """The k best scored sources (fewer if fewer are scored), best first."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return ranking(scores)[:k]


def top_k_drop(full_ll: float, ablated_ll: float) -> float:
    """LL(C) - LL(C without the top-k sources): how much the answer needed them."""
    return float(full_ll) - float(ablated_ll)


def lds(scores: Sequence[float] | np.ndarray, masks: np.ndarray, outputs: Sequence[float]) -> float:
    """Spearman between sum of scores over kept sources (nan = 0) and the actual outputs."""
    s = np.nan_to_num(_arr(scores), nan=0.0)
    m = np.asarray(masks, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != len(s):
        raise ValueError(f"masks must be (n_masks, {len(s)}), got {m.shape}")
    preds = m @ s
    y = _arr(outputs)
    if len(y) != len(preds):
        raise ValueError(f"{len(y)} outputs for {len(preds)} masks")
    if np.all(preds == preds[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(preds, y).statistic)


def top_k_passages(scores: Sequence[float] | np.ndarray, passage_ids: Sequence[str], k: int) -> list[str]:
    """Passage ids of the top-ranked sources, deduplicated in rank order, at most k."""
    if len(passage_ids) != len(_arr(scores)):
        raise ValueError("one passage id per source is needed")
    out: list[str] = []
    for i in ranking(scores):
        pid = passage_ids[i]
        if pid not in out:
            out.append(pid)
            if len(out) == k:
                break
    return out


def gold_recall_at_k(
    scores: Sequence[float] | np.ndarray,
    passage_ids: Sequence[str],
    gold: Iterable[str],
    k: int,
) -> float:
    """Fraction of the gold passages among the top k passages (nan without gold)."""
    gold = set(gold)
    if not gold:
        return float("nan")
    top = set(top_k_passages(scores, passage_ids, k))
    return len(top & gold) / len(gold)


def nanmean(values: Iterable[float | None]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")
