"""Context attribution for LlamaIndex: which retrieved nodes did the answer really use?

``AttribotPostprocessor`` scores (and optionally prunes) nodes before synthesis;
``AttribotCitationQueryEngine`` / ``cite_response`` cite a final ``Response`` (the engine
also streams: ``streaming=True``); ``attribot_llm`` gives the attributing model as the
engine's ``HuggingFaceLLM`` (one copy of the weights).
"""

from llama_index.postprocessor.attribot._common import nodes_to_passages, resolve_attributor
from llama_index.postprocessor.attribot.postprocessor import AttribotPostprocessor
from llama_index.postprocessor.attribot.query_engine import (
    AttribotCitationQueryEngine,
    CitationStreamEvent,
    CitedAsyncStreamingResponse,
    CitedResponse,
    CitedStreamingResponse,
    cite_response,
)
from llama_index.postprocessor.attribot.llm import attribot_llm

__all__ = [
    "AttribotCitationQueryEngine",
    "AttribotPostprocessor",
    "CitationStreamEvent",
    "CitedAsyncStreamingResponse",
    "CitedResponse",
    "CitedStreamingResponse",
    "attribot_llm",
    "cite_response",
    "nodes_to_passages",
    "resolve_attributor",
]
