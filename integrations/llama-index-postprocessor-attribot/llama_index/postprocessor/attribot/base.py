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
:mod:`attribot_rag.integration`'s; these modules convert nodes and responses.
"""

# The adapters live in postprocessor.py and query_engine.py (shared helpers in
# _common.py); this module re-exports them for code that imports from here.
from llama_index.postprocessor.attribot._common import (  # noqa: F401
    CITATIONS_KEY,
    DRAFT_KEY,
    RANK_KEY,
    SCORE_KEY,
    _copy_with,
    _label,
    _llm_objects,
    _source,
    nodes_to_passages,
    nodes_to_records,
    resolve_attributor,
)
from llama_index.postprocessor.attribot.postprocessor import AttribotPostprocessor  # noqa: F401
from llama_index.postprocessor.attribot.query_engine import (  # noqa: F401
    AttribotCitationQueryEngine,
    CitationStreamEvent,
    CitedAsyncStreamingResponse,
    CitedResponse,
    CitedStreamingResponse,
    _atokens,
    _cited_parts,
    _drain,
    _query_str,
    _StreamCiter,
    _tokens,
    cite_response,
)
