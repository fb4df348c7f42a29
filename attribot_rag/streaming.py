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

An answer written by another LLM and arriving as text chunks is cited with
:func:`stream_cite_text` (or, pushing each chunk as it comes, :class:`TextCitationStream`):
no capture exists for it, so every method attributes the text so far (AT2 and attention
by a forward pass), and the last event's ``answer`` is :func:`~attribot_rag.citations.cite`
of the whole text.

>>> for event in stream_cite_text(attributor, question, passages, llm_chunks):
...     print(event.text, end="")
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .at2.capture import CaptureObserver
from .citations import CitationPolicy, CitedAnswer, CitedSentence, ResolvedPolicy, cite, cite_sentences
from .citations import cited_sentence, looks_truncated, split_options
from .errors import InputError
from .layout import check_fits
from .result import Attribution
from .scoring import LogprobObserver, Response, Scorer, response_from_ids, response_from_text
from .sources import Passage, check_question, coerce_passages, split_sentences

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
    policy: CitationPolicy | None = None,
    method: str | None = None,
    level: str = "sentence",
    max_new_tokens: int | None = None,
    **options: Any,
) -> Iterator[StreamEvent]:
    """Generate the answer and yield it as it is written, with each sentence's citations
    as it completes; the last event's ``answer`` is the whole cited answer. ``policy``,
    ``method`` and ``options`` as for :func:`~attribot_rag.citations.cite`."""
    settings, method_options = split_options(policy or attributor.policy, options)
    ps = coerce_passages(passages)
    method = method or attributor.method
    prompt = attributor.layout.render(question, ps)
    new = max_new_tokens or attributor.max_new_tokens
    check_fits(len(prompt), new, attributor.lm.context_window, attributor.lm.name)
    run = _SentenceAttributor(attributor, question, ps, method, level, method_options)
    hand, observer, logprobs, outcome = _HandOver(), CaptureObserver(), LogprobObserver(), {}

    def generate() -> None:
        try:
            outcome["response"] = Scorer(attributor.lm).generate(
                prompt.input_ids, max_new_tokens=new, observers=[observer, logprobs], streamer=hand
            )
        except BaseException as exc:  # handed to the reader
            outcome["error"] = exc
        finally:
            hand.end()

    worker = threading.Thread(target=generate, name="attribot-stream", daemon=True)
    so_far = partial(_generated_so_far, run.tokenizer, observer, logprobs, list(prompt.input_ids))
    with attributor.lock:
        worker.start()
        try:
            yield from _read(hand, _Progress(run, settings), so_far)
        finally:
            hand.cancelled = True
            hand.resume.set()
            worker.join()
        if "error" in outcome and not isinstance(outcome["error"], _StopGeneration):
            raise outcome["error"]
        yield StreamEvent(answer=run.finish(outcome["response"], settings))


def _read(hand: _HandOver, progress: "_Progress", so_far: Callable[[list[int]], Response]) -> Iterator[StreamEvent]:
    """Token by token: the events of the answer decoded so far; the worker waits meanwhile."""
    ids: list[int] = []
    while (token := hand.tokens.get()) is not None:
        ids.append(token)
        text = progress.run.tokenizer.decode(ids, skip_special_tokens=True)
        yield from progress.update(text, partial(so_far, list(ids)))
        hand.resume.set()
    yield from progress.rest()


def _generated_so_far(
    tokenizer: Any, observer: CaptureObserver, logprobs: LogprobObserver, prompt_ids: list[int], ids: list[int]
) -> Response:
    """The tokens generated so far as a response, with what AT2 needs as captured so far
    and their log-probs (for the context-gain gate)."""
    response = response_from_ids(tokenizer, ids)
    response.logprobs = logprobs.values(ids)
    if observer.current is not None:
        response.observations.append(observer.current.snapshot(prompt_ids, ids))
    return response


def _safe_end(text: str) -> int:
    """How much of the text can be handed out: not a half-decoded character, and not the
    first characters of what may be a new sentence (its predecessor's markers go first)."""
    end = len(text.rstrip("\ufffd"))
    spans = split_sentences(text[:end])
    if len(spans) >= 2 and len(text[spans[-1][0] : end].strip()) < MIN_NEXT_SENTENCE_CHARS:
        end = spans[-1][0]
    return end


class _Progress:
    """The answer so far, as its text grows: hands out the new text and, right after each
    sentence's last character (so markers can follow it), that sentence and its citations."""

    def __init__(self, run: "_SentenceAttributor", settings: CitationPolicy) -> None:
        self.run, self.settings = run, settings
        self.text = ""
        self.shown = 0  # characters of the answer handed out so far

    def update(self, text: str, response: Callable[[], Response]) -> Iterator[StreamEvent]:
        """The events of the answer grown to ``text``; ``response()`` is it, to attribute."""
        self.text = text
        for span in self.run.completed(text):
            yield from self._hand_out(span[1])
            yield StreamEvent(sentence=self.run.sentence(span, response(), self.settings))
        yield from self._hand_out(_safe_end(text))

    def rest(self) -> Iterator[StreamEvent]:
        """What was held back at the end."""
        yield from self._hand_out(len(self.text))

    def _hand_out(self, end: int) -> Iterator[StreamEvent]:
        if end > self.shown:
            yield StreamEvent(text=self.text[self.shown : end])
            self.shown = end


class TextCitationStream:
    """Citations for an answer another LLM writes, pushed chunk by chunk as it arrives.

    >>> stream = TextCitationStream(attributor, question, passages, method="loo")
    >>> for chunk in llm_chunks:
    ...     events = stream.add(chunk)       # the text, and each sentence it completed
    >>> final = stream.close()[-1].answer    # cite() of the whole text

    Each completed sentence is attributed on the answer text so far (no capture exists
    for external text: AT2 and attention run a forward pass, LOO-type methods their
    ablations on the prefix). The last event of :meth:`close` carries exactly what
    :func:`~attribot_rag.citations.cite` gives for the whole text: its last sentence
    completes only there, and the one attribution of the whole text that it needs answers
    every sentence, so the final answer is that attribution's (reusing a streamed
    sentence would save no forward pass and could differ at a token boundary).
    """

    def __init__(
        self,
        attributor: "Attributor",
        question: str,
        passages: Iterable[Any],
        *,
        policy: CitationPolicy | None = None,
        method: str | None = None,
        level: str = "sentence",
        **options: Any,
    ) -> None:
        settings, method_options = split_options(policy or attributor.policy, options)
        ps = coerce_passages(passages)
        prompt = attributor.layout.render(check_question(question), ps)
        check_fits(len(prompt), 1, attributor.lm.context_window, attributor.lm.name)
        method = method or attributor.method
        run = _SentenceAttributor(attributor, question, ps, method, level, method_options)
        self._progress = _Progress(run, settings)
        self._cite = dict(policy=settings, method=method, level=level, **method_options)

    @property
    def text(self) -> str:
        """The answer text received so far."""
        return self._progress.text

    def add(self, chunk: str) -> list[StreamEvent]:
        """Take the next chunk: the new text, and each sentence it completed, cited."""
        return list(self._add(chunk))

    def close(self) -> list[StreamEvent]:
        """The end of the answer: the text held back, then (last) the whole cited answer."""
        return list(self._close())

    def _add(self, chunk: str) -> Iterator[StreamEvent]:
        if not isinstance(chunk, str):
            raise InputError(f"an answer chunk is a {type(chunk).__name__}: expected a string")
        text = self._progress.text + chunk
        run = self._progress.run
        yield from self._progress.update(text, lambda: response_from_text(run.tokenizer, text))

    def _close(self) -> Iterator[StreamEvent]:
        text = self._progress.text
        if not text.strip():
            raise InputError("the answer stream is empty: no text arrived to cite")
        yield from self._progress.rest()
        run = self._progress.run
        yield StreamEvent(answer=cite(run.attributor, run.question, run.passages, text, **self._cite))


def stream_cite_text(
    attributor: "Attributor",
    question: str,
    passages: Iterable[Any],
    chunks: Iterable[str],
    *,
    policy: CitationPolicy | None = None,
    method: str | None = None,
    level: str = "sentence",
    **options: Any,
) -> Iterator[StreamEvent]:
    """Cite an answer written by another LLM as its text chunks arrive: yield the text and,
    as each sentence completes, its citations; the last event's ``answer`` equals
    ``cite(attributor, question, passages, answer=<the whole text>, method=method)``.

    ``policy``, ``method`` and ``options`` as for :func:`~attribot_rag.citations.cite`.
    An empty stream is an :class:`~attribot_rag.errors.InputError`."""
    stream = TextCitationStream(attributor, question, passages, policy=policy, method=method, level=level, **options)
    for chunk in chunks:
        yield from stream._add(chunk)
    yield from stream._close()


class _SentenceAttributor:
    """Attributes each sentence of the answer being written, once, in order."""

    def __init__(self, attributor, question, passages: list[Passage], method, level, options) -> None:
        self.attributor, self.question, self.passages = attributor, question, passages
        self.method, self.level, self.options = method, level, options
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

    def sentence(self, span, response: Response, policy: CitationPolicy) -> CitedSentence:
        """The sentence at ``span`` of the answer so far (``response``), cited by the rule
        the whole answer uses, with the answer-relative floor of the sentences so far."""
        att = self.attribute(response, span)
        self.done.append((span, att))
        rp = ResolvedPolicy.of(policy, att.method, att.model, self.attributor.calibration)
        evidence = [rp.evidence(a) for _, a in self.done]
        choice = rp.explain_answer(evidence, [a for _, a in self.done])[-1]
        return cited_sentence(len(self.done) - 1, span, att, att, choice, self.numbers, evidence[-1])

    def finish(self, response: Response, policy: CitationPolicy) -> CitedAnswer:
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
        # cut off by the length limit: flagged and not cited, as cite() does
        return cite_sentences(
            whole, sentences, policy=policy, calibration=self.attributor.calibration,
            truncated=looks_truncated(self.attributor, response),
        )

    def _try_attribute(self, response: Response, span: tuple[int, int]) -> Attribution | None:
        try:
            response.token_slice(span)
        except InputError:  # a sentence with no token of its own
            return None
        return self.attribute(response, span)


__all__ = ["StreamEvent", "TextCitationStream", "stream_cite", "stream_cite_text"]
