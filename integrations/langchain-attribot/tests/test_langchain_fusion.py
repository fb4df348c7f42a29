"""The compressor's ranking uses the retriever's order and scores (issue 17 item 3) and
the library's one answer-length default (item 5); real default model."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")

import pytest  # noqa: E402
from langchain_core.documents import Document  # noqa: E402

from attribot_rag import DEFAULT_MAX_NEW_TOKENS, Attributor, get_model  # noqa: E402
from attribot_rag.pruning import DEFAULT_FUSION  # noqa: E402
from langchain_attribot import AttribotCitations, AttribotCompressor  # noqa: E402

QUESTION = "What is the hotel limit per night for international trips?"
TEXTS = {
    "leave": "Full-time employees receive 22 paid vacation days per year.",
    "travel": "For international trips the hotel limit is $260 per night.",
    "parking": "The Pittsburgh office has 40 parking spaces.",
}


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"))


def test_defaults_are_the_librarys():
    comp = AttribotCompressor()
    assert comp.max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    assert (comp.method, comp.fusion) == ("auto", DEFAULT_FUSION)
    assert AttribotCitations().method == "auto"


def test_unknown_fusion_is_refused_by_name():
    with pytest.raises(ValueError, match="fusion must be one of attribution, retrieval, rrf, guarded"):
        AttribotCompressor(fusion="best")


def test_relevance_score_metadata_gives_the_retrieval_rank(attributor):
    scores = {"leave": 0.9, "travel": 0.2, "parking": 0.1}  # a reranker put "leave" first
    docs = [Document(t, id=i, metadata={"relevance_score": scores[i]}) for i, t in TEXTS.items()]
    docs = docs[::-1]  # ... though the list order says otherwise
    kept = AttribotCompressor(attributor=attributor, top_n=1, fusion="retrieval").compress_documents(docs, QUESTION)
    assert [d.id for d in kept] == ["leave"]
    # "guarded" keeps the retriever's top document unless attribution is confidently negative
    comp = AttribotCompressor(attributor=attributor, top_n=1, fusion="guarded")
    kept = comp.compress_documents(docs, QUESTION)
    top_score = next(p.score for p in comp.last_result.scores if p.id == "leave")
    assert ([d.id for d in kept] == ["leave"]) == (top_score >= -1.0)
    assert docs[0].metadata == {"relevance_score": 0.1}  # the caller's documents are untouched
