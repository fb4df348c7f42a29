"""Context attribution for LlamaIndex: which retrieved nodes did the answer really use?

``AttribotPostprocessor`` scores (and optionally prunes) nodes before synthesis;
``AttribotCitationQueryEngine`` / ``cite_response`` cite a final ``Response`` (the engine
also streams: ``streaming=True``).
"""

from llama_index.postprocessor.attribot.base import (
    AttribotCitationQueryEngine,
    AttribotPostprocessor,
    CitedAsyncStreamingResponse,
    CitedResponse,
    CitedStreamingResponse,
    cite_response,
    nodes_to_passages,
    resolve_attributor,
)

__all__ = [
    "AttribotCitationQueryEngine",
    "AttribotPostprocessor",
    "CitedAsyncStreamingResponse",
    "CitedResponse",
    "CitedStreamingResponse",
    "cite_response",
    "nodes_to_passages",
    "resolve_attributor",
]
