"""Which question terms a source adds to a sentence's citations: what a *bridge* is chosen by.

A multi-hop answer ("The director of *Film X* was American.") rests on the fact that
states it ("Z is an American director") and on the fact that leads to it from the
question ("*Film X* was directed by Z"). The second says nothing about the answer
sentence, so neither the support check nor leave-one-out finds it reliably; what marks
it is that it names what the question asks about *and the cited fact does not*. A
source sharing only the terms the citation already covers is a neighbour on the same
topic ("the hotel limit within the country is $180" beside the cited "abroad it is
$260"), not a bridge.

Terms are weighted by TF-IDF (scikit-learn: English stop words removed, sublinear term
frequency, inverse document frequency over the context's own sources), each source read
with its passage title first, as the model reads it. A source's *added relevance* is the
part of its cosine similarity with the question that comes from question terms none of
the covering sources contains: in [0, 1], 0 when it shares no uncovered term
(docs/architecture.md, Citations > Bridges).

A *verdict* is a yes or no replying to a yes/no question ("Were X and Y both American?"
"The answer is no."). It states no fact a source could say, so neither the support
check nor the ranker finds what it rests on; the sources it rests on are the ones the
question is about (docs/architecture.md, Citations > Verdicts). :func:`verdict` tells
the kinds apart: a *bare* verdict says nothing else; a *restating* one repeats the
question's terms ("Yes, both X and Y are American."), which the usual rules can check;
a *choice* picks one of the alternatives the question offers ("Which is older, X or Y?"
"X."), and rests on what the sources say of each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from ..sources import Passage, Source


@dataclass(frozen=True)
class QuestionTerms:
    """The question's TF-IDF vector and each source's, over the context's vocabulary
    (rows L2-normalised; the sources' as a sparse matrix, most terms are absent)."""

    question: np.ndarray  # (terms,)
    sources: sparse.csr_matrix  # (sources, terms); a dense array is converted
    # mentions[i, p]: source i names passage p's subject (its title, words matched whole);
    # empty: not computed (no titles), nothing is named
    mentions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    # named[p]: the question names passage p's subject ("Are X and Y both ...?" names X and Y)
    named: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", sparse.csr_matrix(self.sources))

    @classmethod
    def of(cls, question: str, passages: Sequence[Passage], sources: Sequence[Source]) -> "QuestionTerms":
        texts = [_titled(passages[s.passage_index].title, s.text) for s in sources]
        vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
        titles = [p.title for p in passages]
        mentions, named = _mentions(titles, [s.text for s in sources]), _mentions(titles, [question])[0]
        try:
            matrix = vectorizer.fit_transform([*texts, question])  # CSR
        except ValueError:  # nothing but stop words anywhere: no term to share
            return cls(np.zeros(0), sparse.csr_matrix((len(texts), 0)), mentions, named)
        return cls(np.asarray(matrix[-1].todense()).ravel(), matrix[:-1], mentions, named)

    def question_names(self, passage: int) -> bool:
        """Whether the question names passage ``passage``'s subject."""
        return bool(passage < self.named.shape[0] and self.named[passage])

    def names(self, i: int, passage: int) -> bool:
        """Whether source ``i`` names passage ``passage``'s subject."""
        m = self.mentions
        return bool(i < m.shape[0] and passage < m.shape[1] and m[i, passage])

    def relevance(self, i: int) -> float:
        """Source ``i``'s cosine similarity with the question."""
        return self.added(i, ())

    def added(self, i: int, covered: Sequence[int]) -> float:
        """The part of source ``i``'s cosine similarity with the question that comes from
        terms none of the ``covered`` sources contains."""
        return float((self.sources[int(i)] @ self._uncovered(covered))[0])

    def relevance_all(self) -> np.ndarray:
        """Every source's cosine similarity with the question."""
        return self.added_all(())

    def added_all(self, covered: Sequence[int]) -> np.ndarray:
        """:meth:`added` for every source at once."""
        return np.asarray(self.sources @ self._uncovered(covered)).ravel()

    def _uncovered(self, covered: Sequence[int]) -> np.ndarray:
        """The question's vector without the terms any ``covered`` source contains."""
        uncovered = self.question.copy()
        for j in covered:
            uncovered[self.sources[int(j)].indices] = 0.0
        return uncovered


def question_relevance(question: str, passages: Sequence[Passage], sources: Sequence[Source]) -> np.ndarray:
    """Each source's TF-IDF cosine similarity with the question, in [0, 1]."""
    terms = QuestionTerms.of(question, passages, sources)
    return np.array([terms.relevance(i) for i in range(len(sources))])


# A yes/no question opens with an auxiliary verb (English, as the stop words are).
POLAR_OPENERS = frozenset(
    "is are was were am do does did has have had can could will would shall should may might must".split()
)
VERDICT_WORDS = frozenset({"yes", "no"})
BARE, RESTATING, CHOICE = "bare", "restating", "choice"


def verdict(question: str, sentence: str) -> str | None:
    """``"bare"`` or ``"restating"`` when ``sentence`` says yes or no to a yes/no
    ``question`` (restating: it also shares a content word with the question);
    ``"choice"`` when the question offers alternatives ("Which is older, X or Y?") and the
    sentence is no yes/no reply; else None."""
    asked = _words(question)
    words = set(_words(sentence))
    if asked[:1] and asked[0] in POLAR_OPENERS and words & VERDICT_WORDS:
        shared = (words - ENGLISH_STOP_WORDS) & (set(asked) - ENGLISH_STOP_WORDS)
        return RESTATING if shared else BARE
    return CHOICE if "or" in asked else None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _mentions(titles: Sequence[str | None], texts: Sequence[str]) -> np.ndarray:
    """Which text names which passage's subject: the title without a parenthesised
    qualifier ("Roger Waters (album)" -> "roger waters"), found as whole words; a title
    of stop words only names nothing."""
    subjects = [" ".join(_words(re.sub(r"\([^)]*\)", " ", t or ""))) for t in titles]
    subjects = [s if set(s.split()) - ENGLISH_STOP_WORDS else "" for s in subjects]
    padded = [f" {' '.join(_words(t))} " for t in texts]
    return np.array([[bool(s) and f" {s} " in text for s in subjects] for text in padded], dtype=bool).reshape(len(texts), len(titles))


def _titled(title: str | None, text: str) -> str:
    return f"{title}\n{text}" if title else text


__all__ = ["BARE", "CHOICE", "RESTATING", "QuestionTerms", "question_relevance", "verdict"]
