"""One shared postprocessor / citation query engine serving concurrent queries: each
query gets its own draft, scores and citations (issue 33). A fake attribution (fast,
deterministic, both calls in flight at once) for the plumbing; the real small model in
one test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")  # as tests/conftest.py: float32 runs

import asyncio  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import pytest  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.base.response.schema import Response  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import CustomQueryEngine  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode  # noqa: E402

import attribot_rag.integration as integration  # noqa: E402
from attribot_rag.testing import overlapping_filter  # noqa: E402
from llama_index.postprocessor.attribot import AttribotCitationQueryEngine, AttribotPostprocessor  # noqa: E402

TEXTS = {
    "leave": "Full-time employees receive 22 paid vacation days per year.",
    "travel": "For international trips the hotel limit is $260 per night.",
    "parking": "The Pittsburgh office has 40 parking spaces.",
}
FAVOURED = {"How many vacation days?": "leave", "What is the hotel limit?": "travel"}
Q1, Q2 = FAVOURED


def make_nodes():
    return [NodeWithScore(node=TextNode(id_=i, text=t), score=None) for i, t in TEXTS.items()]


class FakeAttributor:
    model_name = "fake"


@pytest.fixture
def fake_attribution(monkeypatch):
    """Replaces the draft-attribute-select step: the draft names the question, the
    favoured node scores 3; each call waits until two calls are in flight."""
    monkeypatch.setattr(integration, "filter_passages", overlapping_filter(FAVOURED))


def _check_own(question, nodes, result):
    assert [n.node.node_id for n in nodes] == [FAVOURED[question]]
    meta = nodes[0].node.metadata
    assert meta["attribution_score"] == 3.0 and meta["attribution_rank"] == 1
    assert meta["attribution_draft"] == f"draft for {question}"
    assert "draft for" not in nodes[0].node.get_content(MetadataMode.LLM)  # hidden from the LLM
    assert result.question == question and result.draft == f"draft for {question}"
    assert [p.id for p in result.kept] == [FAVOURED[question]]


def test_shared_postprocessor_in_threads(fake_attribution):
    post = AttribotPostprocessor(attributor=FakeAttributor(), top_n=1)
    after = threading.Barrier(2, timeout=20)  # both calls done before either reads last_result

    def call(question):
        nodes = post.postprocess_nodes(make_nodes(), query_str=question)
        after.wait()
        return nodes, post.last_result

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(call, [Q1, Q2]))
    for question, (nodes, result) in zip([Q1, Q2], outs):
        _check_own(question, nodes, result)
    assert post.last_result is None  # this thread made no call

    with ThreadPoolExecutor(2) as pool:
        explicit = list(pool.map(lambda q: post.postprocess_nodes_with_result(make_nodes(), query_str=q), [Q1, Q2]))
    for question, (nodes, result) in zip([Q1, Q2], explicit):
        _check_own(question, nodes, result)


def test_shared_postprocessor_in_asyncio(fake_attribution):
    post = AttribotPostprocessor(attributor=FakeAttributor(), top_n=1)

    async def call(question, after):
        nodes = await post.apostprocess_nodes(make_nodes(), query_str=question)
        await after.wait()
        return nodes, post.last_result

    async def main():
        after = asyncio.Barrier(2)
        outs = await asyncio.gather(call(Q1, after), call(Q2, after))
        explicit = await asyncio.gather(
            *(post.apostprocess_nodes_with_result(make_nodes(), query_str=q) for q in [Q1, Q2])
        )
        return outs, explicit

    outs, explicit = asyncio.run(main())
    for question, (nodes, result), (nodes2, result2) in zip([Q1, Q2], outs, explicit):
        _check_own(question, nodes, result)
        _check_own(question, nodes2, result2)


def test_shared_postprocessor_inside_a_query_engine(fake_attribution):
    """Two queries at once through one engine: each response's source nodes carry its own
    draft and scores, and last_result in the querying thread / task is its own."""
    index = VectorStoreIndex([n.node for n in make_nodes()], embed_model=MockEmbedding(embed_dim=8))
    post = AttribotPostprocessor(attributor=FakeAttributor(), top_n=1)
    engine = index.as_query_engine(llm=MockLLM(max_tokens=4), similarity_top_k=3, node_postprocessors=[post])
    after = threading.Barrier(2, timeout=20)

    def call(question):
        response = engine.query(question)
        after.wait()
        return response.source_nodes, post.last_result

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(call, [Q1, Q2]))

    async def acall(question, after):
        response = await engine.aquery(question)
        await after.wait()
        return response.source_nodes, post.last_result

    async def main():
        after = asyncio.Barrier(2)
        return await asyncio.gather(acall(Q1, after), acall(Q2, after))

    for question, (nodes, result) in zip([Q1, Q2] * 2, outs + asyncio.run(main())):
        _check_own(question, nodes, result)


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def attributor():
    from attribot_rag import Attributor, get_model

    return Attributor(get_model("smollm2-135m"), max_new_tokens=16)


ANSWERS = {
    "How many paid vacation days do employees get?": "Employees get 22 paid vacation days per year.",
    "What is the hotel limit per night?": "The hotel limit is $260 per night.",
}


class AnswerEngine(CustomQueryEngine):
    """An engine whose LLM 'wrote' a fixed answer per question over the shared nodes."""

    def custom_query(self, query_str: str) -> Response:
        return Response(response=ANSWERS[query_str], source_nodes=make_nodes())


@pytest.mark.slow
def test_shared_components_with_the_real_model(attributor):
    """Two questions at once through one postprocessor and one citation engine, in
    threads and in asyncio: each gets what it gets alone."""
    post = AttribotPostprocessor(attributor=attributor, top_n=1, max_new_tokens=16, method="loo")
    engine = AttribotCitationQueryEngine(AnswerEngine(), attributor=attributor, level="passage")
    questions = list(ANSWERS)

    def run(i):
        nodes = post.postprocess_nodes(make_nodes(), query_str=questions[i])
        return nodes, post.last_result, engine.query(questions[i])

    alone = [run(0), run(1)]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(run, [0, 1]))

    async def arun(i):
        nodes = await post.apostprocess_nodes(make_nodes(), query_str=questions[i])
        return nodes, post.last_result, await engine.aquery(questions[i])

    async def main():
        return await asyncio.gather(arun(0), arun(1))

    for outs in (threaded, asyncio.run(main())):
        for (nodes, result, cited), (nodes0, result0, cited0) in zip(outs, alone):
            assert result.question == result0.question and result.draft == result0.draft
            assert [n.node.node_id for n in nodes] == [n.node.node_id for n in nodes0]
            assert nodes[0].node.metadata["attribution_draft"] == result0.draft
            assert [p.score for p in result.scores] == pytest.approx([p.score for p in result0.scores], abs=1e-4)
            assert cited.metadata["citations"] == cited0.metadata["citations"] and str(cited) == str(cited0)
    assert [c["node_id"] for c in alone[0][2].metadata["citations"]] == ["leave"]
    assert [c["node_id"] for c in alone[1][2].metadata["citations"]] == ["travel"]
