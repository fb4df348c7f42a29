"""Cited answers for LlamaIndex: :func:`cite_response` and
:class:`AttribotCitationQueryEngine` attribute the final ``Response`` of any query engine
to its ``source_nodes`` and return a :class:`CitedResponse` (the answer with ``[n]``
markers, the citations in ``metadata["citations"]``, the cited nodes in
``cited_nodes``); with ``streaming=True`` the engine returns a
:class:`CitedStreamingResponse` (see there)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from attribot_rag import DEFAULT_MODEL, Attributor, CitedAnswer
from attribot_rag.integration import RecordCitations, RecordStream, cite_records

from llama_index.postprocessor.attribot._common import (
    CITATIONS_KEY,
    _copy_with,
    _source,
    nodes_to_records,
)


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
