"""attribot-rag: which retrieved passages did a RAG answer really use?

Context attribution for any causal language model answer: exact leave-one-out made fast
with prefix KV-cache reuse and batching (AttriBoT), more methods behind one interface.
"""

from .attributor import DEFAULT_MAX_NEW_TOKENS, Attributor, attribute
from .citations import Citation, CitedAnswer, CitedSentence, Reference, cite
from .errors import (
    AttribotError,
    ContextTooLongError,
    InputError,
    MethodNotAvailableError,
    ModelNotFoundError,
    WeightsIntegrityError,
)
from .layout import PromptLayout
from .methods import AttributionMethod, AttributionTask, Effects, MethodOutput, available_methods, register_method
from .precision import resolve_dtype
from .models import ALIASES, DEFAULT_MODEL, LoadedModel, get_model, load_model, model_lock
from .pruning import PassageScore, PruneResult, filter_passages, prune
from .result import Attribution, ScoredSource
from .scoring import Response
from .sources import Passage, Source, make_sources, split_sentences
from .streaming import StreamEvent, TextCitationStream, stream_cite, stream_cite_text

__version__ = "0.1.0"

__all__ = [
    "ALIASES",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MODEL",
    "AttribotError",
    "Attribution",
    "AttributionMethod",
    "AttributionTask",
    "Attributor",
    "Citation",
    "CitedAnswer",
    "CitedSentence",
    "ContextTooLongError",
    "Effects",
    "InputError",
    "LoadedModel",
    "MethodNotAvailableError",
    "MethodOutput",
    "ModelNotFoundError",
    "Passage",
    "PassageScore",
    "PromptLayout",
    "PruneResult",
    "Reference",
    "Response",
    "ScoredSource",
    "Source",
    "StreamEvent",
    "TextCitationStream",
    "WeightsIntegrityError",
    "attribute",
    "available_methods",
    "cite",
    "get_model",
    "load_model",
    "model_lock",
    "make_sources",
    "filter_passages",
    "prune",
    "stream_cite",
    "stream_cite_text",
    "register_method",
    "resolve_dtype",
    "split_sentences",
]
