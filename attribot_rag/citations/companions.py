"""Companions: the further facts a cited sentence rests on, told by a small fitted model.

A multi-hop answer rests on two or three facts, and the support check finds the one that
states the answer; bridges add the link that names what the question asks about. The
facts still missing are spread over several weak signals: the ranker ranks them a little
lower, they share some question terms, they sit in a passage the answer cites or one the
question is about. No single threshold separates them; a logistic regression over those
signals does (scikit-learn, fitted on a model's dev records by ``attribot-rag calibrate``
and shipped in its :class:`~attribot_rag.citations.Calibration`). A sentence that cites
something then also cites up to ``companions`` sources whose fitted probability of being
a supporting fact is at least ``companion_probability`` (docs/architecture.md, Citations
> Companions).

Features of a candidate (a source the sentence does not cite yet), all from what the
citation step already has, no model pass:
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .relevance import QuestionTerms

FEATURES = (
    "rank",  # log(1 + the ranker's rank of the source for this sentence)
    "score",  # its score over the sentence's best (in [-1, 1])
    "relevance",  # TF-IDF cosine with the question
    "added",  # the part of it from question terms the sentence's citations lack
    "same_passage",  # 1 when the sentence already cites its passage
    "lead",  # 1 when it is its passage's first sentence (which names the subject)
    "passage_rank",  # log(1 + the ranker's best rank of any source of its passage)
    "question_rank",  # log(1 + its passage's rank by best question relevance)
    "names_cited",  # 1 when it names the subject of another passage the sentence cites (the hop)
)
__doc__ += "\n".join(f"``{name}``" for name in FEATURES) + "\n"


@dataclass(frozen=True)
class CompanionModel:
    """A fitted logistic regression over :data:`FEATURES`: P(a candidate is a supporting fact)."""

    coef: tuple[float, ...]
    intercept: float
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        if tuple(self.features) != FEATURES or len(self.coef) != len(FEATURES):
            raise InputError(f"a companion model needs one coefficient per feature {list(FEATURES)}, got {list(self.features)}: "
                             "refit it with `attribot-rag calibrate`")

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ np.array(self.coef) + self.intercept)))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "coef": [round(c, 6) for c in self.coef], "intercept": round(self.intercept, 6)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CompanionModel":
        return cls(tuple(float(c) for c in data["coef"]), float(data["intercept"]), tuple(data.get("features", FEATURES)))

    @classmethod
    def fit(cls, x: np.ndarray, gold: np.ndarray) -> "CompanionModel":
        """Fit on candidate features and whether each was a supporting fact."""
        from sklearn.linear_model import LogisticRegression

        gold = np.asarray(gold, dtype=bool)
        if gold.all() or not gold.any():
            raise InputError("companions need gold and non-gold candidates: calibrate on more examples")
        model = LogisticRegression(max_iter=2000).fit(np.asarray(x, dtype=np.float64), gold)
        return cls(tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]))


def first_sentences(passage_of: Sequence[int]) -> dict[int, int]:
    """Each passage's first source (its lead sentence, which introduces the subject)."""
    first: dict[int, int] = {}
    for i, p in enumerate(passage_of):
        first.setdefault(p, i)
    return first


def candidate_features(
    scores: Sequence[float | None], chosen: Sequence[int], terms: QuestionTerms, passage_of: Sequence[int]
) -> tuple[list[int], np.ndarray]:
    """The sentence's candidates and their features: the scored sources it does not cite,
    from a passage it cites or adding a question term its citations lack (a source of
    another passage that only repeats the cited terms is a neighbour on the same topic,
    "within the country the limit is $180" beside the cited "abroad it is $260")."""
    valid = [(float(v), i) for i, v in enumerate(scores) if v is not None and v == v]
    ranked = [i for _, i in sorted(valid, key=lambda t: (-t[0], t[1]))]
    rank = {i: r for r, i in enumerate(ranked)}
    top = max((v for v, _ in valid), default=0.0)
    relevance = terms.relevance_all()
    added = terms.added_all(chosen)
    cited = {passage_of[i] for i in chosen}
    passage_rank: dict[int, int] = {}
    lead = first_sentences(passage_of)
    best_rel: dict[int, float] = {}
    for i, p in enumerate(passage_of):
        best_rel[p] = max(best_rel.get(p, 0.0), float(relevance[i]))
        if i in rank:
            passage_rank[p] = min(passage_rank.get(p, len(scores)), rank[i])
    question_rank = {p: r for r, p in enumerate(sorted(best_rel, key=lambda p: (-best_rel[p], p)))}
    names_cited = lambda i: any(p != passage_of[i] and terms.names(i, p) for p in cited)  # noqa: E731
    candidates = [i for i in ranked if i not in set(chosen) and (passage_of[i] in cited or added[i] > 0)]
    rows = [
        [
            np.log1p(rank[i]),
            float(np.clip(float(scores[i]) / top, -1.0, 1.0)) if top > 0 else 0.0,  # type: ignore[arg-type]
            float(relevance[i]),
            float(added[i]),
            float(passage_of[i] in cited),
            float(lead[passage_of[i]] == i),
            np.log1p(passage_rank.get(passage_of[i], len(scores))),
            np.log1p(question_rank[passage_of[i]]),
            float(names_cited(i)),
        ]
        for i in candidates
    ]
    return candidates, np.array(rows, dtype=np.float64).reshape(len(candidates), len(FEATURES))


__all__ = ["FEATURES", "CompanionModel", "candidate_features", "first_sentences"]
