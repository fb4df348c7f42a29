"""How much a source shares the question's terms: what a citation *bridge* is chosen by.

A multi-hop answer ("The director of *Film X* was American.") rests on the fact that
states it ("Z is an American director") and on the fact that leads to it from the
question ("*Film X* was directed by Z"). The second says nothing about the answer
sentence, so neither the support check nor leave-one-out finds it reliably; what marks
it is that it names what the question asks about. Among the sources the ranker scores
highest, those whose TF-IDF vector (scikit-learn, English stop words removed, sublinear
term frequency, inverse document frequency over the context's own sources) is close to
the question's are cited beside the answer-bearing one (docs/architecture.md,
Citations > Bridges).

Cosine similarity of these vectors lies in [0, 1]; a source sharing no content word
with the question scores 0. Each source is read with its passage title first, as the
model reads it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from ..sources import Passage, Source


def question_relevance(question: str, passages: Sequence[Passage], sources: Sequence[Source]) -> np.ndarray:
    """Each source's TF-IDF cosine similarity with the question, in [0, 1]."""
    texts = [_titled(passages[s.passage_index].title, s.text) for s in sources]
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    try:
        matrix = vectorizer.fit_transform([*texts, question])
    except ValueError:  # nothing but stop words anywhere: nothing is relevant
        return np.zeros(len(texts))
    # rows are L2-normalised, so the dot product is the cosine
    return np.asarray((matrix[:-1] @ matrix[-1].T).toarray()).ravel()


def _titled(title: str | None, text: str) -> str:
    return f"{title}\n{text}" if title else text


__all__ = ["question_relevance"]
