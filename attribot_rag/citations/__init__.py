"""Citations: which sources each answer sentence cites, under one :class:`CitationPolicy`."""

from .cite import *  # noqa: F401,F403
from .cite import (  # noqa: F401  (names streaming and the integrations use)
    PER_TOKEN_METHODS,
    _above_null,
    _check_settings,
    _cited_sentence,
    _looks_truncated,
    _tokens,
    answer_floor,
    resolve_min_context_gain,
    resolve_null_floor,
    sentence_gain,
    DEFAULT_ANSWER_RELATIVE_THRESHOLD,
    DEFAULT_MAX_PER_SENTENCE,
    DEFAULT_RELATIVE_THRESHOLD,
)
from .support import check_sources, support
