"""LlamaIndex adapters over attribot-rag's public API.

* :class:`AttribotPostprocessor` (a ``BaseNodePostprocessor``): drafts an answer with the
  attributing model, attributes it to the incoming nodes, and returns *copies* of the
  nodes with the attribution score in their metadata (hidden from the LLM and the
  embedder); with ``top_n`` or ``keep_mass`` only the kept nodes, in their original
  order, so the query engine's own synthesizer makes the second pass.
* :func:`cite_response` and :class:`AttribotCitationQueryEngine`: attribute the final
  ``Response`` of any query engine to its ``source_nodes`` and return a
  :class:`CitedResponse` (the answer with ``[n]`` markers, the citations in
  ``metadata["citations"]``, the cited nodes in ``cited_nodes``).

The attributing model is a model name (alias, Hugging Face id or path; loaded once per
process), the model objects of an existing ``HuggingFaceLLM`` (``llm=``), transformers
``model=`` and ``tokenizer=`` objects, or a ready :class:`attribot_rag.Attributor`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

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

from attribot_rag import DEFAULT_MODEL, AttribotError, Attributor, CitedAnswer, Passage, cite
from attribot_rag import get_model
from attribot_rag.pruning import filter_passages

logger = logging.getLogger(__name__)

SCORE_KEY = "attribution_score"
RANK_KEY = "attribution_rank"
CITATIONS_KEY = "citation_numbers"


# --------------------------------------------------------------------------- shared


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
    if attributor is not None:
        return attributor
    if llm is not None:
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
    if isinstance(model, str):
        return Attributor(get_model(model, dtype=dtype), **options)
    return Attributor(model, tokenizer, dtype=dtype, **options)




def _node_title(nws: NodeWithScore) -> Optional[str]:
    title = (nws.node.metadata or {}).get("title")
    return title if isinstance(title, str) and title.strip() else None


def nodes_to_passages(nodes: Sequence[NodeWithScore]) -> Tuple[List[Passage], List[int]]:
    """Passages for the nodes that have text, and the node position of each passage.

    The passage id is the node id (made unique with ``#<position>`` when a node repeats).
    """
    passages: List[Passage] = []
    positions: List[int] = []
    seen: Dict[str, int] = {}
    for i, nws in enumerate(nodes):
        text = nws.node.get_content(metadata_mode=MetadataMode.NONE)
        if not text or not text.strip():
            continue
        pid = nws.node.node_id or str(i)
        if pid in seen:
            pid = f"{pid}#{i}"
        seen[pid] = i
        passages.append(Passage(id=pid, text=text, title=_node_title(nws)))
        positions.append(i)
    return passages, positions


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
    method: str = Field(default="loo", description="Attribution method (attribot_rag.available_methods()).")
    top_n: Optional[int] = Field(
        default=None, description="Keep only the n highest-scoring nodes (None: keep all)."
    )
    keep_mass: Optional[float] = Field(
        default=None,
        description="Keep the fewest best nodes holding this fraction of the positive score (None: off).",
    )
    max_new_tokens: int = Field(default=64, description="Length limit of the draft answer.")
    batch_size: int = Field(default=4, description="Ablations per forward pass.")
    score_key: str = Field(default=SCORE_KEY, description="Metadata key of the attribution score.")
    rank_key: str = Field(default=RANK_KEY, description="Metadata key of the attribution rank.")
    fail_open: bool = Field(
        default=False,
        description="On an attribution error (e.g. the context does not fit the model), log it "
        "and return the nodes unchanged instead of raising.",
    )
    dtype: Optional[str] = Field(default=None, description='Weights dtype of a model loaded by name: "auto" (bfloat16 where the hardware runs it fast, else float32), "float32" or "bfloat16"; None: $ATTRIBOT_RAG_DTYPE or auto.')

    _attributor: Optional[Attributor] = PrivateAttr(default=None)
    _model_objects: Optional[Tuple[Any, Any]] = PrivateAttr(default=None)
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
        name = model if isinstance(model, str) else None
        if attributor is not None:
            name = attributor.model_name
        elif llm is not None:
            name = getattr(llm, "model_name", None) or "huggingface-llm"
        elif not isinstance(model, str):
            name = getattr(getattr(model, "config", None), "name_or_path", None) or type(model).__name__
        super().__init__(model=str(name), **kwargs)
        if self.top_n is not None and self.top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {self.top_n}")
        if self.keep_mass is not None and not 0 < self.keep_mass <= 1:
            raise ValueError(f"keep_mass must be in (0, 1], got {self.keep_mass}")
        if attributor is not None:
            self._attributor = attributor
        elif llm is not None:
            self._attributor = resolve_attributor(
                llm=llm, method=self.method, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                dtype=self.dtype,
            )
        elif not isinstance(model, str):
            if tokenizer is None:
                raise ValueError("a model object needs its tokenizer: pass tokenizer=...")
            self._model_objects = (model, tokenizer)

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
        if self._attributor is None:
            opts = dict(method=self.method, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                        dtype=self.dtype)
            if self._model_objects is not None:
                self._attributor = resolve_attributor(*self._model_objects, **opts)
            else:
                self._attributor = resolve_attributor(self.model, **opts)
        return self._attributor

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
        if query_bundle is None or not query_bundle.query_str.strip():
            raise ValueError("AttribotPostprocessor needs the query: pass query_bundle or query_str")
        passages, positions = nodes_to_passages(nodes)
        if not passages:  # nothing to attribute: pass the (copied) nodes through
            return [_copy_with(n, {}) for n in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            try:
                result, selection = filter_passages(
                    self.attributor,
                    query_bundle.query_str,
                    passages,
                    top_n=self.top_n,
                    keep_mass=self.keep_mass,
                    method=self.method,
                    max_new_tokens=self.max_new_tokens,
                )
                self._last_result = result
            except AttribotError as exc:
                if not self.fail_open:
                    raise
                logger.warning("attribution failed, nodes passed through unchanged: %s", exc)
                return [_copy_with(n, {}) for n in nodes]
            by_position = {positions[ps.index]: (ps, keep) for ps, keep in selection}
            out: List[NodeWithScore] = []
            for i, nws in enumerate(nodes):
                if i not in by_position:  # a node without text: kept, not scored
                    out.append(_copy_with(nws, {}))
                    continue
                ps, keep = by_position[i]
                if keep:
                    out.append(_copy_with(nws, {self.score_key: ps.score, self.rank_key: ps.rank}))
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
    answer sentences nothing supports; ``metadata["answer"]``: the answer without markers.
    ``cited_nodes``: copies of the cited nodes in reference order (``[1]`` first), with
    ``metadata["citation_numbers"]``; ``cited_answer``: the full attribot-rag result.
    """

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
    query_str = query.query_str if isinstance(query, QueryBundle) else query
    if not isinstance(query_str, str) or not query_str.strip():
        raise ValueError("cite_response needs the query string the response answers")
    text = response.response or ""
    metadata = dict(response.metadata or {})
    nodes = list(response.source_nodes or [])
    passages, positions = nodes_to_passages(nodes)
    if not text.strip() or not passages:
        metadata.update(citations=[], references=[], unsupported=[], answer=text)
        return CitedResponse(
            response=response.response,
            source_nodes=[_copy_with(n, {}) for n in nodes],
            metadata=metadata,
        )
    att = resolve_attributor(model, tokenizer, attributor=attributor, llm=llm, dtype=dtype)
    with att.lock:
        cited = cite(att, query_str, passages, text, **cite_options)
    numbers: Dict[int, List[int]] = {}
    for ref in cited.references:
        numbers.setdefault(positions[ref.passage_index], []).append(ref.number)
    copies = [
        _copy_with(n, {CITATIONS_KEY: numbers.get(i, [])}) for i, n in enumerate(nodes)
    ]
    node_of_passage = {p.id: nodes[positions[k]].node.node_id for k, p in enumerate(passages)}
    citations = []
    for c in cited.citations:
        d = c.to_dict()
        d["node_id"] = node_of_passage[c.passage_id]
        citations.append(d)
    references = []
    for r in cited.references:
        d = r.to_dict()
        d["node_id"] = node_of_passage[r.passage_id]
        references.append(d)
    metadata.update(
        citations=citations,
        references=references,
        unsupported=[s.text for s in cited.unsupported],
        answer=text,
    )
    return CitedResponse(
        response=cited.text if markers else text,
        source_nodes=copies,
        metadata=metadata,
        cited_nodes=[copies[positions[r.passage_index]] for r in cited.references],
        cited_answer=cited,
    )


class AttribotCitationQueryEngine(BaseQueryEngine):
    """Wraps any query engine: its answer comes back cited against its source nodes.

    >>> engine = AttribotCitationQueryEngine(index.as_query_engine(), model="smollm2-135m")
    >>> response = engine.query("...")
    >>> str(response), response.metadata["citations"], response.cited_nodes
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
        callback_manager: Optional[CallbackManager] = None,
        dtype: Any = None,
        **cite_options: Any,
    ) -> None:
        self._engine = query_engine
        self._attributor = attributor
        self._model_args = (model, tokenizer, llm)
        self._dtype = dtype
        self._markers = markers
        self._cite_options = cite_options
        super().__init__(callback_manager=callback_manager or getattr(query_engine, "callback_manager", None))

    @property
    def attributor(self) -> Attributor:
        if self._attributor is None:
            model, tokenizer, llm = self._model_args
            self._attributor = resolve_attributor(model, tokenizer, llm=llm, dtype=self._dtype)
        return self._attributor

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

    def _query(self, query_bundle: QueryBundle) -> CitedResponse:
        return self._cite(self._engine.query(query_bundle), query_bundle)

    async def _aquery(self, query_bundle: QueryBundle) -> CitedResponse:
        response = await self._engine.aquery(query_bundle)
        if isinstance(response, AsyncStreamingResponse):
            response = await response.get_response()
        return await asyncio.to_thread(self._cite, response, query_bundle)
