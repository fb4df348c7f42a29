"""Server-sent events for the streaming endpoints (/v1/ask/stream, /v1/cite/stream).

The answer is generated in the model thread (through the same ModelQueue as every other
request); each :class:`~attribot_rag.streaming.StreamEvent` is handed to the event loop
through a thread-safe channel and written as an SSE block: ``text`` (new answer text),
``sentence`` (a sentence that just completed, with its citations), ``done`` (the same
body the non-streaming endpoint returns) or ``error`` (``{status, detail}``, for an error
raised after the stream started). The endpoint waits for the first event before it
answers, so whatever fails before the first token (invalid input, a context too long, a
timeout while waiting) is still an ordinary JSON 4xx/5xx. A client that disconnects
cancels the stream: the model loop sees it at the next token, closes the
``stream_cite`` generator (which stops its generation thread) and the queue slot is freed.
Once the stream has started, a comment line (``: keep-alive``) goes out whenever no event
has for ``keepalive_s`` seconds (default :data:`DEFAULT_KEEPALIVE_S`), so that proxies
and clients with idle timeouts keep the connection open through a long generation or a
slow sentence's attribution; SSE clients ignore comments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from starlette.responses import StreamingResponse

from .errors import error_status
from .limits import Admission, ModelQueue, RequestTimeoutError

log = logging.getLogger("attribot_rag.service")
_END = object()  # the model loop finished (normally or not)
DEFAULT_KEEPALIVE_S = 15.0
KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: ignored by EventSource and SSE parsers

# An event as it travels: its SSE name and its JSON data.
Event = tuple[str, dict[str, Any]]


def sse(kind: str, data: dict[str, Any]) -> str:
    """One SSE block; JSON never contains a raw newline, so one data line suffices."""
    return f"event: {kind}\ndata: {json.dumps(data, default=_plain)}\n\n"


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in the library's results, as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def sentence_event(sentence: Any) -> dict[str, Any]:
    """A completed sentence as the ``sentence`` event's data (CitedSentence.to_dict())."""
    out = sentence.to_dict()
    out.pop("scores", None)  # every source's score: the done event has them per passage
    return out


class EventChannel:
    """Events from the model thread to the event loop (the loop's queue is not thread-safe,
    so the model thread only schedules puts on the loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self.stopped = threading.Event()  # set by the loop side when the client is gone

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self._put((kind, data))

    def end(self) -> None:
        self._put(_END)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the loop closed (server shutdown): nobody is listening
            self.stopped.set()

    async def get(self) -> Any:
        return await self._items.get()


def pump(
    stream: Iterator[Any],
    channel: EventChannel,
    queue: ModelQueue,
    finish: Callable[[Any], dict[str, Any]],
) -> None:
    """Model thread: forward the stream_cite events until the last, the client leaving, or
    the timeout; ``finish`` shapes the whole CitedAnswer as the ``done`` body."""
    shown: dict[str, Any] = {"answer": "", "sentences": []}
    try:
        for event in stream:
            if channel.stopped.is_set():
                return  # the client went away: the finally below stops the generation
            queue.checkpoint()  # the timeout, between tokens (the generation thread has no hooks)
            if event.text:
                shown["answer"] += event.text
                channel.emit("text", {"text": event.text})
            if event.sentence is not None:
                shown["sentences"].append(sentence_event(event.sentence))
                channel.emit("sentence", shown["sentences"][-1])
            if event.answer is not None:
                channel.emit("done", finish(event.answer))
    except RequestTimeoutError as exc:
        if not shown["answer"]:
            raise  # nothing shown yet: an ordinary timeout error
        # The reader already has part of the answer: end with what was computed and why
        # it stops there, never a bare error after the text.
        channel.emit("incomplete", {"detail": str(exc), **shown})
    finally:
        stream.close()  # stops stream_cite's generation thread and releases the model
        channel.end()


class ModelEventStream:
    """One streaming request: its work running on the model queue, its events read here."""

    def __init__(
        self,
        queue: ModelQueue,
        admission: Admission,
        produce: Callable[[EventChannel], None],
        keepalive_s: float | None = DEFAULT_KEEPALIVE_S,
    ) -> None:
        if keepalive_s is not None and not keepalive_s > 0:
            raise ValueError(f"keepalive_s must be > 0 seconds or None, got {keepalive_s!r}")
        self.admission = admission
        self.keepalive_s = keepalive_s
        self.channel = EventChannel(asyncio.get_running_loop())
        self._task = asyncio.ensure_future(queue.run(lambda: produce(self.channel), admission))

    async def first(self) -> Any:
        """The first event; raises what the work raised before producing any (answered as
        JSON by the app's error handlers, since no byte of the stream is sent yet)."""
        try:
            item = await self.channel.get()
            if item is _END:
                await self._task  # raises the work's error
                raise RuntimeError("the answer stream ended without an event")
            return item
        except BaseException:
            self.stop()
            raise

    async def events(self, first: Event) -> AsyncIterator[str]:
        """The SSE blocks: the first event, the rest as they come (a keep-alive comment
        after each ``keepalive_s`` without one), an error event last if the work failed
        after the stream started."""
        waiting: asyncio.Future | None = None
        try:
            yield sse(*first)
            while True:
                if waiting is None:
                    waiting = asyncio.ensure_future(self.channel.get())
                done, _ = await asyncio.wait({waiting}, timeout=self.keepalive_s)
                if not done:
                    yield KEEPALIVE  # the same get goes on waiting: no event is lost
                    continue
                item, waiting = waiting.result(), None
                if item is _END:
                    break
                yield sse(*item)
            try:
                await self._task
            except Exception as exc:  # the status line is sent: report the error in-band
                status, _ = error_status(exc)
                if status == 500:
                    log.error("unexpected error while streaming an answer", exc_info=exc)
                detail = str(exc) if status != 500 else f"unexpected {type(exc).__name__}; see the server log"
                yield sse("error", {"status": status, "detail": detail})
        finally:
            if waiting is not None:
                waiting.cancel()
            self.stop()  # no await here: this also runs while the request is being cancelled

    def stop(self) -> None:
        """Stop the model work (at its next token or layer) and give the queue slot back."""
        self.channel.stopped.set()
        self._task.cancel()  # ModelQueue.run marks the job cancelled: the layer hooks raise
        self.admission.release()


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that always closes its event source, even when the client
    disconnects mid-stream or before the first block (so the model and the slot are freed)."""

    media_type = "text/event-stream"

    def __init__(self, stream: ModelEventStream, first: Event) -> None:
        super().__init__(
            stream.events(first),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy buffering
        )
        self._stream = stream

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            self._stream.stop()
            await self.body_iterator.aclose()


async def open_event_stream(
    queue: ModelQueue,
    produce: Callable[[EventChannel], None],
    keepalive_s: float | None = DEFAULT_KEEPALIVE_S,
) -> EventStreamResponse:
    """Admit the request (503 now when the queue is full), start its work, and answer once
    the first event is there (an error before it is an ordinary JSON answer)."""
    stream = ModelEventStream(queue, queue.admit(), produce, keepalive_s)
    return EventStreamResponse(stream, await stream.first())
