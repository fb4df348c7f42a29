"""The FastAPI app: cited answers over HTTP and the search page.

``create_app(attributor, index=...)`` builds the app around one loaded model; the
``attribot-rag serve`` command runs it with uvicorn. Every endpoint calls the library's
public API only (``Attributor.attribute``, ``cite``, ``stream_cite``, ``prune``) through the
model queue (service/limits.py), so the model serves one request at a time. The ``/stream``
variants of /v1/ask and /v1/cite answer with server-sent events (service/events.py).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..attributor import AUTO_METHOD, resolve_method
from .. import Attributor, LoadedModel, available_methods, cite, make_sources, prune, stream_cite
from ..documents import passage_origin
from ..errors import InputError, MethodNotAvailableError
from ..methods import METHODS
from ..methods.spec import MethodSpec
from ..sources import coerce_passages
from .events import DEFAULT_KEEPALIVE_S, EventChannel, EventStreamResponse, open_event_stream, pump
from .errors import EXPECTED_ERRORS, NoIndexError, NotStreamableError, error_status
from .limits import Limits, ModelQueue, QueueFullError
from .schemas import (
    AskRequest,
    AskResponse,
    AttributeRequest,
    AttributionOut,
    CiteRequest,
    CiteResponse,
    ErrorOut,
    PruneRequest,
    PruneResponse,
)

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("attribot_rag.service")




class AttributionService:
    """What the endpoints share: the attributor, the optional proxy and index, the limits."""

    def __init__(
        self,
        attributor: Attributor,
        *,
        index: Any = None,
        proxy: LoadedModel | None = None,
        method: str = AUTO_METHOD,
        limits: Limits | None = None,
        queue: ModelQueue | None = None,
        keepalive_s: float | None = DEFAULT_KEEPALIVE_S,
    ) -> None:
        self.attributor = attributor
        self.keepalive_s = keepalive_s
        self.index = index
        self.proxy = proxy
        self.method = method
        self.limits = limits or Limits()
        models = [attributor.lm.model] + ([proxy.model] if proxy is not None else [])
        self.queue = queue or ModelQueue(models)

    def method_options(self, method: str | None) -> tuple[str, dict[str, Any]]:
        """The method a request runs ("auto" resolved for the model) and its options."""
        name = resolve_method(self.attributor.model_name, method or self.method)
        if name not in METHODS:  # the attributor reports unknown methods
            return name, {}
        return name, MethodSpec(name, name).resolve({"proxy": self.proxy})

    def passages(self, request: Any) -> list:
        """The request's passages as library passages, checked against the limits."""
        # Limits first: an oversized request is refused before any other work on it.
        self.limits.check(request.question, request.passages, getattr(request, "answer", None))
        return coerce_passages([p.as_dict(i) for i, p in enumerate(request.passages)])

    async def run(self, work: Callable[[], Any]) -> Any:
        return await self.queue.run(work)

    def check_stream(self, question: str, method: str) -> None:
        """What a stream would otherwise only find out after it started (the method is
        first used when the first sentence completes), checked before the 200."""
        if not question.strip():
            raise InputError("the question is empty or missing")
        if method not in available_methods():
            raise MethodNotAvailableError(
                f"unknown attribution method {method!r}; available: {', '.join(available_methods())}"
            )


# --------------------------------------------------------------------------- shaping


def cite_response(cited: Any) -> dict[str, Any]:
    """A CitedAnswer as the CiteResponse shape, with per-sentence scores for shading."""
    sentences = [
        {"index": s.index, "text": s.text, "span": list(s.span), "markers": s.numbers}
        for s in cited.sentences
    ]
    scores = cited.source_scores()
    numbers = {r.passage_id: r.number for r in cited.references}
    passages = []
    for passage, sources in _sentences_by_passage(cited.passages):
        passages.append(
            {
                "id": passage.id,
                "title": passage.title,
                "text": passage.text,
                "number": numbers.get(passage.id),
                "sentences": [
                    {"id": s.id, "text": s.text, "start": s.start, "end": s.end, "score": scores.get(s.id)}
                    for s in sources
                ],
                **passage_origin(passage),
                "metadata": dict(passage.metadata),
            }
        )
    return {
        "question": cited.question,
        "answer": cited.answer,
        "cited_answer": cited.text,
        "method": cited.method,
        "model": cited.model,
        "evidence": cited.evidence,
        "calibration": cited.settings.get("calibration"),
        # Each citation names its document's file (and page) when the passage came from one.
        "citations": [{**c.to_dict(), **passage_origin(cited.passages[c.passage_index])} for c in cited.citations],
        "unsupported": [s for s in sentences if not s["markers"]],
        "sentences": sentences,
        "passages": passages,
        "timings": dict(cited.timings),
    }


def _sentences_by_passage(passages: Sequence[Any]) -> list[tuple[Any, list]]:
    sources = make_sources(passages, "sentence")
    return [(p, [s for s in sources if s.passage_index == i]) for i, p in enumerate(passages)]


def prune_response(result: Any) -> dict[str, Any]:
    out = result.to_dict()
    out.pop("info", None)
    return out


# --------------------------------------------------------------------------- errors


def _error(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


async def _expected_error(_: Request, exc: Exception) -> JSONResponse:
    status, kind = error_status(exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QueueFullError) else None
    return _error(status, kind, str(exc), headers)


def install_error_handlers(app: FastAPI) -> None:
    """Library and service errors become JSON 4xx/5xx answers, never a traceback."""
    for exc_type in EXPECTED_ERRORS:
        app.add_exception_handler(exc_type, _expected_error)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log, not to the client.
        log.exception("unexpected error while serving a request")
        return _error(500, "internal", f"unexpected {type(exc).__name__}; see the server log")


# --------------------------------------------------------------------------- routes

_ERRORS = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}, 504: {"model": ErrorOut}}
_EVENTS = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "server-sent events: `text` {text}, `sentence` (a completed sentence with its "
        "citations), `done` (the non-streaming endpoint's body), `error` {status, detail}",
    },
    **_ERRORS,
}


def install_routes(app: FastAPI, service: AttributionService) -> None:
    att = service.attributor

    @app.post("/v1/attribute", response_model=AttributionOut, responses=_ERRORS)
    async def attribute_endpoint(req: AttributeRequest) -> Any:
        """Score every passage (or sentence) by how much the answer depends on it."""
        passages = service.passages(req)
        method, options = service.method_options(req.method)
        result = await service.run(
            lambda: att.attribute(req.question, passages, req.answer, method=method, level=req.level, **options)
        )
        return result.to_dict()

    @app.post("/v1/cite", response_model=CiteResponse, responses=_ERRORS)
    async def cite_endpoint(req: CiteRequest) -> Any:
        """The answer with [n] markers and the structured citations."""
        passages = service.passages(req)
        method, options = service.method_options(req.method)
        cited = await service.run(lambda: cite(att, req.question, passages, req.answer, method=method, **options))
        return cite_response(cited)

    @app.post("/v1/prune", response_model=PruneResponse, responses=_ERRORS)
    async def prune_endpoint(req: PruneRequest) -> Any:
        """Draft, keep the passages the draft used, answer again with only those."""
        passages = service.passages(req)
        method, options = service.method_options(req.method)
        result = await service.run(
            lambda: prune(att, req.question, passages, req.k, req.keep_mass, method, draft=req.answer, **options)
        )
        return prune_response(result)

    @app.post("/v1/ask", response_model=AskResponse, responses=_ERRORS)
    async def ask_endpoint(req: AskRequest) -> Any:
        """Retrieve from the index, answer, cite (pruning the context first when asked)."""
        return await ask(service, req)

    @app.post("/v1/cite/stream", responses=_EVENTS)
    async def cite_stream_endpoint(req: CiteRequest) -> Any:
        """/v1/cite as server-sent events: the generated answer as it is written, each
        sentence's citations as it completes, then the /v1/cite body."""
        return await cite_stream(service, req)

    @app.post("/v1/ask/stream", responses=_EVENTS)
    async def ask_stream_endpoint(req: AskRequest) -> Any:
        """/v1/ask as server-sent events (with pruning, the pruned answer is streamed)."""
        return await ask_stream(service, req)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"model": att.model_name, "queue": service.queue.admitted, "index": service.index is not None}


def retrieve(service: AttributionService, req: AskRequest) -> tuple[list, list[dict[str, Any]]]:
    """The passages /v1/ask answers from, and how they are reported."""
    if service.index is None:
        raise NoIndexError("this server has no passage index: start it with `attribot-rag serve --index DIR`")
    service.limits.check(req.question)
    service.limits.check_k(req.k)
    hits = service.index.search(req.question, req.k)
    retrieved = [{"id": p.id, "title": p.title, "similarity": s, **passage_origin(p)} for p, s in hits]
    return [p for p, _ in hits], retrieved


def ask_body(req: AskRequest, retrieved: list, cited: Any, pruned: Any) -> dict[str, Any]:
    return {
        "question": req.question,
        "retrieved": retrieved,
        "cite": cite_response(cited),
        "prune": prune_response(pruned) if pruned is not None else None,
    }


async def ask(service: AttributionService, req: AskRequest) -> dict[str, Any]:
    passages, retrieved = retrieve(service, req)
    method, options = service.method_options(req.method)
    att = service.attributor

    def work() -> dict[str, Any]:
        pruned = None
        context, answer = passages, None
        if req.prune:
            pruned = prune(att, req.question, passages, k=req.prune_k, method=method, **options)
            context, answer = pruned.kept_passages, pruned.answer
        cited = cite(att, req.question, context, answer, method=method, **options)
        return ask_body(req, retrieved, cited, pruned)

    return await service.run(work)


# --------------------------------------------------------------------------- streaming


def as_sent(model: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The body as the non-streaming endpoint sends it (through its response model), so
    the ``done`` event and /v1/cite or /v1/ask give the same JSON."""
    return model.model_validate(body).model_dump(mode="json")


async def cite_stream(service: AttributionService, req: CiteRequest) -> EventStreamResponse:
    if req.answer is not None:
        raise NotStreamableError(
            "the streaming endpoint generates the answer; to cite an answer you have, use /v1/cite"
        )
    passages = service.passages(req)
    method, options = service.method_options(req.method)
    service.check_stream(req.question, method)
    att = service.attributor

    def produce(channel: EventChannel) -> None:
        stream = stream_cite(att, req.question, passages, method=method, **options)
        pump(stream, channel, service.queue, lambda cited: as_sent(CiteResponse, cite_response(cited)))

    return await open_event_stream(service.queue, produce, service.keepalive_s)


async def ask_stream(service: AttributionService, req: AskRequest) -> EventStreamResponse:
    passages, retrieved = retrieve(service, req)
    method, options = service.method_options(req.method)
    service.check_stream(req.question, method)
    att = service.attributor

    def produce(channel: EventChannel) -> None:
        pruned, context = None, passages
        if req.prune:  # select the passages first; the answer from the kept ones is streamed
            pruned = prune(att, req.question, passages, k=req.prune_k, method=method, second_pass=False, **options)
            context = pruned.kept_passages

        def finish(cited: Any) -> dict[str, Any]:
            done = dataclasses.replace(pruned, answer=cited.answer) if pruned is not None else None
            return as_sent(AskResponse, ask_body(req, retrieved, cited, done))

        pump(stream_cite(att, req.question, context, method=method, **options), channel, service.queue, finish)

    return await open_event_stream(service.queue, produce, service.keepalive_s)


def create_app(
    attributor: Attributor,
    *,
    index: Any = None,
    proxy: LoadedModel | None = None,
    method: str = AUTO_METHOD,
    limits: Limits | None = None,
    queue: ModelQueue | None = None,
    keepalive_s: float | None = DEFAULT_KEEPALIVE_S,
) -> FastAPI:
    """The service around one attributor (and an optional passage index for /v1/ask);
    the streaming endpoints send a keep-alive comment after each ``keepalive_s`` seconds
    without an event (None: never)."""
    if keepalive_s is not None and not keepalive_s > 0:
        raise ValueError(f"keepalive_s must be > 0 seconds or None, got {keepalive_s!r}")
    service = AttributionService(
        attributor, index=index, proxy=proxy, method=method, limits=limits, queue=queue, keepalive_s=keepalive_s
    )
    app = FastAPI(
        title="attribot-rag",
        description="Cited answers: which retrieved passages did the answer really use?",
        version=_version(),
    )
    app.state.service = service
    install_error_handlers(app)
    install_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _version() -> str:
    from .. import __version__

    return __version__
