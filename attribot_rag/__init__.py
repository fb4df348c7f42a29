"""attribot-rag: which retrieved passages did a RAG answer really use?

Context attribution for any causal language model answer (exact leave-one-out made fast
with prefix KV-cache reuse, AT2, ContextCite), turned into citations and context pruning.

>>> from attribot_rag import Attributor
>>> cited = Attributor().cite(question, passages)    # a cited answer, on the default model
>>> print(cited)

The names below are the public surface; extension types live in
:mod:`attribot_rag.methods`, model plumbing in :mod:`attribot_rag.models`, citation
internals in :mod:`attribot_rag.citations` (docs/architecture.md).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .attributor import Attributor, attribute
from .citations import Citation, CitationPolicy, CitedAnswer, cite
from .errors import AttribotError, InputError
from .methods import available_methods
from .pruning import PruneResult, prune
from .result import Attribution
from .sources import Passage
from .streaming import StreamEvent, stream_cite

__version__ = "0.1.0"

__all__ = [
    "AttribotError",
    "Attribution",
    "Attributor",
    "Citation",
    "CitationPolicy",
    "CitedAnswer",
    "InputError",
    "Passage",
    "PruneResult",
    "StreamEvent",
    "attribute",
    "available_methods",
    "cite",
    "prune",
    "stream_cite",
]

# Names that were top-level before the public surface was narrowed: still importable from
# here (code written against them keeps working), documented in their own modules.
_MOVED = {
    "DEFAULT_MAX_NEW_TOKENS": "attributor",
    "Reference": "citations",
    "CitedSentence": "citations",
    "ContextTooLongError": "errors",
    "MethodNotAvailableError": "errors",
    "ModelNotFoundError": "errors",
    "WeightsIntegrityError": "errors",
    "PromptLayout": "layout",
    "AttributionMethod": "methods",
    "AttributionTask": "methods",
    "Effects": "methods",
    "MethodOutput": "methods",
    "register_method": "methods",
    "resolve_dtype": "precision",
    "ALIASES": "models",
    "DEFAULT_MODEL": "models",
    "LoadedModel": "models",
    "get_model": "models",
    "load_model": "models",
    "model_lock": "models",
    "PassageScore": "pruning",
    "filter_passages": "pruning",
    "ScoredSource": "result",
    "Response": "scoring",
    "Source": "sources",
    "make_sources": "sources",
    "split_sentences": "sources",
    "TextCitationStream": "streaming",
    "stream_cite_text": "streaming",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'attribot_rag' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
