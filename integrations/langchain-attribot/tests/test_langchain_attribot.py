"""The LangChain adapters: the real default model where attribution is asserted,
FakeListChatModel and DeterministicFakeEmbedding for the chain plumbing."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")  # as tests/conftest.py: float32 runs

import asyncio  # noqa: E402
import copy  # noqa: E402
from operator import itemgetter  # noqa: E402

import pytest  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.language_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from attribot_rag import Attributor  # noqa: E402
from attribot_rag import get_model  # noqa: E402
from langchain_attribot import (  # noqa: E402
    AttribotCitations,
    AttribotCompressor,
    AttribotRetriever,
    documents_to_passages,
    message_text,
    resolve_attributor,
)

QUESTION = "What is the hotel limit per night for international trips?"
ANSWER = "The hotel limit for international trips is $260 per night."
FILLER = "Thank you for asking, I hope you have a lovely day."


def make_docs():
    return [
        Document(
            "Full-time employees receive 22 paid vacation days per year. Unused days expire on March 31.",
            metadata={"title": "Vacation", "source": "handbook"},
            id="leave",
        ),
        Document(
            "For international trips the hotel limit is $260 per night. Meals are covered up to $95 a day.",
            metadata={"title": "International travel", "source": "handbook"},
            id="travel",
        ),
        Document(
            "The Pittsburgh office has 40 parking spaces. Bicycles can be stored in the basement.",
            metadata={"title": "Parking", "source": "handbook"},
            id="parking",
        ),
    ]


class ListRetriever(BaseRetriever):
    """Returns fixed documents (or none)."""

    docs: list

    def _get_relevant_documents(self, query, *, run_manager):
        return list(self.docs)


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=24)


# --------------------------------------------------------------------------- no model


def test_public_names_and_types():
    import langchain_attribot

    assert sorted(langchain_attribot.__all__) == [
        "AttribotCitations",
        "AttribotCompressor",
        "AttribotRetriever",
        "attribot_chat_model",
        "attribot_pipeline",
        "documents_to_passages",
        "message_text",
        "resolve_attributor",
    ]
    assert issubclass(AttribotCompressor, BaseDocumentCompressor)
    assert issubclass(AttribotRetriever, BaseRetriever)
    comp = AttribotCompressor(model="smollm2-135m", top_n=2)
    assert not comp._source.loaded  # lazy: nothing loaded yet
    with pytest.raises(ValueError, match=r"top_n\n  Input should be greater than or equal to 1"):
        AttribotCompressor(top_n=0)
    with pytest.raises(ValueError, match=r"keep_mass\n  Input should be less than or equal to 1"):
        AttribotCompressor(keep_mass=2.0)


def test_the_package_imports_without_the_chat_extra(monkeypatch):
    """langchain-huggingface is the optional extra [chat]: without it the package imports,
    and the two functions that need it name the extra (before any model is loaded)."""
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "langchain_attribot" or m.startswith("langchain_attribot.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "langchain_huggingface", None)  # importing it raises ImportError
    fresh = importlib.import_module("langchain_attribot")
    assert fresh.AttribotCompressor.__name__ == "AttribotCompressor" and fresh.AttribotCitations
    for function in (fresh.attribot_chat_model, fresh.attribot_pipeline):
        with pytest.raises(ImportError, match=r"needs langchain-huggingface.*pip install 'langchain-attribot\[chat\]'"):
            function("smollm2-135m")


def test_empty_inputs_pass_through_without_a_model():
    comp = AttribotCompressor(model="smollm2-135m", top_n=1)
    assert comp.compress_documents([], QUESTION) == []
    retriever = AttribotRetriever(base_retriever=ListRetriever(docs=[]), compressor=comp)
    assert retriever.invoke(QUESTION) == []
    assert asyncio.run(retriever.ainvoke(QUESTION)) == []
    step = AttribotCitations(model="smollm2-135m")
    out = step.invoke({"question": QUESTION, "context": [], "answer": ANSWER})
    assert out["citations"] == [] and out["cited_answer"] == ANSWER and out["unsupported"] == []
    out = step.invoke({"question": QUESTION, "context": make_docs(), "answer": AIMessage(content="")})
    assert out["citations"] == []
    assert not comp._source.loaded and not step._source.loaded
    with pytest.raises(KeyError, match=r"AttribotCitations input lacks \['question'\]"):
        step.invoke({"context": make_docs(), "answer": ANSWER})


@pytest.mark.slow  # loads smollm2-135m
def test_helpers():
    passages, positions = documents_to_passages(
        [Document("a text", id="x"), Document("   "), "plain string", Document("b", id="x")]
    )
    assert [p.id for p in passages] == ["x", "2", "x#3"] and positions == [0, 2, 3]
    assert message_text(AIMessage(content=[{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}])) == "Hi there"
    assert message_text("plain") == "plain"
    lm = get_model("smollm2-135m")

    class FakePipelineLLM:  # langchain_huggingface.HuggingFacePipeline keeps a transformers pipeline
        class pipeline:
            model = lm.model
            tokenizer = lm.tokenizer

    assert resolve_attributor(FakePipelineLLM()).lm.model is lm.model
    assert AttribotCompressor(lm.model, lm.tokenizer).attributor.lm.model is lm.model


# --------------------------------------------------------------------------- real model


def test_compressor_prunes_copies(attributor):
    docs = make_docs()
    before = copy.deepcopy(docs)
    comp = AttribotCompressor(attributor=attributor, top_n=1, max_new_tokens=24, method="loo", fusion="attribution")
    out = comp.compress_documents(docs, QUESTION)
    assert [d.id for d in out] == ["travel"]
    assert out[0].metadata["attribution_rank"] == 1 and out[0].metadata["attribution_score"] > 1
    assert out[0].metadata["source"] == "handbook"
    assert docs == before  # the caller's documents are unchanged
    assert [p.id for p in comp.last_result.dropped] == ["leave", "parking"]
    # top_n larger than the input keeps everything (scored)
    kept = AttribotCompressor(attributor=attributor, top_n=10, max_new_tokens=24).compress_documents(
        docs, QUESTION
    )
    assert [d.id for d in kept] == ["leave", "travel", "parking"]
    assert kept[1].metadata["attribution_rank"] == 1 and all("attribution_score" in d.metadata for d in kept)


def test_retriever_wrapper_with_fake_embeddings(attributor):
    docs = make_docs()
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(docs)
    retriever = AttribotRetriever(
        base_retriever=store.as_retriever(search_kwargs={"k": 3}),
        compressor=AttribotCompressor(attributor=attributor, top_n=1, max_new_tokens=24, method="loo", fusion="attribution"),
    )
    sync = retriever.invoke(QUESTION)
    async_ = asyncio.run(retriever.ainvoke(QUESTION))
    assert [d.page_content for d in sync] == [docs[1].page_content]
    assert [d.page_content for d in async_] == [docs[1].page_content]


def test_citation_step_after_any_chat_model(attributor):
    """A RAG chain with a fake chat model gets citations by adding one step; the local
    model attributes the other model's answer as a proxy."""
    docs = make_docs()
    before = copy.deepcopy(docs)
    retriever = ListRetriever(docs=docs)
    prompt = ChatPromptTemplate.from_messages([("human", "{context}\n\nQuestion: {question}")])
    chat_model = FakeListChatModel(responses=[ANSWER + " " + FILLER])
    format_docs = RunnableLambda(lambda x: "\n\n".join(d.page_content for d in x["context"]))
    chain = (
        RunnablePassthrough.assign(context=itemgetter("question") | retriever)
        .assign(answer=RunnablePassthrough.assign(context=format_docs) | prompt | chat_model | StrOutputParser())
        | AttribotCitations(attributor=attributor)
    )
    out = chain.invoke({"question": QUESTION})
    assert out["answer"] == ANSWER + " " + FILLER
    assert out["cited_answer"].startswith("The hotel limit for international trips is $260 per night [1].")
    assert out["unsupported"] == [FILLER]
    cits = out["citations"]
    assert cits and {c["passage_id"] for c in cits} == {"travel"}  # not the parking document
    c = cits[0]
    assert c["sentence"] == ANSWER and c["sentence_span"] == [0, len(ANSWER)]
    assert c["source_id"] == "travel#s0" and c["passage_index"] == 1 and c["score"] > 0
    assert docs[1].page_content[c["quote_span"][0] : c["quote_span"][1]] == c["quote"]
    assert docs == before
    # an AIMessage answer and the async path give the same citations
    step = AttribotCitations(attributor=attributor, level="passage")
    msg = {"question": QUESTION, "context": docs, "answer": AIMessage(content=ANSWER)}
    sync = step.invoke(msg)
    async_ = asyncio.run(step.ainvoke(msg))
    assert sync["citations"][0]["quote"] == docs[1].page_content
    assert sync["citations"] == async_["citations"]


# --------------------------------------------------------------------------- streaming


def _streaming_chain(attributor, answer, parse=True):
    """retriever -> prompt -> a chat model streaming ``answer`` char by char -> citations."""
    prompt = ChatPromptTemplate.from_messages([("human", "{context}\n\nQuestion: {question}")])
    model = FakeListChatModel(responses=[answer])
    llm = prompt | model | StrOutputParser() if parse else prompt | model
    format_docs = RunnableLambda(lambda x: "\n\n".join(d.page_content for d in x["context"]))
    return (
        RunnablePassthrough.assign(context=itemgetter("question") | ListRetriever(docs=make_docs()))
        .assign(answer=RunnablePassthrough.assign(context=format_docs) | llm)
        | AttribotCitations(attributor=attributor)
    )


def _added(chunks):
    total = None
    for c in chunks:
        total = c if total is None else total + c
    return total


CITED_KEYS = ("citations", "cited_answer", "unsupported")


def test_citation_step_streams_with_the_upstream_answer(attributor):
    """The upstream model's chunks come through as they arrive, the first sentence's
    citations before the answer has ended, and the end is invoke's citations."""
    full = ANSWER + " " + FILLER
    chain = _streaming_chain(attributor, full)
    chunks = list(chain.stream({"question": QUESTION}))
    answer_at = [i for i, c in enumerate(chunks) if "answer" in c]
    sentence_at = [i for i, c in enumerate(chunks) if "sentences" in c]
    assert len(answer_at) > 10  # streamed, not one block
    assert sentence_at[0] < answer_at[-1]  # a sentence cited while the answer streams
    first = chunks[sentence_at[0]]["sentences"][0]
    assert first["text"] == ANSWER and first["markers"] == [1] and first["citations"][0]["passage_id"] == "travel"
    last = chunks[-1]
    assert set(CITED_KEYS) <= set(last)  # the last chunk carries the whole cited answer
    whole = chain.invoke({"question": QUESTION})
    for key in CITED_KEYS:
        assert last[key] == whole[key]
    total = _added(chunks)  # the chunks add up to invoke's output
    assert set(total) == set(whole) and total["answer"] == whole["answer"] == full
    assert [s["text"] for s in total["sentences"]] == [s["text"] for s in whole["sentences"]]
    assert [s["markers"] for s in total["sentences"]] == [s["markers"] for s in whole["sentences"]]
    for key in CITED_KEYS:
        assert total[key] == whole[key]


def test_citation_step_astream_over_chat_message_chunks(attributor):
    """No output parser: the answer arrives as AIMessageChunks; astream gives the same."""
    full = ANSWER + " " + FILLER
    chain = _streaming_chain(attributor, full, parse=False)

    async def collect():
        return [c async for c in chain.astream({"question": QUESTION})]

    chunks = asyncio.run(collect())
    assert any("sentences" in c for c in chunks[:-1])
    whole = chain.invoke({"question": QUESTION})
    assert message_text(whole["answer"]) == full
    for key in CITED_KEYS:
        assert chunks[-1][key] == whole[key]
    assert message_text(_added(chunks)["answer"]) == full


def test_citation_step_generates_and_streams_its_own_answer(attributor):
    step = AttribotCitations(attributor=attributor, generate=True, max_new_tokens=24, method="at2")
    inputs = {"question": QUESTION, "context": make_docs()}
    whole = step.invoke(inputs)
    assert whole["answer"].strip() and whole["cited_answer"]
    chunks = list(step.stream(inputs))
    total = _added(chunks)
    assert total["answer"] == whole["answer"]  # the text chunks spell the generated answer
    assert sum("answer" in c for c in chunks) > 2
    assert [c["source_id"] for c in chunks[-1]["citations"]] == [c["source_id"] for c in whole["citations"]]
    for got, want in zip(chunks[-1]["citations"], whole["citations"]):
        assert got["number"] == want["number"] and got["score"] == pytest.approx(want["score"], rel=1e-4, abs=1e-4)

    async def collect():
        return [c async for c in step.astream(inputs)]

    achunks = asyncio.run(collect())
    assert _added(achunks)["answer"] == whole["answer"]
    assert [c["source_id"] for c in achunks[-1]["citations"]] == [c["source_id"] for c in whole["citations"]]
    with pytest.raises(KeyError, match=r"lacks \['answer'\]"):  # without generate=True a missing answer is still an error
        AttribotCitations(attributor=attributor).invoke(inputs)
