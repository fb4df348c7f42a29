"""Citations: which sources each answer sentence cites, under one :class:`CitationPolicy`.

``types`` (what a cited answer is made of), ``policy`` (the rules and the calibration
they read), ``support`` (the keep-only-this-source check), ``markers`` (where ``[n]``
goes) and ``cite`` (putting them together).
"""

from .cite import ResolvedPolicy, cite, cite_sentences, cited_sentence, looks_truncated, split_options
from .companions import CompanionModel
from .markers import insert_markers, is_truncated
from .relevance import question_relevance
from .policy import (
    AUTO,
    DEFAULT_POLICY,
    EVIDENCE_KINDS,
    GENERIC_MIN_CONTEXT_GAIN,
    GENERIC_MIN_SUPPORT,
    Calibration,
    Choice,
    CitationPolicy,
    SentenceEvidence,
    calibration_for,
    calibration_path,
)
from .support import check_sources, support
from .types import TRUNCATION_MARK, Citation, CitedAnswer, CitedSentence, Reference

__all__ = [
    "CompanionModel",
    "AUTO",
    "DEFAULT_POLICY",
    "EVIDENCE_KINDS",
    "GENERIC_MIN_CONTEXT_GAIN",
    "GENERIC_MIN_SUPPORT",
    "TRUNCATION_MARK",
    "Calibration",
    "Citation",
    "CitationPolicy",
    "Choice",
    "CitedAnswer",
    "CitedSentence",
    "Reference",
    "ResolvedPolicy",
    "SentenceEvidence",
    "calibration_for",
    "calibration_path",
    "check_sources",
    "cite",
    "cite_sentences",
    "cited_sentence",
    "insert_markers",
    "is_truncated",
    "looks_truncated",
    "question_relevance",
    "split_options",
    "support",
]
