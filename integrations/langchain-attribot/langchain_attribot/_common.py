"""Shared helpers: the attributing model, and documents as attribot-rag passages."""

from __future__ import annotations

from typing import Any, Sequence

from langchain_core.documents import Document

from attribot_rag import DEFAULT_MODEL, Attributor, Passage
from attribot_rag import get_model




def resolve_attributor(
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    *,
    attributor: Attributor | None = None,
    dtype: Any = None,
    **options: Any,
) -> Attributor:
    """An :class:`Attributor` from a name (loaded in ``dtype``), transformers objects, a
    ``HuggingFacePipeline`` (or a transformers pipeline: its model and tokenizer are reused,
    in their own dtype), or an Attributor."""
    if attributor is not None:
        return attributor
    if isinstance(model, str):
        return Attributor(get_model(model, dtype=dtype), **options)
    pipe = getattr(model, "pipeline", None)  # langchain_huggingface.HuggingFacePipeline
    if pipe is not None and hasattr(pipe, "model"):
        model = pipe
    if tokenizer is None and hasattr(model, "model") and hasattr(model, "tokenizer"):
        model, tokenizer = model.model, model.tokenizer  # a transformers pipeline
    if tokenizer is None:
        raise ValueError("a model object needs its tokenizer: pass tokenizer=...")
    return Attributor(model, tokenizer, dtype=dtype, **options)


def model_label(model: Any, attributor: Attributor | None) -> str:
    if attributor is not None:
        return attributor.model_name
    if isinstance(model, str):
        return model
    name = getattr(getattr(model, "config", None), "name_or_path", None)
    return str(name or getattr(model, "model_id", None) or type(model).__name__)


def documents_to_passages(documents: Sequence[Any]) -> tuple[list[Passage], list[int]]:
    """Passages for the documents (or strings) that have text, and each one's position.

    The passage id is the document's ``id`` when it has one (unique), else its position.
    """
    passages: list[Passage] = []
    positions: list[int] = []
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        if isinstance(doc, Document):
            text, meta, doc_id = doc.page_content, doc.metadata or {}, doc.id
        elif isinstance(doc, str):
            text, meta, doc_id = doc, {}, None
        else:
            raise TypeError(
                f"context item {i} is a {type(doc).__name__}: expected a Document or a string"
            )
        if not text or not text.strip():
            continue
        pid = str(doc_id) if doc_id else str(i)
        if pid in seen:
            pid = f"{pid}#{i}"
        seen.add(pid)
        title = meta.get("title")
        passages.append(
            Passage(id=pid, text=text, title=title if isinstance(title, str) and title.strip() else None)
        )
        positions.append(i)
    return passages, positions


def copy_document(doc: Document, extra: dict[str, Any]) -> Document:
    """A copy of the document with ``extra`` metadata; the original is untouched."""
    import copy

    return Document(
        page_content=doc.page_content,
        metadata={**copy.deepcopy(doc.metadata or {}), **extra},
        id=doc.id,
    )
