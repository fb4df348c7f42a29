"""Answer-quality metrics for HotpotQA and bootstrap confidence intervals.

Exact match and token F1 follow the official HotpotQA evaluation: both strings are
lower-cased, punctuation is removed, the articles "a", "an" and "the" are removed and
whitespace is collapsed; F1 is over the resulting whitespace tokens (multiset overlap).
As in the official script, when either normalised string is "yes", "no" or "noanswer"
and the two differ, F1 is 0 (no partial credit for a yes/no answer).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)
_YES_NO = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """HotpotQA answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if (pred in _YES_NO or ref in _YES_NO) and pred != ref:
        return 0.0
    p_tokens, r_tokens = pred.split(), ref.split()
    same = sum((Counter(p_tokens) & Counter(r_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(p_tokens)
    recall = same / len(r_tokens)
    return 2 * precision * recall / (precision + recall)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] resampling indices (with replacement), reproducible from ``seed``."""
    if n < 1:
        raise ValueError("bootstrap needs at least one value")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def mean_ci(values: Sequence[float], idx: np.ndarray, level: float = 0.95) -> dict[str, object]:
    """Mean and percentile bootstrap interval over the given resampling indices.

    Paired comparisons pass the per-example differences with the *same* indices as the
    other statistics of the run, so the examples are resampled together.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "ci95": None}
    if idx.shape[1] != v.size:
        raise ValueError(f"{v.size} values but resampling indices for {idx.shape[1]}")
    means = v[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return {"mean": float(v.mean()), "ci95": [float(lo), float(hi)]}


__all__ = ["bootstrap_indices", "exact_match", "f1_score", "mean_ci", "normalize_answer"]
