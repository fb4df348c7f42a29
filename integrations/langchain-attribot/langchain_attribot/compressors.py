"""Draft, attribute, prune: a document compressor and a retriever wrapper."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun, Callbacks
from langchain_core.callbacks.manager import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field

from attribot_rag import PruneResult
from attribot_rag.integration import prune_settings_mixin, prune_with, require_query

from ._common import WithAttributor, copy_document, documents_to_records

logger = logging.getLogger(__name__)

PruneSettings = prune_settings_mixin()

# The custom callback event of each compression (``on_custom_event``): the call's
# PruneResult.to_dict() (draft, kept and dropped documents with their scores).
PRUNE_EVENT = "attribot_prune"


class AttribotCompressor(WithAttributor, PruneSettings, BaseDocumentCompressor):
    """Drafts an answer with the attributing model, attributes it to the documents, and
    returns copies of them with ``metadata["attribution_score"]`` / ``["attribution_rank"]``;
    with ``top_n`` or ``keep_mass``, only the kept documents, in their original order
    (never none).

    >>> compressor = AttribotCompressor(model="smollm2-135m", top_n=2)
    >>> docs = compressor.compress_documents(retrieved_docs, "question")

    The model: ``model`` (a name, or a transformers model with ``tokenizer``, or a
    ``HuggingFacePipeline``, whose weights are reused) or ``attributor``.

    One compressor can serve concurrent calls (threads, asyncio tasks): it keeps no
    per-call state. What a call found comes back with it: the scores and the draft answer
    (``metadata["attribution_draft"]``) on the returned documents; the whole
    :class:`attribot_rag.PruneResult` from :meth:`compress_documents_with_result`, from
    :attr:`last_result` in the thread or task that made the call, or, given
    ``callbacks``, as the custom event ``"attribot_prune"`` (its ``to_dict()``) of the
    calling run.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # model, method, fusion, top_n, keep_mass, max_new_tokens, batch_size, score_key,
    # rank_key, draft_key, fail_open, dtype: PruneSettings (attribot_rag.integration)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> Sequence[Document]:
        """``top_n``: keep that many for this call instead of the fields' rule."""
        return self.compress_documents_with_result(documents, query, callbacks, top_n=top_n)[0]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> Sequence[Document]:
        """The async :meth:`compress_documents` (the model runs in a worker thread)."""
        return (await self.acompress_documents_with_result(documents, query, callbacks, top_n=top_n))[0]

    def compress_documents_with_result(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> tuple[list[Document], Optional[PruneResult]]:
        """:meth:`compress_documents`, and this call's :class:`attribot_rag.PruneResult`
        (None when nothing was attributed)."""
        docs, result = self._compress(documents, query, top_n)
        self._last_result.set(result)  # in the caller's context: its own call's
        if result is not None and callbacks:
            CallbackManager.configure(inheritable_callbacks=callbacks).on_custom_event(
                PRUNE_EVENT, result.to_dict(), run_id=_parent_run(callbacks)
            )
        return docs, result

    async def acompress_documents_with_result(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> tuple[list[Document], Optional[PruneResult]]:
        """The async :meth:`compress_documents_with_result`."""
        docs, result = await run_in_executor(None, self._compress, documents, query, top_n)
        self._last_result.set(result)  # here, not in the worker thread's copy of the context
        if result is not None and callbacks:
            await AsyncCallbackManager.configure(inheritable_callbacks=callbacks).on_custom_event(
                PRUNE_EVENT, result.to_dict(), run_id=_parent_run(callbacks)
            )
        return docs, result

    def _compress(
        self, documents: Sequence[Document], query: str, top_n: int | None
    ) -> tuple[list[Document], Optional[PruneResult]]:
        """The returned documents and the call's result; no state is kept on the compressor."""
        documents = list(documents)
        if not documents:
            return [], None
        query = require_query(query, "AttribotCompressor")
        result, extras = prune_with(self, query, documents_to_records(documents), log=logger, top_n=top_n)
        draft = {self.draft_key: result.draft} if result is not None and self.draft_key else {}
        return [copy_document(doc, {**extra, **draft}) for doc, extra in zip(documents, extras) if extra is not None], result


def _parent_run(callbacks: Any) -> Any:
    """The run the compression belongs to (a retriever's run), when the callbacks say."""
    return getattr(callbacks, "parent_run_id", None)


class AttribotRetriever(BaseRetriever):
    """Wraps a retriever: retrieve, then draft, attribute and prune with an
    :class:`AttribotCompressor`.

    >>> retriever = AttribotRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 5}),
    ...                               compressor=AttribotCompressor(top_n=2))

    ``k`` (constructor or ``invoke(query, k=...)``, as for LangChain's own retrievers): how
    many of the retrieved documents to keep, instead of the compressor's ``top_n`` /
    ``keep_mass``. An empty retrieval returns ``[]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_retriever: BaseRetriever
    compressor: AttribotCompressor = Field(default_factory=AttribotCompressor)
    k: Optional[int] = Field(default=None, ge=1, description="documents to keep (None: the compressor's rule)")

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()})
        if not docs:
            return []
        keep = self.k if k is None else k
        return list(self.compressor.compress_documents(docs, query, callbacks=run_manager.get_child(), top_n=keep))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        docs = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()})
        if not docs:
            return []
        keep = self.k if k is None else k
        return list(await self.compressor.acompress_documents(docs, query, callbacks=run_manager.get_child(), top_n=keep))
