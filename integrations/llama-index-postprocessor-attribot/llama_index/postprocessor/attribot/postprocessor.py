"""The LlamaIndex node postprocessor: draft an answer with the attributing model,
attribute it to the incoming nodes, return *copies* of the nodes with the attribution
score in their metadata (hidden from the LLM and the embedder); with ``top_n`` or
``keep_mass`` only the kept nodes, in their original order, so the query engine's own
synthesizer makes the second pass."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List, Optional, Tuple

from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from attribot_rag import DEFAULT_MODEL, Attributor, PruneResult
from attribot_rag.integration import (
    check_keep,
    prune_settings_mixin,
    prune_with,
    records_to_passages,
    require_query,
)

from llama_index.postprocessor.attribot._common import (
    _copy_with,
    _label,
    _source,
    nodes_to_records,
)

logger = logging.getLogger(__name__)

PruneSettings = prune_settings_mixin()


class AttribotPostprocessor(PruneSettings, BaseNodePostprocessor):
    """Draft an answer, attribute it to the nodes, keep the nodes it used.

    >>> post = AttribotPostprocessor(model="smollm2-135m", top_n=2)
    >>> engine = index.as_query_engine(node_postprocessors=[post])

    Returned nodes are copies: ``metadata["attribution_score"]`` and
    ``metadata["attribution_rank"]`` (excluded from what the LLM and the embedder see);
    the caller's nodes are never modified. Without ``top_n`` and ``keep_mass`` every node
    is returned; with them, the kept ones in their original order, never none.

    One postprocessor can serve concurrent queries (threads, asyncio tasks): it keeps no
    per-call state. What a call found comes back with its nodes: the scores, and the
    draft answer in ``metadata["attribution_draft"]`` (hidden too); the whole
    :class:`attribot_rag.PruneResult` (the dropped nodes' scores included) from
    :meth:`postprocess_nodes_with_result`, or from :attr:`last_result` in the thread or
    task that made the call.
    """

    # model, method, fusion, top_n, keep_mass, max_new_tokens, batch_size, score_key,
    # rank_key, draft_key, fail_open, dtype: PruneSettings (attribot_rag.integration)


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
        # checked first: the errors name the rule ("top_n must be >= 1, got 0")
        check_keep(kwargs.get("top_n"), kwargs.get("keep_mass"), kwargs.get("fusion"))
        super().__init__(model=_label(model, attributor, llm), **kwargs)
        self._source = source

    @classmethod
    def class_name(cls) -> str:
        return "AttribotPostprocessor"

    @classmethod
    def from_huggingface_llm(cls, llm: Any, **kwargs: Any) -> "AttribotPostprocessor":
        """Reuse the weights of a ``HuggingFaceLLM`` (``llm._model`` / ``llm._tokenizer``)."""
        return cls(llm=llm, **kwargs)

    def postprocess_nodes_with_result(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
        query_str: Optional[str] = None,
    ) -> Tuple[List[NodeWithScore], Optional[PruneResult]]:
        """:meth:`postprocess_nodes`, and this call's :class:`attribot_rag.PruneResult`
        (None when nothing was attributed)."""
        out, result = self._prune(nodes, _bundle(query_bundle, query_str))
        self._last_result.set(result)
        return out, result

    async def apostprocess_nodes_with_result(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
        query_str: Optional[str] = None,
    ) -> Tuple[List[NodeWithScore], Optional[PruneResult]]:
        """The async :meth:`postprocess_nodes_with_result` (the model runs in a worker thread)."""
        out, result = await asyncio.to_thread(self._prune, nodes, _bundle(query_bundle, query_str))
        self._last_result.set(result)
        return out, result

    def _postprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        out, result = self._prune(nodes, query_bundle)
        self._last_result.set(result)  # in the caller's context: its own call's
        return out

    def _prune(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle]
    ) -> Tuple[List[NodeWithScore], Optional[PruneResult]]:
        """The returned nodes and the call's result; no state is kept on the postprocessor."""
        if not nodes:
            return [], None
        query = require_query(
            None if query_bundle is None else query_bundle.query_str,
            "AttribotPostprocessor",
            "pass query_bundle or query_str",
        )
        records = nodes_to_records(nodes)
        if not records_to_passages(records)[0]:  # nothing to attribute: pass the (copied) nodes through
            return [_copy_with(n, {}) for n in nodes], None
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
            draft = {self.draft_key: result.draft} if result is not None and self.draft_key else {}
            out = [_copy_with(nws, {**extra, **draft}) for nws, extra in zip(nodes, extras) if extra is not None]
            event.on_end(payload={EventPayload.NODES: out})
        return out, result

    async def _apostprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        # The model runs in a worker thread so the event loop stays free; the result is
        # recorded here, in the caller's context (a worker thread's copy would be lost).
        out, result = await asyncio.to_thread(self._prune, nodes, query_bundle)
        self._last_result.set(result)
        return out


def _bundle(query_bundle: Optional[QueryBundle], query_str: Optional[str]) -> Optional[QueryBundle]:
    if query_str is not None and query_bundle is not None:
        raise ValueError("Cannot specify both query_str and query_bundle")
    return QueryBundle(query_str) if query_str is not None else query_bundle

