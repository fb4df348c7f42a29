"""LangChain's types to and from attribot-rag's integration glue (attribot_rag.integration):
documents as records, the model a LangChain wrapper holds, metadata onto copies."""

from __future__ import annotations

import copy
from typing import Any, Sequence

from langchain_core.documents import Document

from attribot_rag import DEFAULT_MODEL, Attributor, Passage
from attribot_rag import integration
from attribot_rag.integration import AttributorSource, Record, records_to_passages


def _unwrap(model: Any) -> Any:
    """The transformers pipeline of a ``HuggingFacePipeline`` (else the model as given)."""
    pipe = getattr(model, "pipeline", None)  # langchain_huggingface.HuggingFacePipeline
    return pipe if pipe is not None and hasattr(pipe, "model") else model


def resolve_attributor(model: Any = DEFAULT_MODEL, tokenizer: Any = None, **kwargs: Any) -> Attributor:
    """An :class:`Attributor` from a name (loaded in ``dtype=``), transformers objects, a
    ``HuggingFacePipeline`` (or a transformers pipeline: its model and tokenizer are reused,
    in their own dtype), or an Attributor (``attributor=``); other keywords go to
    :func:`attribot_rag.integration.resolve_attributor`."""
    return integration.resolve_attributor(_unwrap(model), tokenizer, **kwargs)


def attributor_source(model: Any, tokenizer: Any, attributor: Attributor | None) -> AttributorSource:
    """The attributing model as given to a component, resolved on first use."""
    return AttributorSource(_unwrap(model), tokenizer, attributor=attributor)


class WithAttributor:
    """A component's constructor: ``model`` (a name, transformers objects with
    ``tokenizer``, a ``HuggingFacePipeline``) or ``attributor``, resolved on first use
    into ``self._source`` (a pydantic private attribute of the component)."""

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        tokenizer: Any = None,
        *,
        attributor: Attributor | None = None,
        **kwargs: Any,
    ) -> None:
        source = attributor_source(model, tokenizer, attributor)
        super().__init__(model=source.label, **kwargs)  # type: ignore[call-arg]
        self._source = source


# Where LangChain retrievers and rerankers leave a relevance score (higher: more
# relevant): rerank compressors write "relevance_score"; some vector stores "score".
SCORE_METADATA_KEYS = ("relevance_score", "score")


def documents_to_records(documents: Sequence[Any]) -> list[Record]:
    """Records for documents (or strings); the record id is the document's ``id``, the
    record score the first of ``SCORE_METADATA_KEYS`` in its metadata."""
    records = []
    for i, doc in enumerate(documents):
        if isinstance(doc, Document):
            meta = doc.metadata or {}
            score = next((meta[k] for k in SCORE_METADATA_KEYS if k in meta), None)
            records.append(Record.of(doc.id or None, doc.page_content, doc.metadata, score))
        elif isinstance(doc, str):
            records.append(Record.of(None, doc))
        else:
            raise TypeError(f"context item {i} is a {type(doc).__name__}: expected a Document or a string")
    return records


def documents_to_passages(documents: Sequence[Any]) -> tuple[list[Passage], list[int]]:
    """Passages for the documents (or strings) that have text, and each one's position.

    The passage id is the document's ``id`` when it has one (unique), else its position.
    """
    return records_to_passages(documents_to_records(documents))


def copy_document(doc: Document, extra: dict[str, Any]) -> Document:
    """A copy of the document with ``extra`` metadata; the original is untouched."""
    return Document(
        page_content=doc.page_content,
        metadata={**copy.deepcopy(doc.metadata or {}), **extra},
        id=doc.id,
    )
