"""Cited answers for LlamaIndex: :func:`cite_response` and
:class:`AttribotCitationQueryEngine` attribute the final ``Response`` of any query engine
to its ``source_nodes`` and return a :class:`CitedResponse` (the answer with ``[n]``
markers, the citations in ``metadata["citations"]``, the cited nodes in
``cited_nodes``); with ``streaming=True`` the engine returns a
:class:`CitedStreamingResponse` (see there): ``response_gen`` yields the answer text,
``event_gen`` the text and then each completed sentence's citations
(:class:`CitationStreamEvent`), the whole answer's citations last."""

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
from attribot_rag import CitationPolicy
from attribot_rag.integration import RecordCitations, RecordStream, cite_records, cite_settings

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


@dataclass(frozen=True)
class CitationStreamEvent:
    """One step of a cited streaming answer (:attr:`CitedStreamingResponse.event_gen`):

    * ``kind == "text"``: ``text``, the answer text that just arrived (no markers);
    * ``kind == "sentence"``: ``sentence``, an answer sentence that just completed, with
      its markers and citations on the answer so far (the dict of
      ``metadata["sentences"]``: ``text``, ``markers``, ``citations`` with ``node_id``...);
    * ``kind == "citations"`` (last): the whole answer's, as the non-streaming call's:
      ``metadata`` (``citations``, ``references``, ``unsupported``, ``sentences``,
      ``answer``, ``cited_text``), ``source_nodes`` (copies with their citation numbers)
      and ``cited_nodes`` (the cited copies, ``[1]`` first).
    """

    kind: str
    text: str = ""
    sentence: Optional[Dict[str, Any]] = None
    metadata: Optional[Dict[str, Any]] = None
    source_nodes: Optional[List[NodeWithScore]] = None
    cited_nodes: Optional[List[NodeWithScore]] = None

    @property
    def citations(self) -> List[Dict[str, Any]]:
        """The citations of a ``"sentence"`` or ``"citations"`` event (else none)."""
        if self.sentence is not None:
            return list(self.sentence.get("citations", []))
        return list((self.metadata or {}).get("citations", []))


@dataclass
class CitedStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` cited as it streams: ``response_gen`` yields the answer text
    as it arrives (no markers); each answer sentence, once complete, is appended to
    ``metadata["sentences"]`` with its citations on the answer so far. ``event_gen``
    yields the same stream as :class:`CitationStreamEvent` objects: each text chunk, each
    completed sentence's citations right after the chunk that completed it, and last the
    whole answer's citations (read one of the two generators: they share the stream).
    Once the stream is exhausted, ``metadata`` holds what a :class:`CitedResponse`'s does
    (the whole answer's citations, references, unsupported sentences, sentences; the
    marked text in ``metadata["cited_text"]``), ``source_nodes`` the copies with their
    citation numbers, ``response_txt`` the answer, and ``cited_nodes`` / ``cited_answer``
    are set. ``print_response_stream()`` prints the answer as it arrives, then the
    numbered references."""

    cited_nodes: List[NodeWithScore] = field(default_factory=list)
    cited_answer: Optional[CitedAnswer] = None
    event_gen: Optional[Iterator[CitationStreamEvent]] = None

    def print_response_stream(self, citations: bool = True) -> None:
        """Print the answer as it arrives, then (``citations``) the numbered references."""
        streamed = self.response_txt is None and self.response_gen is not None
        super().print_response_stream()
        references = _format_references(self.metadata) if citations else ""
        if references:
            print(("\n" if streamed else "") + references)


@dataclass
class CitedAsyncStreamingResponse(AsyncStreamingResponse):
    """The async counterpart of :class:`CitedStreamingResponse` (from ``aquery``):
    ``async_response_gen()`` yields the text, ``async_event_gen()`` the
    :class:`CitationStreamEvent` objects."""

    cited_nodes: List[NodeWithScore] = field(default_factory=list)
    cited_answer: Optional[CitedAnswer] = None
    event_gen: Optional[AsyncIterator[CitationStreamEvent]] = None

    async def async_event_gen(self) -> AsyncIterator[CitationStreamEvent]:
        """The text and citation events (one reader: it shares the stream with
        ``async_response_gen()``)."""
        if self.event_gen is None:
            return
        async for event in self.event_gen:
            yield event

    async def print_response_stream(self, citations: bool = True) -> None:
        """Print the answer as it arrives, then (``citations``) the numbered references."""
        await super().print_response_stream()
        references = _format_references(self.metadata) if citations else ""
        if references:
            print(references)


def _format_references(metadata: Optional[Dict[str, Any]]) -> str:
    """The numbered references of a finished cited answer, one line each."""
    lines = []
    for ref in (metadata or {}).get("references", []):
        label = ref.get("title") or ref.get("node_id") or ref.get("passage_id")
        lines.append(f"[{ref['number']}] {label}")
    return "\n".join(lines)


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
    policy: Optional[CitationPolicy] = None,
    method: Optional[str] = None,
    level: str = "sentence",
) -> CitedResponse:
    """Attribute a query engine's ``Response`` to its ``source_nodes`` and cite them.

    ``query`` is the question (a string or a ``QueryBundle``). The answer may come from
    any LLM: the attributing model scores it as given (a proxy when it is not the model
    that wrote it). ``policy`` (an :class:`attribot_rag.CitationPolicy`; None: the
    default), ``method`` (None: "auto") and ``level`` are :func:`attribot_rag.cite`'s.
    With no source nodes or an empty answer the response is passed through, uncited.
    The caller's response and nodes are not modified.
    """
    response = _drain(response)
    query_str = _query_str(query, "cite_response")
    text = response.response or ""
    nodes = list(response.source_nodes or [])
    source = _source(model, tokenizer, attributor, llm)
    options = cite_settings(policy, method, level)
    result = cite_records(lambda: source.get(dtype=dtype), query_str, nodes_to_records(nodes), text, **options)
    parts = _cited_parts(result, nodes, dict(response.metadata or {}))
    if result.cited is None:
        return CitedResponse(response=response.response, source_nodes=parts["source_nodes"], metadata=parts["metadata"])
    return CitedResponse(response=result.text if markers else text, **parts)


class _StreamCiter:
    """Cites a streamed answer on the way: each text chunk in (sentences completed go to
    ``metadata["sentences"]``), the whole on the cited streaming response at the end; the
    events of :class:`CitationStreamEvent` out."""

    def __init__(self, engine: "AttribotCitationQueryEngine", response: Any, query_str: str) -> None:
        self.nodes = list(response.source_nodes or [])
        self.metadata = dict(response.metadata or {})
        self.stream = RecordStream(
            lambda: engine.attributor, query_str, nodes_to_records(self.nodes), id_key="node_id", **engine._cite_options
        )
        self.target: Any = None  # the cited streaming response, set by its maker

    def start(self, cls: type, response_gen: Any, event_gen: Any) -> Any:
        metadata = {**self.metadata, "sentences": []}
        self.target = cls(
            response_gen=response_gen,
            source_nodes=[_copy_with(n, {}) for n in self.nodes],
            metadata=metadata,
            event_gen=event_gen,
        )
        return self.target

    def take(self, text: str) -> List[CitationStreamEvent]:
        sentences = self.stream.add(text or "")
        self.target.metadata["sentences"].extend(sentences)
        return [CitationStreamEvent("sentence", sentence=s) for s in sentences]

    def finish(self) -> CitationStreamEvent:
        parts = _cited_parts(self.stream.finish(), self.nodes, self.metadata)
        parts["metadata"]["cited_text"] = parts["cited_answer"].text if parts["cited_answer"] else self.stream.text
        for name, value in parts.items():
            setattr(self.target, name, value)
        self.target.response_txt = self.stream.text  # also when the reader drained response_gen itself
        return CitationStreamEvent(
            "citations", metadata=parts["metadata"], source_nodes=parts["source_nodes"], cited_nodes=parts["cited_nodes"]
        )

    def events(self, texts: Iterator[str]) -> Iterator[CitationStreamEvent]:
        for text in texts:
            yield CitationStreamEvent("text", text=text)
            yield from self.take(text)
        yield self.finish()

    async def aevents(self, texts: AsyncIterator[str]) -> AsyncIterator[CitationStreamEvent]:
        async for text in texts:
            yield CitationStreamEvent("text", text=text)
            for event in await asyncio.to_thread(self.take, text):
                yield event
        yield await asyncio.to_thread(self.finish)


def _texts(events: Iterator[CitationStreamEvent]) -> Iterator[str]:
    """The text of a cited stream (reading it runs the citations along)."""
    for event in events:
        if event.kind == "text":
            yield event.text


async def _atexts(events: AsyncIterator[CitationStreamEvent]) -> AsyncIterator[str]:
    async for event in events:
        if event.kind == "text":
            yield event.text


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

    or, as events (text, then each completed sentence's citations, the whole last):

    >>> for event in engine.query("...").event_gen:
    ...     if event.kind == "text": print(event.text, end="")
    ...     elif event.kind == "sentence": print(event.sentence["markers"], end="")
    ...     else: event.metadata["citations"], event.cited_nodes

    The engine keeps no per-call state: concurrent queries each get their own response.
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
        policy: Optional[CitationPolicy] = None,
        method: Optional[str] = None,
        level: str = "sentence",
    ) -> None:
        self._engine = query_engine
        self._source = _source(model, tokenizer, attributor, llm)
        self._dtype = dtype
        self._markers = markers
        self._streaming = streaming
        self._cite_options = cite_settings(policy, method, level)
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
        events = citer.events(_tokens(response))
        return citer.start(CitedStreamingResponse, _texts(events), events)

    async def _aquery(self, query_bundle: QueryBundle) -> Any:
        response = await self._engine.aquery(query_bundle)
        if not self._streaming:
            if isinstance(response, AsyncStreamingResponse):
                response = await response.get_response()
            return await asyncio.to_thread(self._cite, response, query_bundle)
        citer = _StreamCiter(self, response, _query_str(query_bundle, "AttribotCitationQueryEngine"))
        events = citer.aevents(_atokens(response))
        return citer.start(CitedAsyncStreamingResponse, _atexts(events), events)
