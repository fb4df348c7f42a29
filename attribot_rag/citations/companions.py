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
# read where the model's calibration has fact heads (:class:`FactHeads`): the heads'
# attention refitted to supporting facts, a ranking of what states the answer's evidence
FACT_FEATURES = (
    "fact_rank",  # log(1 + the source's rank by the fact heads' score for this sentence)
    "fact_score",  # that score between the sentence's lowest (0) and best (1): the scores have no zero
)
__doc__ += "\n".join(f"``{name}``" for name in FEATURES + FACT_FEATURES) + "\n"


@dataclass(frozen=True)
class FactHeads:
    """One weight per attention head (layer-major, as AT2's features), fitted by logistic
    regression to which sources are supporting facts of an answer (HotpotQA dev), where
    AT2's weights are fitted to leave-one-out. Applied to the features AT2's pass already
    captured, it costs no model pass. Scores are ``features @ weights``, so a sentence's
    score is the mean over its tokens, like AT2's."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.weights or not all(isinstance(w, float) and w == w for w in self.weights):
            raise InputError("fact heads need one finite weight per attention head")

    def to_dict(self) -> dict[str, Any]:
        return {"weights": [round(w, 7) for w in self.weights]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FactHeads":
        return cls(tuple(float(w) for w in data["weights"]))


@dataclass(frozen=True)
class CompanionModel:
    """A fitted logistic regression over :data:`FEATURES`: P(a candidate is a supporting fact)."""

    coef: tuple[float, ...]
    intercept: float
    features: tuple[str, ...] = FEATURES  # or FEATURES + FACT_FEATURES

    def __post_init__(self) -> None:
        known = (FEATURES, FEATURES + FACT_FEATURES)
        if tuple(self.features) not in known or len(self.coef) != len(self.features):
            raise InputError(f"a companion model needs one coefficient per feature {list(FEATURES)} (and optionally "
                             f"{list(FACT_FEATURES)}), got {list(self.features)}: refit it with `attribot-rag calibrate`")

    @property
    def reads_facts(self) -> bool:
        """Whether it needs the fact heads' scores (:data:`FACT_FEATURES`)."""
        return len(self.features) > len(FEATURES)

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ np.array(self.coef) + self.intercept)))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "coef": [round(c, 6) for c in self.coef], "intercept": round(self.intercept, 6)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CompanionModel":
        return cls(tuple(float(c) for c in data["coef"]), float(data["intercept"]), tuple(data.get("features", FEATURES)))

    @classmethod
    def fit(cls, x: np.ndarray, gold: np.ndarray) -> "CompanionModel":
        """Fit on candidate features (:func:`candidate_features`' columns) and whether each
        was a supporting fact."""
        from sklearn.linear_model import LogisticRegression

        gold = np.asarray(gold, dtype=bool)
        if gold.all() or not gold.any():
            raise InputError("companions need gold and non-gold candidates: calibrate on more examples")
        x = np.asarray(x, dtype=np.float64)
        names = FEATURES if x.shape[1] == len(FEATURES) else FEATURES + FACT_FEATURES
        model = LogisticRegression(max_iter=2000).fit(x, gold)
        return cls(tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]), names)


def fact_scores(task: Any, target: tuple[int, int], heads: FactHeads) -> list[float]:
    """Each source's fact-heads score for the answer tokens ``target``: the mean over them
    of the heads' weighted attention features (AT2's, captured once per answer)."""
    from ..at2.features import task_features, token_scores

    if task.cache.fact_scores is None:
        task.cache.fact_scores = token_scores(task_features(task), np.asarray(heads.weights))
    a, b = target
    return [float(v) for v in task.cache.fact_scores[:, a:b].mean(axis=1)]


def first_sentences(passage_of: Sequence[int]) -> dict[int, int]:
    """Each passage's first source (its lead sentence, which introduces the subject)."""
    first: dict[int, int] = {}
    for i, p in enumerate(passage_of):
        first.setdefault(p, i)
    return first


def candidate_features(
    scores: Sequence[float | None], chosen: Sequence[int], terms: QuestionTerms, passage_of: Sequence[int],
    facts: Sequence[float | None] | None = None,
) -> tuple[list[int], np.ndarray]:
    """The sentence's candidates and their features: the scored sources it does not cite,
    from a passage it cites or adding a question term its citations lack (a source of
    another passage that only repeats the cited terms is a neighbour on the same topic,
    "within the country the limit is $180" beside the cited "abroad it is $260"). With the
    fact heads' ``facts`` scores, :data:`FACT_FEATURES` are appended."""
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
    x = np.array(rows, dtype=np.float64).reshape(len(candidates), len(FEATURES))
    return candidates, x if facts is None else np.hstack([x, _fact_columns(facts, candidates)])


def _fact_columns(facts: Sequence[float | None], candidates: Sequence[int]) -> np.ndarray:
    """:data:`FACT_FEATURES` of the candidates (a source without a score ranks last)."""
    valid = [(float(v), i) for i, v in enumerate(facts) if v is not None and v == v]
    rank = {i: r for r, (_, i) in enumerate(sorted(valid, key=lambda t: (-t[0], t[1])))}
    lo, hi = min((v for v, _ in valid), default=0.0), max((v for v, _ in valid), default=0.0)
    value = {i: v for v, i in valid}
    rows = [[np.log1p(rank.get(i, len(facts))), (value.get(i, lo) - lo) / (hi - lo) if hi > lo else 0.0] for i in candidates]
    return np.array(rows, dtype=np.float64).reshape(len(candidates), len(FACT_FEATURES))


__all__ = ["FACT_FEATURES", "FEATURES", "CompanionModel", "FactHeads", "candidate_features", "fact_scores", "first_sentences"]
