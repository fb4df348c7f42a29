"""Context attribution for LlamaIndex: which retrieved nodes did the answer really use?

``AttribotPostprocessor`` scores (and optionally prunes) nodes before synthesis;
``AttribotCitationQueryEngine`` / ``cite_response`` cite a final ``Response``.
"""

from llama_index.postprocessor.attribot.base import (
    AttribotCitationQueryEngine,
    AttribotPostprocessor,
    CitedResponse,
    cite_response,
    nodes_to_passages,
    resolve_attributor,
)

__all__ = [
    "AttribotCitationQueryEngine",
    "AttribotPostprocessor",
    "CitedResponse",
    "cite_response",
    "nodes_to_passages",
    "resolve_attributor",
]
