"""AttribotCitationQueryEngine(streaming=True) as events (issue 33): the text as it
arrives, each completed sentence's citations, the whole answer's citations last, equal
to the non-streaming call's; print_response_stream prints the text, then the references."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")  # as tests/conftest.py: float32 runs

import asyncio  # noqa: E402

import pytest  # noqa: E402
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse  # noqa: E402
from llama_index.core.query_engine import CustomQueryEngine  # noqa: E402
from llama_index.core.schema import NodeWithScore, TextNode  # noqa: E402

from llama_index.postprocessor.attribot import (  # noqa: E402
    AttribotCitationQueryEngine,
    CitationStreamEvent,
    CitedAsyncStreamingResponse,
    CitedStreamingResponse,
)

pytestmark = pytest.mark.slow

QUESTION = "What is the hotel limit per night for international trips?"
ANSWER = "The hotel limit for international trips is $260 per night."
FILLER = "Thank you for asking, I hope you have a lovely day."
FULL = ANSWER + " " + FILLER


def make_nodes():
    texts = [
        ("leave", "Vacation", "Full-time employees receive 22 paid vacation days per year."),
        ("travel", "International travel", "For international trips the hotel limit is $260 per night."),
        ("parking", "Parking", "The Pittsburgh office has 40 parking spaces."),
    ]
    return [NodeWithScore(node=TextNode(id_=i, text=t, metadata={"title": title}), score=None) for i, title, t in texts]


def _pieces(text, size=4):
    return [text[i : i + size] for i in range(0, len(text), size)]


class StreamingAnswerEngine(CustomQueryEngine):
    """Streams a fixed answer a few characters at a time (streaming=True), else whole."""

    streaming: bool = True

    def custom_query(self, query_str: str):
        if not self.streaming:
            from llama_index.core.base.response.schema import Response

            return Response(response=FULL, source_nodes=make_nodes())
        return StreamingResponse(response_gen=iter(_pieces(FULL)), source_nodes=make_nodes())

    async def acustom_query(self, query_str: str):
        async def gen():
            for piece in _pieces(FULL):
                yield piece

        return AsyncStreamingResponse(response_gen=gen(), source_nodes=make_nodes())


@pytest.fixture(scope="module")
def attributor():
    from attribot_rag import Attributor, get_model

    return Attributor(get_model("smollm2-135m"), max_new_tokens=16)


@pytest.fixture(scope="module")
def want(attributor):
    return AttribotCitationQueryEngine(StreamingAnswerEngine(streaming=False), attributor=attributor).query(QUESTION)


def _check_events(events, want):
    assert all(isinstance(e, CitationStreamEvent) for e in events)
    kinds = [e.kind for e in events]
    texts = [i for i, k in enumerate(kinds) if k == "text"]
    sentences = [i for i, k in enumerate(kinds) if k == "sentence"]
    assert kinds[-1] == "citations" and kinds.count("citations") == 1
    assert texts and texts[-1] < len(events) - 1  # the text arrives before the last citation event
    assert "".join(events[i].text for i in texts) == FULL and len(texts) == len(_pieces(FULL))
    assert sentences and sentences[0] < texts[-1]  # the first sentence is cited mid-stream
    first = events[sentences[0]]
    assert first.sentence["text"] == ANSWER and first.citations[0]["node_id"] == "travel"
    final = events[-1]
    for key in ("citations", "references", "unsupported", "answer"):
        assert final.metadata[key] == want.metadata[key]
    assert final.citations == want.metadata["citations"] and final.citations
    assert final.metadata["cited_text"] == str(want)
    assert [n.node.node_id for n in final.cited_nodes] == [n.node.node_id for n in want.cited_nodes]
    assert final.cited_nodes[0].node.node_id == "travel"
    assert [n.node.metadata["citation_numbers"] for n in final.source_nodes] == [
        n.node.metadata["citation_numbers"] for n in want.source_nodes
    ]


def test_streaming_events_sync(attributor, want):
    engine = AttribotCitationQueryEngine(StreamingAnswerEngine(), attributor=attributor, streaming=True)
    response = engine.query(QUESTION)
    assert isinstance(response, CitedStreamingResponse)
    events = list(response.event_gen)
    _check_events(events, want)
    # the response is finished like the non-streaming one
    assert response.response_txt == FULL and str(response) == FULL
    assert response.metadata["citations"] == want.metadata["citations"]
    assert [n.node.node_id for n in response.cited_nodes] == [n.node.node_id for n in want.cited_nodes]
    assert response.source_nodes[1].node.metadata["citation_numbers"] == [1]


def test_streaming_events_async(attributor, want):
    engine = AttribotCitationQueryEngine(StreamingAnswerEngine(), attributor=attributor, streaming=True)

    async def run():
        response = await engine.aquery(QUESTION)
        return response, [e async for e in response.async_event_gen()]

    response, events = asyncio.run(run())
    assert isinstance(response, CitedAsyncStreamingResponse)
    _check_events(events, want)
    assert response.response_txt == FULL and response.metadata["citations"] == want.metadata["citations"]


def test_print_response_stream_prints_the_references(attributor, want, capsys):
    references = "".join(f"[{r['number']}] {r['title']}\n" for r in want.metadata["references"])
    assert references.startswith("[1] International travel\n")
    engine = AttribotCitationQueryEngine(StreamingAnswerEngine(), attributor=attributor, streaming=True)
    engine.query(QUESTION).print_response_stream()
    assert capsys.readouterr().out == FULL + "\n" + references
    engine.query(QUESTION).print_response_stream(citations=False)
    assert capsys.readouterr().out == FULL

    async def run():
        await (await engine.aquery(QUESTION)).print_response_stream()

    asyncio.run(run())
    assert capsys.readouterr().out == FULL + "\n" + references
