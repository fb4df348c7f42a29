"""LangChain's standard retriever suite (langchain-tests) on AttribotRetriever.

The base retriever is an InMemoryVectorStore with DeterministicFakeEmbedding (plumbing);
the attribution behind AttribotRetriever is the real default model. langchain-tests has
no standard suite for document compressors (its suites: chat models, embeddings, tools,
retrievers, vector stores, caches, stores, indexers, sandboxes), so AttribotCompressor is
covered through the retriever and by test_langchain_attribot.py.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")  # as tests/conftest.py: float32 runs

import pytest  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402

from attribot_rag import Attributor, get_model  # noqa: E402
from langchain_attribot import AttribotCompressor, AttribotRetriever  # noqa: E402

DOCS = [
    Document("Full-time employees receive 22 paid vacation days per year.", id="leave", metadata={"title": "Vacation"}),
    Document("For international trips the hotel limit is $260 per night.", id="travel", metadata={"title": "Travel"}),
    Document("The office has 40 parking spaces.", id="parking", metadata={"title": "Parking"}),
    Document("Meals on business trips are covered up to $95 a day.", id="meals", metadata={"title": "Meals"}),
]


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=16)


class TestAttribotRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _attributor(self, attributor):
        self._att = attributor

    @property
    def retriever_constructor(self) -> type[AttribotRetriever]:
        return AttribotRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        store = InMemoryVectorStore.from_documents(DOCS, DeterministicFakeEmbedding(size=16))
        return {
            "base_retriever": store.as_retriever(search_kwargs={"k": 4}),
            "compressor": AttribotCompressor(attributor=self._att, top_n=2),
        }

    @property
    def retriever_query_example(self) -> str:
        return "What is the hotel limit per night for international trips?"


def test_the_standard_fixture_prunes_with_the_real_model(attributor):
    """What the standard suite's invoke tests ran through: 4 retrieved, the top 2 kept, scored copies."""
    store = InMemoryVectorStore.from_documents(DOCS, DeterministicFakeEmbedding(size=16))
    retriever = AttribotRetriever(
        base_retriever=store.as_retriever(search_kwargs={"k": 4}),
        compressor=AttribotCompressor(attributor=attributor, top_n=2),
    )
    docs = retriever.invoke("What is the hotel limit per night for international trips?")
    assert len(docs) == 2
    assert all("attribution_score" in d.metadata for d in docs)
    assert all("attribution_score" not in d.metadata for d in DOCS)  # originals untouched


def test_k_overrides_the_compressor_rule_and_bad_k_is_refused(attributor):
    store = InMemoryVectorStore.from_documents(DOCS, DeterministicFakeEmbedding(size=16))
    compressor = AttribotCompressor(attributor=attributor, keep_mass=0.99)
    retriever = AttribotRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 4}), compressor=compressor)
    query = "What is the hotel limit per night for international trips?"
    retrieved = store.as_retriever(search_kwargs={"k": 4}).invoke(query)
    best = AttribotCompressor(attributor=attributor, top_n=1).compress_documents(retrieved, query)
    one = retriever.invoke(query, k=1)
    assert [d.id for d in one] == [d.id for d in best]  # k=1 keeps what top_n=1 keeps
    assert len(retriever.invoke(query, k=3)) == 3
    assert compressor.keep_mass == 0.99 and compressor.top_n is None  # the caller's compressor is unchanged
    with pytest.raises(Exception, match="number of documents to return must be an integer >= 1, got 0"):
        retriever.invoke(query, k=0)
