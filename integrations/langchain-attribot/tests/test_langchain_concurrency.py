"""One shared compressor / retriever / citation step serving concurrent calls: each call
gets its own draft, scores and citations (issue 33). A fake attribution (fast,
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
from langchain_core.callbacks import AsyncCallbackHandler  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402

import attribot_rag.integration as integration  # noqa: E402
from attribot_rag.testing import overlapping_filter  # noqa: E402
from langchain_attribot import AttribotCitations, AttribotCompressor, AttribotRetriever  # noqa: E402

DOCS = [
    Document("Full-time employees receive 22 paid vacation days per year.", id="leave"),
    Document("For international trips the hotel limit is $260 per night.", id="travel"),
    Document("The Pittsburgh office has 40 parking spaces.", id="parking"),
]
# each question's fake attribution favours one document
FAVOURED = {"How many vacation days?": "leave", "What is the hotel limit?": "travel"}
Q1, Q2 = FAVOURED


class FakeAttributor:
    model_name = "fake"


class ListRetriever(BaseRetriever):
    docs: list

    def _get_relevant_documents(self, query, *, run_manager):
        return list(self.docs)


@pytest.fixture
def fake_attribution(monkeypatch):
    """Replaces the draft-attribute-select step: the draft names the question, the
    favoured document scores 3; each call waits until two calls are in flight."""
    monkeypatch.setattr(integration, "filter_passages", overlapping_filter(FAVOURED))


def _check_own(question, docs, result):
    assert [d.id for d in docs] == [FAVOURED[question]]  # top_n=1: its own favoured document
    assert docs[0].metadata["attribution_score"] == 3.0 and docs[0].metadata["attribution_rank"] == 1
    assert docs[0].metadata["attribution_draft"] == f"draft for {question}"
    assert result.question == question and result.draft == f"draft for {question}"
    assert [p.id for p in result.kept] == [FAVOURED[question]]


def test_shared_compressor_in_threads(fake_attribution):
    comp = AttribotCompressor(attributor=FakeAttributor(), top_n=1)
    after = threading.Barrier(2, timeout=20)  # both calls done before either reads last_result

    def call(question):
        docs = comp.compress_documents(DOCS, question)
        after.wait()
        return docs, comp.last_result

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(call, [Q1, Q2]))
    for question, (docs, result) in zip([Q1, Q2], outs):
        _check_own(question, docs, result)
    assert comp.last_result is None  # this thread made no call
    assert all("attribution_draft" not in d.metadata for d in DOCS)  # the caller's documents untouched


def test_shared_compressor_and_retriever_in_asyncio(fake_attribution):
    comp = AttribotCompressor(attributor=FakeAttributor(), top_n=1)
    retriever = AttribotRetriever(base_retriever=ListRetriever(docs=DOCS), compressor=comp)

    async def call(question, after):
        docs = await comp.acompress_documents(DOCS, question)
        await after.wait()
        return docs, comp.last_result

    async def with_result(question):
        return await comp.acompress_documents_with_result(DOCS, question)

    async def main():
        after = asyncio.Barrier(2)
        outs = await asyncio.gather(call(Q1, after), call(Q2, after))
        explicit = await asyncio.gather(with_result(Q1), with_result(Q2))
        retrieved = await asyncio.gather(retriever.ainvoke(Q1), retriever.ainvoke(Q2))
        return outs, explicit, retrieved

    outs, explicit, retrieved = asyncio.run(main())
    for question, (docs, result), (docs2, result2), docs3 in zip([Q1, Q2], outs, explicit, retrieved):
        _check_own(question, docs, result)
        _check_own(question, docs2, result2)
        assert [d.id for d in docs3] == [FAVOURED[question]]
        assert docs3[0].metadata["attribution_draft"] == f"draft for {question}"


class Recorder(AsyncCallbackHandler):
    def __init__(self):
        self.events = []

    async def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("retriever_start", query, run_id, parent_run_id))

    async def on_retriever_end(self, documents, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("retriever_end", [d.id for d in documents], run_id, parent_run_id))

    async def on_custom_event(self, name, data, *, run_id, **kwargs):
        self.events.append((name, data, run_id, None))


def test_async_retriever_passes_its_callbacks(fake_attribution):
    """ainvoke: the base retriever runs as a child of the retriever's run, and the
    compression reports its result to the same callbacks, on that run."""
    comp = AttribotCompressor(attributor=FakeAttributor(), top_n=1)
    retriever = AttribotRetriever(base_retriever=ListRetriever(docs=DOCS), compressor=comp)
    recorders = [Recorder(), Recorder()]

    async def main():
        return await asyncio.gather(
            *(retriever.ainvoke(q, config={"callbacks": [r]}) for q, r in zip([Q1, Q2], recorders))
        )

    asyncio.run(main())
    for question, rec in zip([Q1, Q2], recorders):
        kinds = [e[0] for e in rec.events]
        assert kinds == ["retriever_start", "retriever_start", "retriever_end", "attribot_prune", "retriever_end"]
        outer, inner = rec.events[0], rec.events[1]
        assert outer[1] == inner[1] == question and outer[3] is None
        assert inner[3] == outer[2]  # the base retriever is a child of the outer run
        assert rec.events[2][1] == ["leave", "travel", "parking"]
        name, data, run_id, _ = rec.events[3]
        assert run_id == outer[2]  # reported on the retriever's run
        assert data["question"] == question and data["draft"] == f"draft for {question}"
        assert [p["id"] for p in data["kept"]] == [FAVOURED[question]]
        assert rec.events[4][1] == [FAVOURED[question]] and rec.events[4][2] == outer[2]


def test_sync_compressor_reports_to_callbacks(fake_attribution):
    comp = AttribotCompressor(attributor=FakeAttributor(), top_n=1)
    retriever = AttribotRetriever(base_retriever=ListRetriever(docs=DOCS), compressor=comp)
    recorders = [Recorder(), Recorder()]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda qr: retriever.invoke(qr[0], config={"callbacks": [qr[1]]}), zip([Q1, Q2], recorders)))
    for question, rec in zip([Q1, Q2], recorders):
        custom = [e for e in rec.events if e[0] == "attribot_prune"]
        assert len(custom) == 1 and custom[0][1]["draft"] == f"draft for {question}"
        assert custom[0][2] == rec.events[0][2]


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def attributor():
    from attribot_rag import Attributor, get_model

    return Attributor(get_model("smollm2-135m"), max_new_tokens=16)


@pytest.mark.slow
def test_shared_components_with_the_real_model(attributor):
    """Two questions at once through one compressor and one citation step, in threads
    and in asyncio: each gets what it gets alone."""
    comp = AttribotCompressor(attributor=attributor, top_n=1, max_new_tokens=16, method="loo")
    step = AttribotCitations(attributor=attributor, level="passage")
    questions = ["How many paid vacation days do employees get?", "What is the hotel limit per night?"]
    answers = ["Employees get 22 paid vacation days per year.", "The hotel limit is $260 per night."]

    def run(i):
        docs = comp.compress_documents(DOCS, questions[i])
        cited = step.invoke({"question": questions[i], "context": DOCS, "answer": answers[i]})
        return docs, comp.last_result, cited

    alone = [run(0), run(1)]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(run, [0, 1]))

    async def arun(i):
        docs = await comp.acompress_documents(DOCS, questions[i])
        cited = await step.ainvoke({"question": questions[i], "context": DOCS, "answer": answers[i]})
        return docs, comp.last_result, cited

    async def main():
        return await asyncio.gather(arun(0), arun(1))

    for outs in (threaded, asyncio.run(main())):
        for (docs, result, cited), (docs0, result0, cited0) in zip(outs, alone):
            assert result.question == result0.question and result.draft == result0.draft
            assert [d.id for d in docs] == [d.id for d in docs0]
            assert docs[0].metadata["attribution_draft"] == result0.draft
            assert [p.score for p in result.scores] == pytest.approx([p.score for p in result0.scores], abs=1e-4)
            assert cited["citations"] == cited0["citations"] and cited["cited_answer"] == cited0["cited_answer"]
    assert [c["passage_id"] for c in alone[0][2]["citations"]] == ["leave"]
    assert [c["passage_id"] for c in alone[1][2]["citations"]] == ["travel"]
