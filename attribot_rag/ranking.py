"""Ranking scores: best first, ties in document order, unscored (nan or None) left out."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def ranking(scores: Sequence[float | None] | np.ndarray) -> list[int]:
    """Indices of the scored sources, best first; ties keep document order; nan and None
    (not scored) are left out."""
    valid = [i for i, v in enumerate(scores) if v is not None and not math.isnan(float(v))]
    return sorted(valid, key=lambda i: (-float(scores[i]), i))  # type: ignore[arg-type]


def rank_scores(scores: Sequence[float | None] | np.ndarray) -> list[int | None]:
    """Ranks (1 = highest score); ties keep document order; nan or None gets None."""
    ranks: list[int | None] = [None] * len(scores)
    for r, i in enumerate(ranking(scores), start=1):
        ranks[i] = r
    return ranks
