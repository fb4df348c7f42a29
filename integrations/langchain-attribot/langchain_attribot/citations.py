"""A chain step that cites the answer of a RAG chain against its context documents."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import run_in_executor
from langchain_core.runnables.utils import AddableDict
from pydantic import ConfigDict, Field, PrivateAttr

from attribot_rag import DEFAULT_MODEL, Attributor, CitedAnswer
from attribot_rag.integration import (
    DEFAULT_METHOD,
    AttributorSource,
    RecordCitations,
    RecordStream,
    cite_records,
    citation_settings_mixin,
    generate_records,
)

from ._common import WithAttributor, documents_to_records

CitationSettings = citation_settings_mixin()


def message_text(answer: Any) -> str:
    """The text of an answer: a string, or a chat message (text content blocks joined)."""
    if answer is None:
        return ""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, BaseMessage):
        content = answer.content
        if isinstance(content, str):
            return content
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    raise TypeError(f"the answer is a {type(answer).__name__}: expected a string or a chat message")


class AttribotCitations(WithAttributor, CitationSettings, RunnableSerializable[Dict[str, Any], Dict[str, Any]]):
    """Adds citations to ``{"question", "context", "answer"}`` (LangChain's RAG shape).

    >>> chain = (
    ...     RunnablePassthrough.assign(context=itemgetter("question") | retriever)
    ...     .assign(answer=prompt | chat_model | StrOutputParser())
    ...     | AttribotCitations(model="smollm2-135m")
    ... )

    The output is the input plus

    * ``"citations"``: one dict per citation: ``sentence`` (the answer sentence) and its
      ``sentence_span``, ``number`` (the ``[n]`` marker), ``source_id`` (the document id,
      or its position in the context), ``passage_index``, ``score``, ``quote`` (verbatim
      from the document) and ``quote_span`` (its character span in ``page_content``);
    * ``"cited_answer"``: the answer text with ``[n]`` markers;
    * ``"unsupported"``: the answer sentences that no document supports;
    * ``"sentences"``: every answer sentence with its markers, citations and scores.

    The answer may come from any chat model: the local attributing model scores it as
    given (a proxy). ``context`` is a list of Documents (or strings). With no context or an
    empty answer, the citations are empty and the answer is passed through. With
    ``generate=True`` and no answer in the input, the attributing model writes it.

    ``stream`` / ``astream`` (and so a streamed chain) pass the input chunks through as
    they arrive (the upstream model's answer chunks, str or ``AIMessageChunk``), add
    ``{"sentences": [sentence]}`` as each answer sentence completes (cited on the answer
    so far), and end with a chunk of ``citations``, ``cited_answer``, ``unsupported`` and
    the sentences not streamed yet: the chunks add up to what ``invoke`` returns (the
    streamed sentences as they were when they completed).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = Field(default=DEFAULT_MODEL, description="attribot-rag alias, Hugging Face id or path")
    method: str = Field(
        default=DEFAULT_METHOD, description='attribution method; "auto": at2 where weights ship for the model, else loo'
    )
    level: str = Field(default="sentence", description="quote granularity: sentence or passage")
    generate: bool = Field(default=False, description="no answer in the input: the attributing model writes it")
    max_new_tokens: Optional[int] = Field(default=None, description="length limit of a generated answer")
    question_key: str = "question"
    context_key: str = "context"
    answer_key: str = "answer"
    output_key: str = "citations"
    cited_answer_key: str = "cited_answer"
    unsupported_key: str = "unsupported"
    sentences_key: str = "sentences"
    dtype: Optional[str] = Field(default=None, description='Weights dtype of a model loaded by name: "auto" (bfloat16 where the hardware runs it fast, else float32), "float32" or "bfloat16"; None: $ATTRIBOT_RAG_DTYPE or auto.')

    _source: AttributorSource = PrivateAttr()

    @property
    def attributor(self) -> Attributor:
        return self._source.get(dtype=self.dtype)

    def _options(self) -> Dict[str, Any]:
        return dict(method=self.method, level=self.level, policy=self.policy)

    def _records(self, context: Any) -> list:
        if isinstance(context, (str, Document)):
            context = [context]
        return documents_to_records(list(context or []))

    def cite(self, question: str, context: Any, answer: Any) -> Optional[CitedAnswer]:
        """The attribot-rag :class:`CitedAnswer` (None when there is nothing to cite)."""
        return self._cite(question, context, answer).cited

    def _cite(self, question: str, context: Any, answer: Any) -> RecordCitations:
        text = None if answer is None and self.generate else message_text(answer)  # None: generate
        extra = {"max_new_tokens": self.max_new_tokens} if text is None else {}
        return cite_records(lambda: self.attributor, question, self._records(context), text, **self._options(), **extra)

    def _question(self, inputs: Any) -> str:
        """The question of a complete input (the step's bad-input errors)."""
        if not isinstance(inputs, dict):
            raise TypeError(
                f"AttribotCitations takes a dict with {self.question_key!r}, {self.context_key!r} "
                f"and {self.answer_key!r}, got a {type(inputs).__name__}"
            )
        needed = [self.question_key] + ([] if self.generate else [self.answer_key])
        missing = [k for k in needed if k not in inputs]
        if missing:
            raise KeyError(f"AttribotCitations input lacks {missing} (keys: {sorted(inputs)})")
        question = inputs[self.question_key]
        if not isinstance(question, str):
            raise TypeError(f"{self.question_key!r} must be a string, got {type(question).__name__}")
        return question

    def _outputs(self, result: RecordCitations, skip: int = 0) -> Dict[str, Any]:
        """What the step adds to its input (``skip``: sentences already streamed)."""
        return {
            self.output_key: result.citations(),
            self.cited_answer_key: result.text,
            self.unsupported_key: result.unsupported,
            self.sentences_key: result.sentences()[skip:],
        }

    def _run(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        question = self._question(inputs)
        result = self._cite(question, inputs.get(self.context_key), inputs.get(self.answer_key))
        out = {**inputs, **self._outputs(result)}
        if self._generates(inputs):
            out[self.answer_key] = result.answer
        return out

    def _generates(self, inputs: Dict[str, Any]) -> bool:
        """Whether the attributing model writes the answer (generate=True, none given)."""
        return self.generate and inputs.get(self.answer_key) is None

    def invoke(
        self, input: Dict[str, Any], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> Dict[str, Any]:
        return self._call_with_config(self._run, input, config, run_type="chain")

    async def ainvoke(
        self, input: Dict[str, Any], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> Dict[str, Any]:
        return await run_in_executor(config, self.invoke, input, config)

    # ------------------------------------------------------------------ streaming

    def stream(
        self, input: Dict[str, Any], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> Iterator[Dict[str, Any]]:
        return self.transform(iter([input]), config, **kwargs)

    def transform(
        self, input: Iterator[Dict[str, Any]], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> Iterator[Dict[str, Any]]:
        yield from self._transform_stream_with_config(input, self._transform, config, run_type="chain")

    def astream(
        self, input: Dict[str, Any], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> AsyncIterator[Dict[str, Any]]:
        async def one() -> AsyncIterator[Dict[str, Any]]:
            yield input

        return self.atransform(one(), config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Dict[str, Any]], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> AsyncIterator[Dict[str, Any]]:
        async for chunk in self._atransform_stream_with_config(input, self._atransform, config, run_type="chain"):
            yield chunk

    def _transform(self, chunks: Iterator[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        run = _StreamedRun(self)
        for chunk in chunks:
            yield run.take(chunk)
            yield from run.sentences()
        yield from run.end()

    async def _atransform(
        self, chunks: AsyncIterator[Dict[str, Any]], config: RunnableConfig
    ) -> AsyncIterator[Dict[str, Any]]:
        run = _StreamedRun(self)
        async for chunk in chunks:
            yield run.take(chunk)
            for out in await run_in_executor(config, run.sentences):
                yield out
        async for out in _in_thread(run.end):  # the model runs in one worker thread
            yield out


class _StreamedRun:
    """One streamed call of the step: the input chunks as they arrive, each completed
    answer sentence, and the end."""

    def __init__(self, step: AttribotCitations) -> None:
        self.step = step
        self.inputs: Optional[AddableDict] = None
        self.stream: Optional[RecordStream] = None
        self.pending = ""  # answer text not yet attributed
        self.streamed = 0  # sentences handed out

    def take(self, chunk: Dict[str, Any]) -> AddableDict:
        """Pass the input chunk through (and add it up)."""
        if not isinstance(chunk, dict):
            self.step._question(chunk)  # the step's error for a non-dict input
        chunk = AddableDict(chunk)
        self.inputs = chunk if self.inputs is None else self.inputs + chunk
        if self.step.answer_key in chunk:
            self.pending += message_text(chunk[self.step.answer_key])
        return chunk

    def sentences(self) -> List[AddableDict]:
        """The answer sentences the latest text completed, each cited on the text so far."""
        if not self.pending:
            return []
        if self.stream is None:
            question = self.step._question(self.inputs)
            records = self.step._records(self.inputs.get(self.step.context_key))
            self.stream = RecordStream(lambda: self.step.attributor, question, records, **self.step._options())
        text, self.pending = self.pending, ""
        return [self._sentence(s) for s in self.stream.add(text)]

    def _sentence(self, sentence: Dict[str, Any]) -> AddableDict:
        self.streamed += 1
        return AddableDict({self.step.sentences_key: [sentence]})

    def end(self) -> Iterator[AddableDict]:
        """The whole answer's citations (what invoke adds), after the sentences streamed."""
        if self.inputs is None:
            return
        step = self.step
        question = step._question(self.inputs)
        if not step._generates(self.inputs):
            result = step._cite(question, self.inputs.get(step.context_key), self.inputs.get(step.answer_key))
            yield AddableDict(step._outputs(result, skip=self.streamed))
            return
        yield from self._generate(question)

    def _generate(self, question: str) -> Iterator[AddableDict]:
        """The attributing model writes the answer: its text, each sentence, the whole."""
        step = self.step
        records = step._records(self.inputs.get(step.context_key))
        events = generate_records(
            lambda: step.attributor, question, records, max_new_tokens=step.max_new_tokens, **step._options()
        )
        for event in events:
            if event.result is not None:
                yield AddableDict(step._outputs(event.result, skip=self.streamed))
            elif event.sentence is not None:
                yield self._sentence(event.sentence)
            elif event.text:
                yield AddableDict({step.answer_key: event.text})


_END = object()


async def _in_thread(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Iterate ``make()`` in one worker thread (a generator holding the model's lock
    must be resumed by the thread that took it), handing each item to the event loop."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            iterator = make()
            try:
                for item in iterator:
                    loop.call_soon_threadsafe(items.put_nowait, (item, None))
                    if stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            loop.call_soon_threadsafe(items.put_nowait, (_END, None))
        except BaseException as exc:  # handed to the reader
            loop.call_soon_threadsafe(items.put_nowait, (_END, exc))

    worker = threading.Thread(target=work, name="attribot-astream", daemon=True)
    worker.start()
    try:
        while True:
            item, error = await items.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
