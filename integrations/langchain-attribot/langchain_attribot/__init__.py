"""Context attribution for LangChain: which documents did the answer really use?

* ``AttribotCompressor`` / ``AttribotRetriever``: draft, attribute, prune documents.
* ``AttribotCitations``: a chain step adding citations to ``{question, context, answer}``.
* ``attribot_chat_model`` / ``attribot_pipeline``: the attributing model as the chain's
  ``ChatHuggingFace`` / ``HuggingFacePipeline`` (one copy of the weights).
"""

from langchain_attribot._common import documents_to_passages, resolve_attributor
from langchain_attribot.chat_models import attribot_chat_model, attribot_pipeline
from langchain_attribot.citations import AttribotCitations, message_text
from langchain_attribot.compressors import AttribotCompressor, AttribotRetriever

__all__ = [
    "AttribotCitations",
    "AttribotCompressor",
    "AttribotRetriever",
    "attribot_chat_model",
    "attribot_pipeline",
    "documents_to_passages",
    "message_text",
    "resolve_attributor",
]
