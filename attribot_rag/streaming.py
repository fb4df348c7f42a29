"""Citations streamed with the answer: :func:`stream_cite` yields the answer as the model
writes it and, as each sentence completes, that sentence's citations.

Generation runs in a worker thread whose streamer hands over each new token and waits;
while it waits, the calling thread attributes the sentence that just completed, so the
model is never used by two threads at once. AT2 and average attention read what the
generation captured so far (no forward pass); every other method attributes the tokens
generated so far. A sentence's scores depend only on the prompt and the tokens up to its
end, so they equal its scores in the finished answer. The last event carries the whole
:class:`~attribot_rag.citations.CitedAnswer`, the one :func:`~attribot_rag.citations.cite`
gives for the finished answer. A streamed sentence's markers are provisional in one
respect: the answer-relative floor is known only for the sentences so far.

>>> for event in stream_cite(attributor, question, passages, method="at2"):
...     print(event.text, end="")            # the answer, token by token
...     if event.sentence:                     # a sentence just completed
...         print(event.sentence.numbers)
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .at2.capture import CaptureObserver
from .citations import (
    DEFAULT_ANSWER_RELATIVE_THRESHOLD,
    DEFAULT_MAX_PER_SENTENCE,
    DEFAULT_RELATIVE_THRESHOLD,
    CitedAnswer,
    CitedSentence,
    _check_settings,
    _cited_sentence,
    answer_floor,
    cite_sentences,
    select_citations,
)
from .layout import check_fits
from .result import Attribution
from .scoring import Response, Scorer, response_from_ids
from .sources import Passage, coerce_passages, split_sentences

if TYPE_CHECKING:
    from .attributor import Attributor

# A sentence counts as complete once the next one has this many non-space characters
# (so that "$2." in "$2.5 million" is not taken for a finished sentence).
MIN_NEXT_SENTENCE_CHARS = 3


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed answer: new text, a completed sentence, or (last) the whole."""

    text: str = ""  # answer text added since the previous event
    sentence: CitedSentence | None = None  # a sentence that just completed, with its citations
    answer: CitedAnswer | None = None  # the last event only


class _StopGeneration(Exception):
    """Raised inside the worker thread when the reader stops early."""


class _HandOver:
    """A transformers streamer that passes each new token to the reader and waits for it."""

    def __init__(self) -> None:
        self.tokens: "queue.Queue[int | None]" = queue.Queue()
        self.resume = threading.Event()
        self.cancelled = False
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self.resume.clear()
        self.tokens.put(int(value.reshape(-1)[0]))
        self.resume.wait()
        if self.cancelled:
            raise _StopGeneration()

    def end(self) -> None:
        self.tokens.put(None)


def stream_cite(
    attributor: "Attributor",
    question: str,
    passages: Iterable[Any],
    *,
    method: str | None = "at2",
    level: str = "sentence",
    max_new_tokens: int | None = None,
    threshold: float | None = None,
    relative_threshold: float | None = DEFAULT_RELATIVE_THRESHOLD,
    answer_relative_threshold: float | None = DEFAULT_ANSWER_RELATIVE_THRESHOLD,
    max_per_sentence: int | None = DEFAULT_MAX_PER_SENTENCE,
    **method_options: Any,
) -> Iterator[StreamEvent]:
    """Generate the answer and yield it as it is written, with each sentence's citations
    as it completes; the last event's ``answer`` is the whole cited answer."""
    settings = _check_settings(threshold, relative_threshold, answer_relative_threshold, max_per_sentence)
    ps = coerce_passages(passages)
    method = method or attributor.method
    prompt = attributor.layout.render(question, ps)
    new = max_new_tokens or attributor.max_new_tokens
    check_fits(len(prompt), new, attributor.lm.context_window, attributor.lm.name)
    run = _SentenceAttributor(attributor, question, ps, prompt.input_ids, method, level, method_options)
    hand, observer, outcome = _HandOver(), CaptureObserver(), {}

    def generate() -> None:
        try:
            outcome["response"] = Scorer(attributor.lm).generate(
                prompt.input_ids, max_new_tokens=new, observers=[observer], streamer=hand
            )
        except BaseException as exc:  # handed to the reader
            outcome["error"] = exc
        finally:
            hand.end()

    worker = threading.Thread(target=generate, name="attribot-stream", daemon=True)
    with attributor.lock:
        worker.start()
        try:
            yield from _read(hand, observer, run, settings)
        finally:
            hand.cancelled = True
            hand.resume.set()
            worker.join()
        if "error" in outcome and not isinstance(outcome["error"], _StopGeneration):
            raise outcome["error"]
        yield StreamEvent(answer=run.finish(outcome["response"], settings))


def _read(hand: _HandOver, observer: CaptureObserver, run: "_SentenceAttributor", settings: dict) -> Iterator[StreamEvent]:
    """Token by token: the new text, and each sentence it completed right after that
    sentence's last character (so markers can follow it); the worker waits meanwhile."""
    ids: list[int] = []
    shown = 0  # characters of the answer handed out so far
    while (token := hand.tokens.get()) is not None:
        ids.append(token)
        text = run.tokenizer.decode(ids, skip_special_tokens=True)
        for span in run.completed(text):
            if span[1] > shown:
                yield StreamEvent(text=text[shown : span[1]])
                shown = span[1]
            yield StreamEvent(sentence=run.sentence(span, ids, observer, settings))
        safe = _safe_end(text)
        if safe > shown:
            yield StreamEvent(text=text[shown:safe])
            shown = safe
        hand.resume.set()
    text = run.tokenizer.decode(ids, skip_special_tokens=True)
    if len(text) > shown:  # what was held back at the end
        yield StreamEvent(text=text[shown:])


def _safe_end(text: str) -> int:
    """How much of the text can be handed out: not a half-decoded character, and not the
    first characters of what may be a new sentence (its predecessor's markers go first)."""
    end = len(text.rstrip("\ufffd"))
    spans = split_sentences(text[:end])
    if len(spans) >= 2 and len(text[spans[-1][0] : end].strip()) < MIN_NEXT_SENTENCE_CHARS:
        end = spans[-1][0]
    return end


class _SentenceAttributor:
    """Attributes each sentence of the answer being generated, once, in order."""

    def __init__(self, attributor, question, passages: list[Passage], prompt_ids, method, level, options) -> None:
        self.attributor, self.question, self.passages = attributor, question, passages
        self.prompt_ids, self.method, self.level, self.options = list(prompt_ids), method, level, options
        self.tokenizer = attributor.lm.tokenizer
        self.done: list[tuple[tuple[int, int], Attribution]] = []
        self.numbers: dict[int, int] = {}

    def completed(self, text: str) -> list[tuple[int, int]]:
        """Spans of the sentences of ``text`` that are complete and not yet attributed."""
        spans = split_sentences(text)
        ready = [
            span
            for span, nxt in zip(spans, spans[1:])
            if len(text[nxt[0] : nxt[1]].strip()) >= MIN_NEXT_SENTENCE_CHARS
        ]
        return ready[len(self.done) :]

    def attribute(self, response: Response, span: tuple[int, int]) -> Attribution:
        task = self.attributor.task(self.question, self.passages, response, level=self.level, span=span)
        return self.attributor.run(task, method=self.method, **self.options)

    def sentence(self, span, ids, observer: CaptureObserver, settings: dict) -> CitedSentence:
        response = response_from_ids(self.tokenizer, ids)
        if observer.current is not None:  # what AT2 needs, as captured so far
            response.observations.append(observer.current.snapshot(self.prompt_ids, ids))
        att = self.attribute(response, span)
        self.done.append((span, att))
        floor = answer_floor([a for _, a in self.done], settings["answer_relative_threshold"])
        chosen = select_citations(
            [s.score for s in att.sources],
            threshold=settings["threshold"],
            relative_threshold=settings["relative_threshold"],
            max_per_sentence=settings["max_per_sentence"],
            floor=floor,
        )
        return _cited_sentence(len(self.done) - 1, span, att, att, chosen, self.numbers)

    def finish(self, response: Response, settings: dict) -> CitedAnswer:
        """The whole cited answer: sentences attributed while streaming are reused (their
        scores do not depend on what came after them), the rest attributed now."""
        streamed = dict(self.done)
        sentences: list[tuple[tuple[int, int], Attribution | None]] = []
        whole = None
        for span in split_sentences(response.text):
            att = streamed.get(span) or self._try_attribute(response, span)
            sentences.append((span, att))
            if att is not None and span not in streamed:
                whole = att  # attributed on the finished answer: carries its full text
        whole = whole or self.attribute(response, (0, len(response.text)))
        return cite_sentences(whole, sentences, **settings)

    def _try_attribute(self, response: Response, span: tuple[int, int]) -> Attribution | None:
        from .errors import InputError

        try:
            response.token_slice(span)
        except InputError:  # a sentence with no token of its own
            return None
        return self.attribute(response, span)


__all__ = ["StreamEvent", "stream_cite"]
