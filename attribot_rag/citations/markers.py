"""Where the ``[n]`` markers go: after a sentence's last word, before its final punctuation."""

from __future__ import annotations

from typing import Sequence

# Sentence-ending punctuation a marker goes before ("... per night [1]."). Not the
# colon: "... is [1]:" reads as if the marker introduced what follows, so after a colon
# the marker goes after it.
_TRAILING_PUNCT = ".!?;\u2026"
_CLOSERS = "\"'\u201d\u2019)]"
_SENTENCE_END = ".!?\u2026"


def _marker_cut(answer: str, a: int, b: int) -> int:
    """Where a sentence's markers go: after its last word, before its final run of
    sentence-ending punctuation (and the quotes or brackets closing it), never before a
    colon, never inside a word."""
    cut = b
    while cut > a and answer[cut - 1] in _CLOSERS:
        cut -= 1
    closers = cut
    while cut > a and answer[cut - 1] in _TRAILING_PUNCT:
        cut -= 1
    if cut == closers:  # no final punctuation: the closers stay with the text
        cut = b
    if cut == a:  # the sentence is all punctuation
        cut = b
    while cut < len(answer) and answer[cut - 1].isalnum() and answer[cut].isalnum():
        cut += 1  # a span that ends inside a word: the marker goes after the word
    return cut


def is_truncated(text: str, span: tuple[int, int]) -> bool:
    """Whether the sentence at ``span`` stops without ending punctuation (a sentence the
    length limit cut, when it is an answer's last)."""
    sentence = text[span[0] : span[1]].rstrip().rstrip(_CLOSERS)
    return not sentence or sentence[-1] not in _SENTENCE_END + ":"


def insert_markers(answer: str, marks: Sequence[tuple[tuple[int, int], Sequence[int]]]) -> str:
    """The answer with ``[n]`` markers placed at the end of each sentence span, after its
    last word and before its final punctuation ("... per night [1]."); after a colon
    ("... as follows: [1]"), never inside a word."""
    out = []
    pos = 0
    for (a, b), numbers in sorted(marks, key=lambda m: m[0]):
        if not numbers:
            continue
        cut = _marker_cut(answer, a, b)
        out.append(answer[pos:cut].rstrip() if cut > pos else "")
        out.append(" " + "".join(f"[{n}]" for n in numbers))
        pos = cut
    out.append(answer[pos:])
    return "".join(out)


__all__ = ["insert_markers", "is_truncated"]
