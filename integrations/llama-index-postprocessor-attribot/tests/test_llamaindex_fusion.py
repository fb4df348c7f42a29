"""The postprocessor's ranking uses NodeWithScore.score and the node order (issue 17
item 3) and the library's one answer-length default (item 5); real default model."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")

import pytest  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402

from attribot_rag import DEFAULT_MAX_NEW_TOKENS, Attributor, get_model  # noqa: E402
from attribot_rag.pruning import DEFAULT_FUSION, GUARD_MARGIN  # noqa: E402
from llama_index.postprocessor.attribot import AttribotPostprocessor  # noqa: E402

QUESTION = "What is the hotel limit per night for international trips?"
TEXTS = {
    "leave": "Full-time employees receive 22 paid vacation days per year.",
    "travel": "For international trips the hotel limit is $260 per night.",
    "parking": "The Pittsburgh office has 40 parking spaces.",
}


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"))


def nodes(scores):
    return [NodeWithScore(node=TextNode(id_=i, text=t), score=scores[i]) for i, t in TEXTS.items()]


def test_defaults_are_the_librarys():
    post = AttribotPostprocessor()
    assert post.max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    assert (post.method, post.fusion) == ("auto", DEFAULT_FUSION)


def test_unknown_fusion_is_refused_by_name():
    with pytest.raises(ValueError, match="fusion must be one of attribution, retrieval, rrf, guarded"):
        AttribotPostprocessor(fusion="best")


def test_node_scores_give_the_retrieval_rank(attributor):
    given = nodes({"leave": 0.1, "travel": 0.2, "parking": 0.9})
    post = AttribotPostprocessor(attributor=attributor, top_n=1, fusion="retrieval")
    out = post.postprocess_nodes(given, QueryBundle(QUESTION))
    assert [n.node.node_id for n in out] == ["parking"]
    assert out[0].score == 0.9  # the retriever's score is carried over


def test_guarded_keeps_the_retrievers_top_node(attributor):
    given = nodes({"leave": 0.9, "travel": 0.5, "parking": 0.1})
    post = AttribotPostprocessor(attributor=attributor, top_n=1, fusion="guarded")
    out = post.postprocess_nodes(given, QueryBundle(QUESTION))
    scores = {p.id: p.score for p in post.last_result.scores}
    assert post.last_result.attribution.method == "at2"  # "auto" with shipped weights
    if scores["leave"] >= -GUARD_MARGIN:
        assert [n.node.node_id for n in out] == ["leave"]
    # attribution alone keeps the node the draft used most
    alone = AttribotPostprocessor(attributor=attributor, top_n=1, fusion="attribution")
    out = alone.postprocess_nodes(given, QueryBundle(QUESTION))
    assert out[0].node.node_id == max(scores, key=scores.get)
