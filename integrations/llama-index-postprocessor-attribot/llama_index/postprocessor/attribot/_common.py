"""What both LlamaIndex adapters share: the attributing model as given (a name, a
``HuggingFaceLLM``'s objects, transformers objects or an :class:`Attributor`), nodes as
attribot-rag records, and node copies with extra (hidden) metadata."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from llama_index.core.schema import MetadataMode, NodeWithScore

from attribot_rag import DEFAULT_MODEL, Attributor, Passage
from attribot_rag import integration
from attribot_rag.integration import AttributorSource, Record, model_label, records_to_passages

SCORE_KEY = "attribution_score"
RANK_KEY = "attribution_rank"
DRAFT_KEY = "attribution_draft"
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

