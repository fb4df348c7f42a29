"""Citations: attribute every answer sentence to the sources and mark the ones it used.

The answer is split into sentences; each sentence is a *target span*
(docs/architecture.md, Data flow > Method)
explained with one attribution method over the sources (sentences of the passages by
default, so that every citation carries a verbatim quote and its character span). A
source is cited for an answer sentence when its score

* is positive (or at least ``threshold`` when an absolute threshold is given),
* is at least ``relative_threshold`` x the best score for that sentence (default 0.5),
* is at least ``answer_relative_threshold`` x the best score for any sentence of the
  answer (default 0.1): a sentence whose best source is far weaker than what supports
  the rest of the answer ("Thank you for asking.") is flagged unsupported, whatever the
  scale of the method's scores,

keeping at most ``max_per_sentence`` of them, best first. References are numbered per
passage, in order of first appearance in the answer; the markers ``[n]`` go after the
sentence they support (before its final punctuation). A sentence that nothing supports
gets no marker and is flagged ``supported=False``.

The method runs once, on the whole answer, and each sentence is a query of its effects
(:meth:`Attribution.per_sentence`): LOO and AT2 keep per-token effects and a sentence is
a slice, ContextCite keeps its ablations and fits one LASSO per sentence, so a
five-sentence answer costs one set of ablations, not five; each sentence's scores equal
what running the method on that sentence alone gives.

>>> cited = cite(attributor, question, passages)        # generate, then cite
>>> print(cited.text)              # "The hotel limit is $260 per night [1]."
>>> cited.references[0].passage_id, cited.citations[0].quote
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..errors import InputError
from ..grounding import span_gain
from ..methods import AttributionMethod
from ..result import Attribution, _jsonable
from ..scoring import Response
from ..sources import Passage, coerce_passages, split_sentences

if TYPE_CHECKING:
    from ..attributor import Attributor

DEFAULT_RELATIVE_THRESHOLD = 0.5
DEFAULT_ANSWER_RELATIVE_THRESHOLD = 0.1
DEFAULT_MAX_PER_SENTENCE = 2
# Sentence-ending punctuation a marker goes before ("... per night [1]."). Not the
# colon: "... is [1]:" reads as if the marker introduced what follows, so after a colon
# the marker goes after it.
_TRAILING_PUNCT = ".!?;\u2026"
_CLOSERS = "\"'\u201d\u2019)]"
_SENTENCE_END = ".!?\u2026"
TRUNCATION_MARK = "\u2026"

# Null calibration (issue 17 item 4). A source is cited only when its effect on the
# sentence exceeds what sources that support nothing reach: the DEFAULT_NULL_QUANTILE
# quantile of the scores of sentences from HotpotQA dev paragraphs outside the gold
# (supporting) ones, for the library's own answers (BENCHMARKS.md, "Citations against a
# null"). LOO is measured in nats per answer-sentence token (a sum over the sentence's
# tokens otherwise grows with its length); AT2's score is already a mean over tokens.
# Without a floor for the method (other methods, AT2 weights trained for other models)
# no null floor applies, and the result's settings say so (``null_floor: None``).
DEFAULT_NULL_QUANTILE = 0.99
PER_TOKEN_METHODS = frozenset({"loo", "loo-naive", "hierarchical", "proxy", "proxy-rescore"})
# Measured: AT2 on smollm2-135m, the 0.99 quantile over dev 0-9 (4.7k null scores; held
# out: dev 10-20). LOO: not calibrated yet (sentence-level LOO over 10 paragraphs took
# about 9 minutes per example on the shared CPU; one example is no null), so no floor.
NULL_FLOORS: dict[tuple[str, str | None], float] = {
    ("at2", "smollm2-135m"): 0.0269,
}
# The context-gain gate (attribot_rag.grounding), for every method: a sentence is cited only
# when the passages together raise its tokens' log-probability by at least this many nats
# per token. Calibrated against a null (BENCHMARKS.md, "Citations: the context-gain gate").
DEFAULT_MIN_CONTEXT_GAIN = 0.05


@dataclass(frozen=True)
class Citation:
    """One answer sentence citing one source."""

    number: int  # the marker [number]; ``references[number - 1]`` is its passage
    sentence_index: int
    sentence: str  # the answer sentence
    sentence_span: tuple[int, int]  # its character span in the answer
    source_id: str  # passage id, or "<passage id>#s<k>" for a sentence source
    passage_id: str
    passage_index: int
    title: str | None
    score: float
    quote: str  # the source text, verbatim
    quote_span: tuple[int, int]  # its character span in the passage text

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "sentence_index": self.sentence_index,
            "sentence": self.sentence,
            "sentence_span": list(self.sentence_span),
            "source_id": self.source_id,
            "passage_id": self.passage_id,
            "passage_index": self.passage_index,
            "title": self.title,
            "score": self.score,
            "quote": self.quote,
            "quote_span": list(self.quote_span),
        }


@dataclass(frozen=True)
class Reference:
    """A cited passage, numbered by its first appearance in the answer."""

    number: int
    passage_id: str
    passage_index: int
    title: str | None
    text: str  # the whole passage text

    @property
    def label(self) -> str:
        return f"{self.title} ({self.passage_id})" if self.title else self.passage_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "passage_id": self.passage_id,
            "passage_index": self.passage_index,
            "title": self.title,
            "text": self.text,
        }


@dataclass(frozen=True)
class CitedSentence:
    """One sentence of the answer, its citations, and every source's score for it."""

    index: int
    text: str
    span: tuple[int, int]  # character span in the answer
    citations: tuple[Citation, ...]
    scores: dict[str, float | None]  # source id -> score for this sentence (None: not scored)
    attribution: Attribution | None = field(default=None, repr=False, compare=False)
    # The answer's last sentence, cut by the length limit mid-sentence: not a claim to
    # cite (its marker would land mid-phrase), shown with TRUNCATION_MARK instead.
    truncated: bool = False
    # Nats per token the passages together add to the sentence (attribot_rag.grounding);
    # None when not measured. Below the gate the sentence cites nothing.
    context_gain: float | None = None

    @property
    def supported(self) -> bool:
        return bool(self.citations)

    @property
    def numbers(self) -> list[int]:
        """The markers after this sentence, ascending."""
        return sorted({c.number for c in self.citations})

    @property
    def top_score(self) -> float | None:
        vals = [v for v in self.scores.values() if v is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "span": list(self.span),
            "supported": self.supported,
            "truncated": self.truncated,
            "context_gain": self.context_gain,
            "markers": self.numbers,
            "top_score": self.top_score,
            "citations": [c.to_dict() for c in self.citations],
            "scores": dict(self.scores),
        }


@dataclass
class CitedAnswer:
    """An answer with inline citation markers, its references and the structured citations."""

    question: str
    answer: str  # the answer as given / generated, without markers
    text: str  # the answer with [n] markers
    sentences: list[CitedSentence]
    references: list[Reference]
    passages: list[Passage]
    method: str
    model: str
    level: str
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    forward_tokens: int = 0
    forward_passes: int = 0

    @property
    def citations(self) -> list[Citation]:
        """Every citation, in answer order (then best score first)."""
        return [c for s in self.sentences for c in s.citations]

    @property
    def unsupported(self) -> list[CitedSentence]:
        """Complete sentences nothing supports (a truncated last sentence is not one)."""
        return [s for s in self.sentences if not s.supported and not s.truncated]

    @property
    def truncated(self) -> bool:
        """Whether the answer stops mid-sentence (the length limit cut it)."""
        return any(s.truncated for s in self.sentences)

    @property
    def cited_passage_ids(self) -> list[str]:
        return [r.passage_id for r in self.references]

    def reference(self, number: int) -> Reference:
        return self.references[number - 1]

    def source_scores(self) -> dict[str, float | None]:
        """Each source's score for the whole answer: the sum over the answer sentences.

        (For LOO this is the LOO score of the sentence tokens of the answer.)
        """
        out: dict[str, float | None] = {}
        for s in self.sentences:
            for sid, v in s.scores.items():
                if v is None:
                    out.setdefault(sid, None)
                else:
                    prev = out.get(sid)
                    out[sid] = v if prev is None else prev + v
        return out

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "question": self.question,
                "answer": self.answer,
                "text": self.text,
                "method": self.method,
                "model": self.model,
                "level": self.level,
                "settings": dict(self.settings),
                "references": [r.to_dict() for r in self.references],
                "citations": [c.to_dict() for c in self.citations],
                "sentences": [s.to_dict() for s in self.sentences],
                "unsupported": [s.index for s in self.unsupported],
                "truncated": self.truncated,
                "timings": dict(self.timings),
                "forward_tokens": self.forward_tokens,
                "forward_passes": self.forward_passes,
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def format(self, width: int = 100, quotes: bool = True) -> str:
        """Plain text for a terminal: the cited answer, then the numbered references."""
        lines = [_wrap(self.text.strip(), width)]
        if self.references:
            lines.append("")
        for ref in self.references:
            lines.append(f"[{ref.number}] {ref.label}")
            if quotes:
                seen: set[str] = set()
                for c in self.citations:
                    if c.number != ref.number or c.source_id in seen:
                        continue
                    seen.add(c.source_id)
                    quote = _clip(c.quote, width - 20)
                    lines.append(f"    \"{quote}\" (score {c.score:.2f})")
        for s in self.unsupported:
            lines.append(f"(unsupported: \"{_clip(s.text, width - 20)}\")")
        if self.truncated:
            lines.append("(the answer was cut at the length limit: its last sentence is not cited)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    width = max(width, 20)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(p, width) if p.strip() else p for p in text.split("\n"))


# --------------------------------------------------------------------------- selection


def select_citations(
    scores: Sequence[float | None],
    *,
    threshold: float | None = None,
    relative_threshold: float | None = DEFAULT_RELATIVE_THRESHOLD,
    max_per_sentence: int | None = DEFAULT_MAX_PER_SENTENCE,
    floor: float | None = None,
) -> list[int]:
    """Indices of the sources to cite for one answer sentence, best first.

    A source qualifies when its score is > 0 (or >= ``threshold`` when given),
    >= ``relative_threshold`` x the best score, and >= ``floor`` when given; at most
    ``max_per_sentence`` are kept. ``None`` and ``nan`` scores never qualify.
    """
    valid = [
        (float(v), i) for i, v in enumerate(scores) if v is not None and not math.isnan(float(v))
    ]
    if not valid:
        return []
    top = max(v for v, _ in valid)
    chosen = []
    for v, i in sorted(valid, key=lambda t: (-t[0], t[1])):
        if threshold is None and v <= 0:
            continue
        if threshold is not None and v < threshold:
            continue
        if relative_threshold is not None and v < relative_threshold * top:
            continue
        if floor is not None and v < floor:
            continue
        chosen.append(i)
    if max_per_sentence is not None:
        chosen = chosen[:max_per_sentence]
    return chosen


def null_floor(method: str, model: str | None) -> float | None:
    """The calibrated null floor for a method's scores on a model (``NULL_FLOORS``), or
    None when none was measured for it. LOO-family floors hold for any model (nats per
    token); AT2's only for the model its weights were calibrated on."""
    from ..at2.weights import same_model_name

    family = "loo" if method in PER_TOKEN_METHODS else method
    for (m, calibrated_on), floor in NULL_FLOORS.items():
        if m == family and (calibrated_on is None or (model is not None and same_model_name(model, calibrated_on))):
            return floor
    return None


def resolve_null_floor(value: float | str | None, method: str, model: str | None) -> float | None:
    """``null_floor`` as given: "auto" is :func:`null_floor` for the method and model."""
    return null_floor(method, model) if value == "auto" else value  # type: ignore[return-value]


def choose_citations(
    sentences: Sequence[tuple[Sequence[float | None] | None, int]],
    *,
    threshold: float | None = None,
    relative_threshold: float | None = DEFAULT_RELATIVE_THRESHOLD,
    answer_relative_threshold: float | None = DEFAULT_ANSWER_RELATIVE_THRESHOLD,
    max_per_sentence: int | None = DEFAULT_MAX_PER_SENTENCE,
    null_floor: float | None = None,
    per_token: bool = False,
    gains: Sequence[float | None] | None = None,
    min_context_gain: float | None = None,
) -> list[list[int]]:
    """Per answer sentence (its sources' scores, None when not attributed, and its token
    count), the indices of the sources to cite, best first: :func:`select_citations`
    with the answer-relative floor, then only sources whose effect reaches ``null_floor``
    (the score per sentence token when ``per_token``), at most ``max_per_sentence``.
    A sentence whose context gain (``gains``, one per sentence) is below
    ``min_context_gain`` cites nothing."""
    tops = [v for scores, _ in sentences for v in (scores or []) if v is not None and not math.isnan(float(v))]
    top = max(tops, default=None)
    floor = None
    if answer_relative_threshold is not None and top is not None and top > 0:
        floor = answer_relative_threshold * top
    out: list[list[int]] = []
    for scores, tokens in sentences:
        if scores is None:
            out.append([])
            continue
        chosen = select_citations(
            scores, threshold=threshold, relative_threshold=relative_threshold, max_per_sentence=None, floor=floor
        )
        out.append(_above_null(chosen, scores, tokens, null_floor, per_token)[:max_per_sentence])
    if gains is not None and min_context_gain is not None:
        out = [[] if g is not None and g < min_context_gain else c for c, g in zip(out, gains)]
    return out


def resolve_min_context_gain(value: float | str | None) -> float | None:
    """``min_context_gain`` as given: "auto" is :data:`DEFAULT_MIN_CONTEXT_GAIN`."""
    return DEFAULT_MIN_CONTEXT_GAIN if value == "auto" else value  # type: ignore[return-value]


def sentence_gain(
    att: "Attribution | None", min_context_gain: float | None, whole: "Attribution | None" = None
) -> float | None:
    """The context gain of the sentence an attribution explains (None: no gate asked, or
    no attribution). Read from ``whole``'s task when it explains the same answer, so that
    every sentence shares one computation."""
    if att is None or att.task is None or min_context_gain is None:
        return None
    same = whole is not None and whole.task is not None and whole.task.response is att.task.response
    return span_gain(whole.task if same else att.task, att.task.target)  # type: ignore[union-attr]


def _above_null(
    chosen: list[int], scores: Sequence[float | None], tokens: int, null_floor: float | None, per_token: bool
) -> list[int]:
    if null_floor is None:
        return chosen
    scale = max(int(tokens), 1) if per_token else 1
    return [i for i in chosen if float(scores[i]) / scale >= null_floor]  # type: ignore[arg-type]


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


def cite(
    attributor: "Attributor",
    question: str,
    passages: Iterable[Any],
    answer: str | Response | None = None,
    *,
    method: str | AttributionMethod | None = "loo",
    level: str = "sentence",
    threshold: float | None = None,
    relative_threshold: float | None = DEFAULT_RELATIVE_THRESHOLD,
    answer_relative_threshold: float | None = DEFAULT_ANSWER_RELATIVE_THRESHOLD,
    max_per_sentence: int | None = DEFAULT_MAX_PER_SENTENCE,
    max_new_tokens: int | None = None,
    null_floor: float | str | None = "auto",
    min_context_gain: float | str | None = "auto",
    truncated: bool | None = None,
    **method_options: Any,
) -> CitedAnswer:
    """Cite the sources each sentence of the answer depends on.

    ``answer`` None generates it with the attributor's model; a string (from any model)
    is attributed as given. ``level`` is the source granularity: "sentence" (quotes are
    single sentences of a passage) or "passage" (quotes are whole passages).
    ``method`` is any registered attribution method ("loo" by default; None: the
    attributor's own method; "auto": at2 where weights ship for the model, else loo).
    ``null_floor``: the least effect a cited source must have ("auto": the calibrated
    null of the method, see ``NULL_FLOORS``; None: none). ``min_context_gain``: a
    sentence cites nothing unless the passages together raise its log-probability by at
    least this many nats per token ("auto": :data:`DEFAULT_MIN_CONTEXT_GAIN`; None: no
    gate; see :mod:`attribot_rag.grounding`). ``truncated``: whether the
    answer was cut mid-sentence (None: a generated answer that ended without the
    end-of-turn token; a text answer whose last sentence, after others, has no ending
    punctuation).
    """
    settings = _check_settings(
        threshold, relative_threshold, answer_relative_threshold, max_per_sentence, null_floor, min_context_gain
    )
    ps = coerce_passages(passages)
    gen_s = 0.0
    if answer is None:
        t0 = time.perf_counter()
        answer = attributor.generate(question, ps, max_new_tokens=max_new_tokens)
        gen_s = time.perf_counter() - t0
    base = attributor.task(question, ps, answer, level=level)
    if not split_sentences(base.response.text):
        raise InputError("the answer has no sentence to cite")
    # One attribution of the whole answer; each sentence is a query of its effects.
    t0 = time.perf_counter()
    tokens0, passes0 = base.scorer.forward_tokens, base.scorer.forward_passes
    whole = attributor.run(base, method=attributor.method if method is None else method, **method_options)
    if truncated is None:
        truncated = _looks_truncated(attributor, base.response)
    cited = cite_sentences(whole, whole.per_sentence(), truncated=truncated, **settings)
    cited.timings = {"generation_s": gen_s, "attribution_s": time.perf_counter() - t0}
    cited.forward_tokens = base.scorer.forward_tokens - tokens0
    cited.forward_passes = base.scorer.forward_passes - passes0
    return cited


def _looks_truncated(attributor: "Attributor", response: Response) -> bool:
    """A generated answer without its end-of-turn token stopped at the length limit; a
    text answer is taken as cut when its last sentence (after at least one other) has no
    sentence-ending punctuation."""
    spans = split_sentences(response.text)
    if response.generated:
        eos = attributor.lm.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {attributor.lm.tokenizer.eos_token_id}
        return bool(response.token_ids) and response.token_ids[-1] not in eos_ids and is_truncated(response.text, spans[-1])
    return len(spans) > 1 and is_truncated(response.text, spans[-1])


def _check_settings(
    threshold, relative_threshold, answer_relative_threshold, max_per_sentence, null_floor="auto",
    min_context_gain="auto",
) -> dict[str, Any]:
    for name, val in (("null_floor", null_floor), ("min_context_gain", min_context_gain)):
        if val is not None and val != "auto" and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise InputError(f'{name} must be a number, "auto" or None, got {val!r}')
    if max_per_sentence is not None and max_per_sentence < 1:
        raise InputError(f"max_per_sentence must be >= 1 (or None), got {max_per_sentence}")
    for name, val in (
        ("relative_threshold", relative_threshold),
        ("answer_relative_threshold", answer_relative_threshold),
    ):
        if val is not None and not 0 <= val <= 1:
            raise InputError(f"{name} must be in [0, 1] (or None), got {val}")
    return {
        "threshold": threshold,
        "relative_threshold": relative_threshold,
        "answer_relative_threshold": answer_relative_threshold,
        "max_per_sentence": max_per_sentence,
        "null_floor": null_floor,
        "min_context_gain": min_context_gain,
    }


def cite_sentences(
    whole: Attribution,
    sentences: Sequence[tuple[tuple[int, int], Attribution | None]],
    *,
    threshold: float | None = None,
    relative_threshold: float | None = DEFAULT_RELATIVE_THRESHOLD,
    answer_relative_threshold: float | None = DEFAULT_ANSWER_RELATIVE_THRESHOLD,
    max_per_sentence: int | None = DEFAULT_MAX_PER_SENTENCE,
    null_floor: float | str | None = "auto",
    min_context_gain: float | str | None = "auto",
    truncated: bool = False,
) -> CitedAnswer:
    """Select each sentence's citations from its attribution (:func:`choose_citations`),
    number the cited passages by first appearance and place the markers. ``truncated``:
    the last sentence was cut by the length limit (flagged, not cited)."""
    floor_value = resolve_null_floor(null_floor, whole.method, whole.model)
    gate = resolve_min_context_gain(min_context_gain)
    gains = [sentence_gain(att, gate, whole) for _, att in sentences]
    chosen = choose_citations(
        [(None, 0) if att is None else ([s.score for s in att.sources], _tokens(att)) for _, att in sentences],
        threshold=threshold,
        relative_threshold=relative_threshold,
        answer_relative_threshold=answer_relative_threshold,
        max_per_sentence=max_per_sentence,
        null_floor=floor_value,
        per_token=whole.method in PER_TOKEN_METHODS,
        gains=gains,
        min_context_gain=gate,
    )
    numbers: dict[int, int] = {}  # passage index -> reference number
    cited: list[CitedSentence] = []
    for k, (span, att) in enumerate(sentences):
        cut = truncated and k == len(sentences) - 1
        cited.append(_cited_sentence(k, span, whole, att, [] if cut else chosen[k], numbers, cut, gains[k]))
    ps = whole.passages
    references = [
        Reference(num, ps[pi].id, pi, ps[pi].title, ps[pi].text)
        for pi, num in sorted(numbers.items(), key=lambda t: t[1])
    ]
    text = insert_markers(whole.answer, [(s.span, s.numbers) for s in cited])
    return CitedAnswer(
        question=whole.question,
        answer=whole.answer,
        text=text.rstrip() + TRUNCATION_MARK if truncated and cited else text,
        sentences=cited,
        references=references,
        passages=list(ps),
        method=whole.method,
        model=whole.model,
        level=whole.level,
        settings={
            "threshold": threshold,
            "relative_threshold": relative_threshold,
            "answer_relative_threshold": answer_relative_threshold,
            "max_per_sentence": max_per_sentence,
            "null_floor": floor_value,
            "min_context_gain": gate,
        },
    )


def _tokens(att: Attribution) -> int:
    """How many answer tokens the attribution explains (its target span)."""
    a, b = att.task.target if att.task is not None else (0, 1)
    return b - a


def answer_floor(attributions: Sequence[Attribution], answer_relative_threshold: float | None) -> float | None:
    """The answer-relative floor: ``answer_relative_threshold`` x the best score any of the
    attributions gives (None: no floor, or no positive score)."""
    top = max((s.score for a in attributions for s in a.sources if s.score is not None), default=None)
    if answer_relative_threshold is None or top is None or top <= 0:
        return None
    return answer_relative_threshold * top


def _cited_sentence(
    k: int,
    span: tuple[int, int],
    whole: Attribution,
    att: Attribution | None,
    chosen: list[int],
    numbers: dict[int, int],
    truncated: bool = False,
    context_gain: float | None = None,
) -> CitedSentence:
    a, b = span
    text = whole.answer[a:b]
    if att is None:
        return CitedSentence(k, text, span, (), {}, None, truncated)
    cits = []
    for i in chosen:
        src = att.sources[i].source
        num = numbers.setdefault(src.passage_index, len(numbers) + 1)
        cits.append(
            Citation(
                number=num,
                sentence_index=k,
                sentence=text,
                sentence_span=span,
                source_id=src.id,
                passage_id=src.passage_id,
                passage_index=src.passage_index,
                title=whole.passages[src.passage_index].title,
                score=float(att.sources[i].score),  # type: ignore[arg-type]
                quote=src.text,
                quote_span=(src.start, src.end),
            )
        )
    return CitedSentence(
        k, text, span, tuple(cits), {s.id: s.score for s in att.sources}, att, truncated, context_gain
    )


__all__ = [
    "DEFAULT_MIN_CONTEXT_GAIN",
    "DEFAULT_NULL_QUANTILE",
    "NULL_FLOORS",
    "TRUNCATION_MARK",
    "Citation",
    "CitedAnswer",
    "CitedSentence",
    "Reference",
    "cite",
    "choose_citations",
    "cite_sentences",
    "insert_markers",
    "is_truncated",
    "null_floor",
    "select_citations",
]
