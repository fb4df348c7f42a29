"""Context attribution for LangChain: which documents did the answer really use?

* ``AttribotCompressor`` / ``AttribotRetriever``: draft, attribute, prune documents.
* ``AttribotCitations``: a chain step adding citations to ``{question, context, answer}``.
"""

from langchain_attribot._common import documents_to_passages, resolve_attributor
from langchain_attribot.citations import AttribotCitations, message_text
from langchain_attribot.compressors import AttribotCompressor, AttribotRetriever

__all__ = [
    "AttribotCitations",
    "AttribotCompressor",
    "AttribotRetriever",
    "documents_to_passages",
    "message_text",
    "resolve_attributor",
]
