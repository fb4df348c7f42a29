"""LlamaIndex adapters over attribot-rag's public API.

* :class:`AttribotPostprocessor` (a ``BaseNodePostprocessor``): drafts an answer with the
  attributing model, attributes it to the incoming nodes, and returns *copies* of the
  nodes with the attribution score in their metadata (hidden from the LLM and the
  embedder); with ``top_n`` or ``keep_mass`` only the kept nodes, in their original
  order, so the query engine's own synthesizer makes the second pass.
* :func:`cite_response` and :class:`AttribotCitationQueryEngine`: attribute the final
  ``Response`` of any query engine to its ``source_nodes`` and return a
  :class:`CitedResponse` (the answer with ``[n]`` markers, the citations in
  ``metadata["citations"]``, the cited nodes in ``cited_nodes``); with
  ``streaming=True`` the engine returns a :class:`CitedStreamingResponse` whose
  ``response_gen`` yields the answer as it arrives, each completed sentence's citations
  appended to ``metadata["sentences"]`` meanwhile, the whole citations there once it is
  exhausted.

The attributing model is a model name (alias, Hugging Face id or path; loaded once per
process), the model objects of an existing ``HuggingFaceLLM`` (``llm=``), transformers
``model=`` and ``tokenizer=`` objects, or a ready :class:`attribot_rag.Attributor`.
What is not LlamaIndex's (the model, passages, pruning, citations per node) is
:mod:`attribot_rag.integration`'s; this module converts nodes and responses.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Tuple

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from attribot_rag import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MODEL, Attributor, CitedAnswer, Passage
from attribot_rag import integration
from attribot_rag.integration import (
    DEFAULT_FILTER_METHOD,
    DEFAULT_FUSION,
    AttributorSource,
    Record,
    RecordCitations,
    RecordStream,
    check_keep,
    cite_records,
    model_label,
    prune_with,
    records_to_passages,
    require_query,
)

logger = logging.getLogger(__name__)

SCORE_KEY = "attribution_score"
RANK_KEY = "attribution_rank"
CITATIONS_KEY = "citation_numbers"


# --------------------------------------------------------------------------- shared


def _llm_objects(llm: Any) -> Tuple[Any, Any]:
    """The transformers model and tokenizer a ``HuggingFaceLLM`` holds."""
    model = getattr(llm, "_model", None)
    if model is None:
        model = getattr(llm, "model", None)
    tokenizer = getattr(llm, "_tokenizer", None)
    if tokenizer is None:
        tokenizer = getattr(llm, "tokenizer", None)
    if model is None or tokenizer is None or isinstance(model, str):
        raise ValueError(
            "llm must be a HuggingFaceLLM (or any object with the transformers model and "
            "tokenizer in _model/_tokenizer); pass model= or attributor= otherwise"
        )
    return model, tokenizer


def resolve_attributor(
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    *,
    attributor: Optional[Attributor] = None,
    llm: Any = None,
    dtype: Any = None,
    **options: Any,
) -> Attributor:
    """An :class:`Attributor` from whatever the caller has.

    ``llm`` is a ``HuggingFaceLLM`` (its ``_model`` / ``_tokenizer`` are reused, no second
    copy of the weights); ``model`` a name (loaded once per process, in ``dtype``) or a
    transformers model (with ``tokenizer``; used in its own dtype, never converted);
    ``attributor`` is used as is.
    """
    if attributor is None and llm is not None:
        model, tokenizer = _llm_objects(llm)
    return integration.resolve_attributor(model, tokenizer, attributor=attributor, dtype=dtype, **options)


def _source(model: Any, tokenizer: Any, attributor: Optional[Attributor], llm: Any) -> AttributorSource:
    """The attributing model as given, resolved on first use."""
    if attributor is None and llm is not None:
        model, tokenizer = _llm_objects(llm)
    return AttributorSource(model, tokenizer, attributor=attributor)


def _label(model: Any, attributor: Optional[Attributor], llm: Any) -> str:
    if attributor is None and llm is not None:
        return str(getattr(llm, "model_name", None) or "huggingface-llm")
    return model_label(model, attributor)


def nodes_to_records(nodes: Sequence[NodeWithScore]) -> List[Record]:
    """Records for the nodes: node id, text (without metadata), ``metadata["title"]``, and
    the retriever's ``NodeWithScore.score``."""
    return [
        Record.of(n.node.node_id or None, n.node.get_content(metadata_mode=MetadataMode.NONE), n.node.metadata, n.score)
        for n in nodes
    ]


def nodes_to_passages(nodes: Sequence[NodeWithScore]) -> Tuple[List[Passage], List[int]]:
    """Passages for the nodes that have text, and the node position of each passage.

    The passage id is the node id (made unique with ``#<position>`` when a node repeats).
    """
    return records_to_passages(nodes_to_records(nodes))


def _copy_with(nws: NodeWithScore, extra: Dict[str, Any]) -> NodeWithScore:
    """A deep copy of the node with ``extra`` metadata, hidden from the LLM and embedder."""
    node = nws.node.model_copy(deep=True)
    node.metadata = {**(node.metadata or {}), **extra}
    for key in extra:
        if key not in node.excluded_llm_metadata_keys:
            node.excluded_llm_metadata_keys.append(key)
        if key not in node.excluded_embed_metadata_keys:
            node.excluded_embed_metadata_keys.append(key)
    return NodeWithScore(node=node, score=nws.score)


# --------------------------------------------------------------------------- postprocessor


class AttribotPostprocessor(BaseNodePostprocessor):
    """Draft an answer, attribute it to the nodes, keep the nodes it used.

    >>> post = AttribotPostprocessor(model="smollm2-135m", top_n=2)
    >>> engine = index.as_query_engine(node_postprocessors=[post])

    Returned nodes are copies: ``metadata["attribution_score"]`` and
    ``metadata["attribution_rank"]`` (excluded from what the LLM and the embedder see);
    the caller's nodes are never modified. Without ``top_n`` and ``keep_mass`` every node
    is returned; with them, the kept ones in their original order, never none.
    """

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Attributing model: an attribot-rag alias, Hugging Face id or local path "
        "(informational when model objects or an attributor are given).",
    )
    method: str = Field(
        default=DEFAULT_FILTER_METHOD,
        description='Attribution method (attribot_rag.available_methods()); "auto": at2 where '
        "weights ship for the model (its features come with the draft), else loo.",
    )
    fusion: str = Field(
        default=DEFAULT_FUSION,
        description="How the ranking combines attribution with the retriever's order (node order, "
        'or NodeWithScore.score when every node has one): "guarded" (the retriever\'s top node stays '
        'first unless its attribution is confidently negative, the rest by reciprocal-rank fusion), '
        '"rrf", "attribution" (attribution alone) or "retrieval".',
    )
    top_n: Optional[int] = Field(
        default=None, description="Keep only the n highest-scoring nodes (None: keep all)."
    )
    keep_mass: Optional[float] = Field(
        default=None,
        description="Keep the fewest best nodes holding this fraction of the positive score (None: off).",
    )
    max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, description="Length limit of the draft answer.")
    batch_size: int = Field(default=4, description="Ablations per forward pass.")
    score_key: str = Field(default=SCORE_KEY, description="Metadata key of the attribution score.")
    rank_key: str = Field(default=RANK_KEY, description="Metadata key of the attribution rank.")
    fail_open: bool = Field(
        default=False,
        description="On an attribution error (e.g. the context does not fit the model), log it "
        "and return the nodes unchanged instead of raising.",
    )
    dtype: Optional[str] = Field(default=None, description='Weights dtype of a model loaded by name: "auto" (bfloat16 where the hardware runs it fast, else float32), "float32" or "bfloat16"; None: $ATTRIBOT_RAG_DTYPE or auto.')

    _source: AttributorSource = PrivateAttr()
    _last_result: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        tokenizer: Any = None,
        *,
        attributor: Optional[Attributor] = None,
        llm: Any = None,
        **kwargs: Any,
    ) -> None:
        source = _source(model, tokenizer, attributor, llm)
        super().__init__(model=_label(model, attributor, llm), **kwargs)
        check_keep(self.top_n, self.keep_mass, self.fusion)
        self._source = source

    @classmethod
    def class_name(cls) -> str:
        return "AttribotPostprocessor"

    @classmethod
    def from_huggingface_llm(cls, llm: Any, **kwargs: Any) -> "AttribotPostprocessor":
        """Reuse the weights of a ``HuggingFaceLLM`` (``llm._model`` / ``llm._tokenizer``)."""
        return cls(llm=llm, **kwargs)

    @property
    def attributor(self) -> Attributor:
        """The attributing model (loaded on first use; names are cached per process)."""
        return self._source.get(
            method=self.method, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, dtype=self.dtype
        )

    @property
    def last_result(self) -> Any:
        """The :class:`attribot_rag.PruneResult` of the latest call (draft answer, kept and
        dropped passages with scores), for inspection; None before the first call."""
        return self._last_result

    def _postprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        if not nodes:
            return []
        query = require_query(
            None if query_bundle is None else query_bundle.query_str,
            "AttribotPostprocessor",
            "pass query_bundle or query_str",
        )
        records = nodes_to_records(nodes)
        if not records_to_passages(records)[0]:  # nothing to attribute: pass the (copied) nodes through
            return [_copy_with(n, {}) for n in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            result, extras = prune_with(self, query, records, log=logger)
            if result is not None:
                self._last_result = result
            out = [_copy_with(nws, extra) for nws, extra in zip(nodes, extras) if extra is not None]
            event.on_end(payload={EventPayload.NODES: out})
        return out

    async def _apostprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        # The model runs in a worker thread so the event loop stays free.
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)


# --------------------------------------------------------------------------- citations


@dataclass
class CitedResponse(Response):
    """A ``Response`` whose text carries ``[n]`` markers.

    ``metadata["citations"]``: one dict per citation (answer sentence and span, source id,
    node id, score, verbatim quote and its span in the node text);
    ``metadata["references"]``: the numbered cited nodes; ``metadata["unsupported"]``:
    answer sentences nothing supports; ``metadata["sentences"]``: every answer sentence
    with its markers, citations and scores; ``metadata["answer"]``: the answer without
    markers. ``cited_nodes``: copies of the cited nodes in reference order (``[1]``
    first), with ``metadata["citation_numbers"]``; ``cited_answer``: the full attribot-rag
    result.
    """

    cited_nodes: List[NodeWithScore] = field(default_factory=list)
    cited_answer: Optional[CitedAnswer] = None


@dataclass
class CitedStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` cited as it streams: ``response_gen`` yields the answer text
    as it arrives (no markers); each answer sentence, once complete, is appended to
    ``metadata["sentences"]`` with its citations on the answer so far. Once the generator
    is exhausted, ``metadata`` holds what a :class:`CitedResponse`'s does (the whole
    answer's citations, references, unsupported sentences, sentences; the marked text in
    ``metadata["cited_text"]``), ``source_nodes`` the copies with their citation numbers,
    ``response_txt`` the answer, and ``cited_nodes`` / ``cited_answer`` are set."""

    cited_nodes: List[NodeWithScore] = field(default_factory=list)
    cited_answer: Optional[CitedAnswer] = None


@dataclass
class CitedAsyncStreamingResponse(AsyncStreamingResponse):
    """The async counterpart of :class:`CitedStreamingResponse` (from ``aquery``)."""

    cited_nodes: List[NodeWithScore] = field(default_factory=list)
    cited_answer: Optional[CitedAnswer] = None


def _drain(response: Any) -> Response:
    if isinstance(response, StreamingResponse):
        return response.get_response()
    if isinstance(response, Response):
        return response
    raise TypeError(
        f"cannot cite a {type(response).__name__}: expected a Response or StreamingResponse"
    )


def _query_str(query: Any, owner: str) -> str:
    query_str = query.query_str if isinstance(query, QueryBundle) else query
    if not isinstance(query_str, str) or not query_str.strip():
        raise ValueError(f"{owner} needs the query string the response answers")
    return query_str


def _cited_parts(result: RecordCitations, nodes: List[NodeWithScore], metadata: Dict[str, Any]) -> Dict[str, Any]:
    """The node copies (with their citation numbers), the cited ones and the metadata of
    a cited answer; the caller's nodes and metadata are not modified."""
    numbers = result.numbers()
    copies = [_copy_with(n, {CITATIONS_KEY: numbers[i]} if result.cited else {}) for i, n in enumerate(nodes)]
    metadata = {
        **metadata,
        "citations": result.citations(id_key="node_id"),
        "references": result.references(id_key="node_id"),
        "unsupported": result.unsupported,
        "sentences": result.sentences(id_key="node_id"),
        "answer": result.answer,
    }
    return {
        "source_nodes": copies,
        "metadata": metadata,
        "cited_nodes": [copies[i] for i in result.cited_positions()],
        "cited_answer": result.cited,
    }


def cite_response(
    response: Any,
    query: Any,
    *,
    attributor: Optional[Attributor] = None,
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    llm: Any = None,
    markers: bool = True,
    dtype: Any = None,
    **cite_options: Any,
) -> CitedResponse:
    """Attribute a query engine's ``Response`` to its ``source_nodes`` and cite them.

    ``query`` is the question (a string or a ``QueryBundle``). The answer may come from
    any LLM: the attributing model scores it as given (a proxy when it is not the model
    that wrote it). ``cite_options`` go to :func:`attribot_rag.cite` (``method``,
    ``level``, ``threshold``, ``relative_threshold``, ``max_per_sentence``...).
    With no source nodes or an empty answer the response is passed through, uncited.
    The caller's response and nodes are not modified.
    """
    response = _drain(response)
    query_str = _query_str(query, "cite_response")
    text = response.response or ""
    nodes = list(response.source_nodes or [])
    source = _source(model, tokenizer, attributor, llm)
    result = cite_records(lambda: source.get(dtype=dtype), query_str, nodes_to_records(nodes), text, **cite_options)
    parts = _cited_parts(result, nodes, dict(response.metadata or {}))
    if result.cited is None:
        return CitedResponse(response=response.response, source_nodes=parts["source_nodes"], metadata=parts["metadata"])
    return CitedResponse(response=result.text if markers else text, **parts)


class _StreamCiter:
    """Cites a streamed answer on the way: each text chunk in (sentences completed go to
    ``metadata["sentences"]``), the whole on the cited streaming response at the end."""

    def __init__(self, engine: "AttribotCitationQueryEngine", response: Any, query_str: str) -> None:
        self.nodes = list(response.source_nodes or [])
        self.metadata = dict(response.metadata or {})
        self.stream = RecordStream(
            lambda: engine.attributor, query_str, nodes_to_records(self.nodes), id_key="node_id", **engine._cite_options
        )
        self.target: Any = None  # the cited streaming response, set by its maker

    def start(self, cls: type, response_gen: Any) -> Any:
        metadata = {**self.metadata, "sentences": []}
        self.target = cls(response_gen=response_gen, source_nodes=[_copy_with(n, {}) for n in self.nodes], metadata=metadata)
        return self.target

    def take(self, text: str) -> None:
        self.target.metadata["sentences"].extend(self.stream.add(text or ""))

    def finish(self) -> None:
        parts = _cited_parts(self.stream.finish(), self.nodes, self.metadata)
        parts["metadata"]["cited_text"] = parts["cited_answer"].text if parts["cited_answer"] else self.stream.text
        for name, value in parts.items():
            setattr(self.target, name, value)
        self.target.response_txt = self.stream.text  # also when the reader drained response_gen itself


def _tokens(response: Any) -> Iterator[str]:
    """The answer text of a response as it arrives (a plain Response: in one piece)."""
    if isinstance(response, StreamingResponse):
        if response.response_gen is None or response.response_txt is not None:
            yield response.response_txt or ""
        else:
            yield from response.response_gen
    elif isinstance(response, Response):
        yield response.response or ""
    else:
        raise TypeError(f"cannot cite a {type(response).__name__}: expected a Response or StreamingResponse")


async def _atokens(response: Any) -> AsyncIterator[str]:
    if isinstance(response, AsyncStreamingResponse):
        async for text in response.async_response_gen():
            yield text
    else:
        for text in _tokens(response):
            yield text


class AttribotCitationQueryEngine(BaseQueryEngine):
    """Wraps any query engine: its answer comes back cited against its source nodes.

    >>> engine = AttribotCitationQueryEngine(index.as_query_engine(), model="smollm2-135m")
    >>> response = engine.query("...")
    >>> str(response), response.metadata["citations"], response.cited_nodes

    With ``streaming=True`` (best over an engine that streams too), ``query`` returns a
    :class:`CitedStreamingResponse` and ``aquery`` a :class:`CitedAsyncStreamingResponse`:

    >>> response = AttribotCitationQueryEngine(index.as_query_engine(streaming=True), streaming=True).query("...")
    >>> for text in response.response_gen:
    ...     print(text, end="")             # response.metadata["sentences"] grows meanwhile
    >>> response.metadata["citations"]      # the whole answer's, once exhausted
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        *,
        attributor: Optional[Attributor] = None,
        model: Any = DEFAULT_MODEL,
        tokenizer: Any = None,
        llm: Any = None,
        markers: bool = True,
        streaming: bool = False,
        callback_manager: Optional[CallbackManager] = None,
        dtype: Any = None,
        **cite_options: Any,
    ) -> None:
        self._engine = query_engine
        self._source = _source(model, tokenizer, attributor, llm)
        self._dtype = dtype
        self._markers = markers
        self._streaming = streaming
        self._cite_options = cite_options
        super().__init__(callback_manager=callback_manager or getattr(query_engine, "callback_manager", None))

    @property
    def attributor(self) -> Attributor:
        return self._source.get(dtype=self._dtype)

    def _get_prompt_modules(self) -> Dict[str, Any]:
        return {"query_engine": self._engine}

    def _cite(self, response: Any, query_bundle: QueryBundle) -> CitedResponse:
        return cite_response(
            response,
            query_bundle,
            attributor=self.attributor,
            markers=self._markers,
            **self._cite_options,
        )

    def _query(self, query_bundle: QueryBundle) -> Any:
        response = self._engine.query(query_bundle)
        if not self._streaming:
            return self._cite(response, query_bundle)
        citer = _StreamCiter(self, response, _query_str(query_bundle, "AttribotCitationQueryEngine"))

        def response_gen() -> Iterator[str]:
            for text in _tokens(response):
                yield text
                citer.take(text)
            citer.finish()

        return citer.start(CitedStreamingResponse, response_gen())

    async def _aquery(self, query_bundle: QueryBundle) -> Any:
        response = await self._engine.aquery(query_bundle)
        if not self._streaming:
            if isinstance(response, AsyncStreamingResponse):
                response = await response.get_response()
            return await asyncio.to_thread(self._cite, response, query_bundle)
        citer = _StreamCiter(self, response, _query_str(query_bundle, "AttribotCitationQueryEngine"))

        async def response_gen() -> AsyncIterator[str]:
            async for text in _atokens(response):
                yield text
                await asyncio.to_thread(citer.take, text)
            await asyncio.to_thread(citer.finish)

        return citer.start(CitedAsyncStreamingResponse, response_gen())
