"""Request limits and the model queue: how the service degrades under load.

The model answers one request at a time (one CPU-bound forward pass at a time is what the
hardware can do; interleaving requests only makes every one of them slower). Requests
wait in a bounded queue; when it is full the service answers 503 with ``Retry-After``
instead of piling up work it cannot finish. A request whose model work runs past the
timeout is cancelled: a forward pre-hook on the model's layers raises inside the model
thread at the next layer, so the model is free for the next request within one layer's
compute, without any support from the attribution core.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


class LimitExceededError(Exception):
    """A request is larger than the service accepts (answered 422 with the reason)."""


class QueueFullError(Exception):
    """Too many requests are waiting for the model (answered 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeoutError(Exception):
    """The request's model work ran past the timeout and was cancelled (answered 504)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests are refused before any model work."""

    max_passages: int = 20
    max_passage_chars: int = 4000
    max_question_chars: int = 1000
    max_answer_chars: int = 2000
    max_k: int = 10  # passages retrieved by /v1/ask

    def check(self, question: str, passages: Sequence[Any] = (), answer: str | None = None) -> None:
        """Raise :class:`LimitExceededError` naming the first limit the request exceeds."""
        if len(question) > self.max_question_chars:
            raise LimitExceededError(
                f"the question has {len(question)} characters; the limit is {self.max_question_chars}"
            )
        if len(passages) > self.max_passages:
            raise LimitExceededError(
                f"{len(passages)} passages were sent; the limit is {self.max_passages} per request"
            )
        for i, passage in enumerate(passages):
            if len(passage.text) > self.max_passage_chars:
                name = f" ({passage.id!r})" if getattr(passage, "id", None) is not None else ""
                raise LimitExceededError(
                    f"passage {i}{name} has {len(passage.text)} characters; "
                    f"the limit is {self.max_passage_chars} per passage"
                )
        if answer is not None and len(answer) > self.max_answer_chars:
            raise LimitExceededError(
                f"the answer has {len(answer)} characters; the limit is {self.max_answer_chars}"
            )

    def check_k(self, k: int) -> None:
        if k > self.max_k:
            raise LimitExceededError(f"k={k} passages to retrieve; the limit is {self.max_k}")


class _Job:
    """One request's model work: the thread running it and its deadline."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = math.inf
        self.thread_id: int | None = None
        self.cancelled = False

    def start(self) -> None:
        self.thread_id = threading.get_ident()
        self.deadline = time.monotonic() + self.timeout_s

    def check(self, *_: Any) -> None:
        """Forward pre-hook: stop this job's model work once cancelled or past its deadline."""
        # Only this job's own thread is stopped: another caller sharing the weights is not.
        if threading.get_ident() != self.thread_id:
            return
        if self.cancelled:
            raise RequestTimeoutError("the request was cancelled")
        if time.monotonic() > self.deadline:
            raise RequestTimeoutError(
                f"the request took longer than {self.timeout_s:g} s of model time and was cancelled"
            )


def interruptible_modules(model: Any) -> list[Any]:
    """The modules whose forward pre-hooks can stop a running request: every decoder layer
    (one check per layer keeps the reaction time to a fraction of a forward pass)."""
    layers = [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Block"))]
    return layers or [model]


class Admission:
    """One request's place in the queue; released once, however the request ends."""

    def __init__(self, queue: "ModelQueue") -> None:
        self._queue = queue
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._queue._admitted -= 1


class ModelQueue:
    """Runs model work one request at a time on one thread, with at most ``max_waiting``
    requests waiting behind the running one, and none admitted whose expected wait (the
    recent median request time x the requests ahead) exceeds ``max_wait_s``."""

    def __init__(
        self,
        models: Sequence[Any] = (),
        *,
        max_waiting: int = 8,
        timeout_s: float = 60.0,
        max_wait_s: float = 60.0,
    ) -> None:
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.modules = [m for model in models for m in interruptible_modules(model)]
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attribot-model")
        self._turn = asyncio.Lock()
        self._admitted = 0  # running + waiting
        self._durations: deque[float] = deque(maxlen=32)
        self._running = threading.local()  # the model thread's current job, for checkpoint()

    @property
    def admitted(self) -> int:
        return self._admitted

    def typical_s(self) -> float | None:
        """The median model time of the recent requests (None before the first)."""
        return sorted(self._durations)[len(self._durations) // 2] if self._durations else None

    def expected_wait_s(self) -> float:
        """How long a request admitted now would wait for its turn."""
        return (self.typical_s() or 0.0) * self._admitted

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the typical request time x the requests ahead."""
        return max(1, min(120, math.ceil((self.typical_s() or 1.0) * max(1, self._admitted))))

    def _refusal(self) -> str | None:
        if self._admitted > self.max_waiting:
            return f"{self._admitted} requests are running or waiting (at most {self.max_waiting} may wait)"
        # Until one request has finished nobody knows how long they take: one may wait.
        if self.typical_s() is None and self._admitted > 1:
            return f"{self._admitted} requests are running or waiting and no request time is known yet"
        # A deep queue of slow requests would make clients wait minutes: refuse early instead.
        if self._admitted and self.expected_wait_s() > self.max_wait_s:
            return (
                f"the {self._admitted} requests ahead would take about {self.expected_wait_s():.0f} s "
                f"(at most {self.max_wait_s:g} s of waiting is accepted)"
            )
        return None

    def admit(self) -> "Admission":
        """Take a place in the queue now, or raise QueueFullError. A streaming endpoint
        admits before it answers 200, then runs the work while the stream is open."""
        refusal = self._refusal()
        if refusal:
            raise QueueFullError(f"the model is busy: {refusal}", self.retry_after_s())
        self._admitted += 1
        return Admission(self)

    async def run(self, work: Callable[[], T], admission: "Admission | None" = None) -> T:
        """Run ``work()`` on the model thread when its turn comes; raise QueueFullError now
        when the queue is full, RequestTimeoutError when it runs past the timeout."""
        admission = admission or self.admit()
        job = _Job(self.timeout_s)
        try:
            async with self._turn:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(self._executor, self._run_job, job, work)
                try:
                    return await asyncio.shield(future)
                except asyncio.CancelledError:
                    # The client went away: stop the model work too, then let the next run.
                    job.cancelled = True
                    raise
        finally:
            admission.release()

    def checkpoint(self) -> None:
        """Raise RequestTimeoutError when the running job was cancelled or is past its
        deadline: a check for model work that runs outside the hooked layers (a streamed
        answer is generated in a thread of its own, which the layer hooks do not stop)."""
        job = getattr(self._running, "job", None)
        if job is not None:
            job.check()

    def _run_job(self, job: _Job, work: Callable[[], T]) -> T:
        job.start()
        self._running.job = job
        handles = [m.register_forward_pre_hook(job.check) for m in self.modules]
        t0 = time.perf_counter()
        try:
            return work()
        finally:
            self._running.job = None
            for handle in handles:
                handle.remove()
            self._durations.append(time.perf_counter() - t0)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
