"""The LlamaIndex adapters: the real default model where attribution is asserted,
MockLLM / MockEmbedding for the query-engine plumbing."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")  # as tests/conftest.py: float32 runs

import asyncio  # noqa: E402

import pytest  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.base.response.schema import (  # noqa: E402
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.query_engine import CustomQueryEngine  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode  # noqa: E402

from attribot_rag import Attributor, ContextTooLongError  # noqa: E402
from attribot_rag import get_model  # noqa: E402
from llama_index.postprocessor.attribot import (  # noqa: E402
    AttribotCitationQueryEngine,
    AttribotPostprocessor,
    CitedAsyncStreamingResponse,
    CitedResponse,
    CitedStreamingResponse,
    cite_response,
    resolve_attributor,
)

QUESTION = "What is the hotel limit per night for international trips?"
ANSWER = "The hotel limit for international trips is $260 per night."
FILLER = "Thank you for asking, I hope you have a lovely day."


def make_nodes():
    return [
        NodeWithScore(
            node=TextNode(
                id_="leave",
                text="Full-time employees receive 22 paid vacation days per year. Unused days expire on March 31.",
                metadata={"title": "Vacation"},
            ),
            score=0.9,
        ),
        NodeWithScore(
            node=TextNode(
                id_="travel",
                text="For international trips the hotel limit is $260 per night. Meals are covered up to $95 a day.",
                metadata={"title": "International travel"},
            ),
            score=0.8,
        ),
        NodeWithScore(
            node=TextNode(
                id_="parking",
                text="The Pittsburgh office has 40 parking spaces. Bicycles can be stored in the basement.",
                metadata={"title": "Parking"},
            ),
            score=0.7,
        ),
    ]


def snapshot(nodes):
    return [(n.score, n.node.model_dump()) for n in nodes]


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=24)


class FixedAnswerEngine(CustomQueryEngine):
    """A query engine whose LLM 'wrote' a fixed answer over fixed source nodes."""

    answer: str
    nodes: list

    def custom_query(self, query_str: str) -> Response:
        return Response(response=self.answer, source_nodes=list(self.nodes))


# --------------------------------------------------------------------------- no model


def test_is_a_node_postprocessor_with_pydantic_fields():
    names = [c.__name__ for c in AttribotPostprocessor.__mro__]
    assert BaseNodePostprocessor.__name__ in names
    assert AttribotPostprocessor.class_name() == "AttribotPostprocessor"
    post = AttribotPostprocessor(model="smollm2-135m", top_n=2, keep_mass=0.9, method="loo")
    fields = set(AttribotPostprocessor.model_fields)
    assert {"model", "method", "top_n", "keep_mass", "max_new_tokens", "batch_size", "score_key", "fail_open"} <= fields
    data = post.to_dict()
    assert data["class_name"] == "AttribotPostprocessor" and data["top_n"] == 2
    assert not post._source.loaded  # nothing is loaded before the first call
    with pytest.raises(ValueError, match="top_n must be >= 1, got 0"):
        AttribotPostprocessor(top_n=0)
    with pytest.raises(ValueError, match=r"keep_mass must be in \(0, 1\], got 1.5"):
        AttribotPostprocessor(keep_mass=1.5)


def test_the_package_imports_without_the_llm_extra(monkeypatch):
    """llama-index-llms-huggingface is the optional extra [llm]: without it the package
    imports, and attribot_llm names the extra (before any model is loaded)."""
    import importlib
    import sys

    package = "llama_index.postprocessor.attribot"
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "llama_index.llms.huggingface", None)  # importing it raises ImportError
    fresh = importlib.import_module(package)
    assert fresh.AttribotPostprocessor.class_name() == "AttribotPostprocessor" and fresh.cite_response
    pattern = r"needs llama-index-llms-huggingface.*pip install 'llama-index-postprocessor-attribot\[llm\]'"
    with pytest.raises(ImportError, match=pattern):
        fresh.attribot_llm("smollm2-135m")


def test_empty_retrieval_and_missing_query_need_no_model():
    post = AttribotPostprocessor(model="smollm2-135m", top_n=2)
    assert post.postprocess_nodes([], query_str=QUESTION) == []
    assert asyncio.run(post.apostprocess_nodes([], query_str=QUESTION)) == []
    with pytest.raises(ValueError, match="AttribotPostprocessor needs the query: pass query_bundle or query_str"):
        post.postprocess_nodes(make_nodes())
    assert not post._source.loaded
    # citing a response with no source nodes passes it through, uncited
    out = cite_response(Response(response=ANSWER, source_nodes=[]), QUESTION, model="smollm2-135m")
    assert isinstance(out, CitedResponse)
    assert out.response == ANSWER and out.metadata["citations"] == [] and out.cited_nodes == []


@pytest.mark.slow  # loads smollm2-135m
def test_model_objects_of_an_existing_llm_are_reused():
    lm = get_model("smollm2-135m")

    class FakeHuggingFaceLLM:  # the attributes HuggingFaceLLM keeps its objects in
        model_name = "local-smollm"
        _model = lm.model
        _tokenizer = lm.tokenizer

    post = AttribotPostprocessor(llm=FakeHuggingFaceLLM(), top_n=1)
    assert post.attributor.lm.model is lm.model
    assert post.model == "local-smollm"
    post2 = AttribotPostprocessor(model=lm.model, tokenizer=lm.tokenizer)
    assert post2.attributor.lm.model is lm.model
    assert resolve_attributor(llm=FakeHuggingFaceLLM()).lm.tokenizer is lm.tokenizer
    with pytest.raises(ValueError, match="llm must be a HuggingFaceLLM"):
        resolve_attributor(llm=object())


# --------------------------------------------------------------------------- real model


def test_postprocessor_scores_and_prunes_copies(attributor):
    nodes = make_nodes()
    before = snapshot(nodes)
    post = AttribotPostprocessor(attributor=attributor, top_n=1, max_new_tokens=24, method="loo", fusion="attribution")
    out = post.postprocess_nodes(nodes, query_str=QUESTION)
    assert [n.node.node_id for n in out] == ["travel"]
    kept = out[0]
    assert kept.node.metadata["attribution_rank"] == 1
    assert kept.node.metadata["attribution_score"] > 1
    assert kept.score == 0.8  # the retrieval score is left alone
    # the score is hidden from the LLM and the embedder
    assert "attribution_score" not in kept.node.get_content(MetadataMode.LLM)
    assert "attribution_score" not in kept.node.get_content(MetadataMode.EMBED)
    assert "International travel" in kept.node.get_content(MetadataMode.LLM)
    assert snapshot(nodes) == before  # the caller's nodes are unchanged
    assert kept.node is not nodes[1].node
    result = post.last_result
    assert result.draft.strip() and result.answer is None
    assert [p.id for p in result.dropped] == ["leave", "parking"]


def test_scores_only_and_top_n_larger_than_input(attributor):
    nodes = make_nodes()
    post = AttribotPostprocessor(attributor=attributor, max_new_tokens=24)
    out = post.postprocess_nodes(nodes, query_str=QUESTION)
    assert [n.node.node_id for n in out] == ["leave", "travel", "parking"]
    ranks = {n.node.node_id: n.node.metadata["attribution_rank"] for n in out}
    assert ranks["travel"] == 1
    # async path, and top_n larger than the input keeps everything
    post_all = AttribotPostprocessor(attributor=attributor, top_n=10, max_new_tokens=24)
    out_async = asyncio.run(post_all.apostprocess_nodes(nodes, query_str=QUESTION))
    assert [n.node.node_id for n in out_async] == ["leave", "travel", "parking"]
    assert [n.node.metadata["attribution_score"] for n in out_async] == pytest.approx(
        [n.node.metadata["attribution_score"] for n in out], abs=1e-3
    )


def test_query_engine_node_postprocessors(attributor):
    """Adding the postprocessor to node_postprocessors prunes what the synthesizer sees."""
    nodes = make_nodes()
    index = VectorStoreIndex([n.node for n in nodes], embed_model=MockEmbedding(embed_dim=8))
    post = AttribotPostprocessor(attributor=attributor, top_n=1, max_new_tokens=24, method="loo", fusion="attribution")
    engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=3, node_postprocessors=[post])
    response = engine.query(QUESTION)
    assert [n.node.node_id for n in response.source_nodes] == ["travel"]
    assert response.source_nodes[0].node.metadata["attribution_score"] > 0
    # the index's own nodes are unchanged
    stored = index.docstore.get_node("travel")
    assert "attribution_score" not in stored.metadata
    # empty retrieval through an engine: no crash
    empty_engine = VectorStoreIndex([], embed_model=MockEmbedding(embed_dim=8)).as_query_engine(
        llm=MockLLM(max_tokens=4), node_postprocessors=[post]
    )
    assert empty_engine.query(QUESTION).source_nodes == []


def test_cite_response_and_wrapper_engine(attributor):
    nodes = make_nodes()
    before = snapshot(nodes)
    original = Response(response=ANSWER + " " + FILLER, source_nodes=nodes, metadata={"k": 1})
    cited = cite_response(original, QUESTION, attributor=attributor)
    assert isinstance(cited, CitedResponse) and isinstance(cited, Response)
    assert str(cited).startswith("The hotel limit for international trips is $260 per night [1].")
    assert cited.metadata["answer"] == ANSWER + " " + FILLER
    assert cited.metadata["k"] == 1
    c = cited.metadata["citations"][0]
    assert c["node_id"] == "travel" and c["number"] == 1 and c["score"] > 0
    assert "$260" in c["quote"] and nodes[1].node.text[c["quote_span"][0] : c["quote_span"][1]] == c["quote"]
    assert {d["node_id"] for d in cited.metadata["citations"]} == {"travel"}  # not the parking node
    assert cited.metadata["unsupported"] == [FILLER]
    assert [n.node.node_id for n in cited.cited_nodes] == ["travel"]
    assert cited.cited_nodes[0].node.metadata["citation_numbers"] == [1]
    assert cited.source_nodes[2].node.metadata["citation_numbers"] == []
    assert original.response == ANSWER + " " + FILLER and snapshot(nodes) == before

    # the same through the wrapper engine, sync and async, answer from "any LLM"
    engine = AttribotCitationQueryEngine(
        FixedAnswerEngine(answer=ANSWER, nodes=nodes), attributor=attributor, level="passage"
    )
    for response in (engine.query(QUESTION), asyncio.run(engine.aquery(QUESTION))):
        assert isinstance(response, CitedResponse)
        assert response.response.endswith("[1].")
        assert response.metadata["references"][0]["node_id"] == "travel"
        assert response.metadata["citations"][0]["quote"] == nodes[1].node.text  # passage level


def test_fail_open_on_a_context_that_does_not_fit(attributor):
    huge = [NodeWithScore(node=TextNode(id_="big", text="word " * 12000), score=1.0)] + make_nodes()
    strict = AttribotPostprocessor(attributor=attributor, top_n=1)
    with pytest.raises(ContextTooLongError, match=r"longer than the context window of model 'smollm2-135m'"):
        strict.postprocess_nodes(huge, query_str=QUESTION)
    lenient = AttribotPostprocessor(attributor=attributor, top_n=1, fail_open=True)
    out = lenient.postprocess_nodes(huge, query_str=QUESTION)
    assert [n.node.node_id for n in out] == ["big", "leave", "travel", "parking"]
    assert all("attribution_score" not in n.node.metadata for n in out)


# --------------------------------------------------------------------------- streaming


def _pieces(text, size=4):
    return [text[i : i + size] for i in range(0, len(text), size)]


class StreamingAnswerEngine(CustomQueryEngine):
    """A streaming query engine: its LLM 'writes' a fixed answer a few characters at a time."""

    answer: str
    nodes: list

    def custom_query(self, query_str: str) -> StreamingResponse:
        return StreamingResponse(response_gen=iter(_pieces(self.answer)), source_nodes=list(self.nodes))

    async def acustom_query(self, query_str: str) -> AsyncStreamingResponse:
        async def gen():
            for piece in _pieces(self.answer):
                yield piece

        return AsyncStreamingResponse(response_gen=gen(), source_nodes=list(self.nodes))


def _same_citations(got, want):
    assert got.metadata["citations"] == want.metadata["citations"]
    assert got.metadata["references"] == want.metadata["references"]
    assert got.metadata["unsupported"] == want.metadata["unsupported"]
    assert got.metadata["answer"] == want.metadata["answer"]
    assert got.metadata["cited_text"] == str(want)
    assert [n.node.node_id for n in got.cited_nodes] == [n.node.node_id for n in want.cited_nodes]
    assert [n.node.metadata["citation_numbers"] for n in got.source_nodes] == [
        n.node.metadata["citation_numbers"] for n in want.source_nodes
    ]


def test_streaming_query_engine_cites_as_the_answer_arrives(attributor):
    nodes = make_nodes()
    before = snapshot(nodes)
    full = ANSWER + " " + FILLER
    want = AttribotCitationQueryEngine(FixedAnswerEngine(answer=full, nodes=nodes), attributor=attributor).query(QUESTION)
    engine = AttribotCitationQueryEngine(
        StreamingAnswerEngine(answer=full, nodes=nodes), attributor=attributor, streaming=True
    )
    response = engine.query(QUESTION)
    assert isinstance(response, CitedStreamingResponse) and isinstance(response, StreamingResponse)
    assert "citations" not in response.metadata  # nothing is cited before the answer is read
    assert [n.node.node_id for n in response.source_nodes] == ["leave", "travel", "parking"]
    texts, seen = [], []
    for text in response.response_gen:
        texts.append(text)
        seen.append(len(response.metadata["sentences"]))
    assert "".join(texts) == full and len(texts) == len(_pieces(full))  # the text as it arrived
    assert 0 < seen.index(1) < len(texts) - 1  # the first sentence was cited mid-stream
    first = response.metadata["sentences"][0]
    assert first["text"] == ANSWER and first["citations"][0]["node_id"] == "travel"
    _same_citations(response, want)  # once exhausted: the non-streaming call's citations
    assert response.cited_answer.text == str(want)
    assert str(response.get_response()) == full and snapshot(nodes) == before
    # a wrapped engine that does not stream: the answer comes in one piece, cited the same
    plain = AttribotCitationQueryEngine(
        FixedAnswerEngine(answer=full, nodes=nodes), attributor=attributor, streaming=True
    ).query(QUESTION)
    assert list(plain.response_gen) == [full]
    _same_citations(plain, want)


def test_async_streaming_query_engine(attributor):
    nodes = make_nodes()
    full = ANSWER + " " + FILLER
    want = cite_response(Response(response=full, source_nodes=nodes), QUESTION, attributor=attributor)
    engine = AttribotCitationQueryEngine(
        StreamingAnswerEngine(answer=full, nodes=nodes), attributor=attributor, streaming=True
    )

    async def run():
        response = await engine.aquery(QUESTION)
        texts = [t async for t in response.async_response_gen()]
        return response, texts

    response, texts = asyncio.run(run())
    assert isinstance(response, CitedAsyncStreamingResponse)
    assert "".join(texts) == full and len(texts) > 1
    assert response.metadata["sentences"][0]["text"] == ANSWER
    _same_citations(response, want)
