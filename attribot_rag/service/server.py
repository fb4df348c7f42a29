"""``attribot-rag serve``: load the model and the index, then run the app with uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from ..attributor import DEFAULT_MAX_NEW_TOKENS, Attributor
from ..index import PassageIndex, read_corpus
from ..models import DEFAULT_MODEL, get_model
from ..precision import set_threads
from .app import create_app
from .events import DEFAULT_KEEPALIVE_S
from .limits import Limits, ModelQueue

log = logging.getLogger("attribot_rag.service")


def load_index(folder: str | None) -> PassageIndex:
    """The index in ``folder``, or the bundled handbook embedded now (a few seconds)."""
    if folder:
        return PassageIndex.load(folder)
    return PassageIndex.build(read_corpus())


# Seconds of model time a request may take: generation on the 1.5B over a few retrieved
# chunks takes 15-60 s on a 2-core CPU; a stream that runs past it ends with what it has.
DEFAULT_TIMEOUT_S = 120.0


def build_app(
    *,
    index: str | None = None,
    model: str | None = DEFAULT_MODEL,
    proxy_model: str | None = None,
    method: str = "auto",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    max_waiting: int = 8,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_wait_s: float = 60.0,
    limits: Limits | None = None,
    dtype: Any = None,
    threads: int | None = None,
    keepalive_s: float | None = DEFAULT_KEEPALIVE_S,
) -> Any:
    """The app with its models loaded: ``model`` (None: the library's default model, the
    1.5B where installed) and ``proxy_model`` in ``dtype``
    (``"auto"``, ``"float32"``, ``"bfloat16"``; None: ``$ATTRIBOT_RAG_DTYPE`` or auto),
    torch running ``threads`` intra-op threads in this process (None: as it is), and the
    streaming endpoints sending an SSE comment every ``keepalive_s`` seconds while an
    answer is being written (None: never)."""
    set_threads(threads)
    attributor = Attributor(get_model(model, dtype=dtype), method=method, max_new_tokens=max_new_tokens)
    proxy = get_model(proxy_model, dtype=dtype) if proxy_model else None
    models = [attributor.lm.model] + ([proxy.model] if proxy is not None else [])
    queue = ModelQueue(models, max_waiting=max_waiting, timeout_s=timeout_s, max_wait_s=max_wait_s)
    return create_app(
        attributor, index=load_index(index), proxy=proxy, method=method, limits=limits, queue=queue,
        keepalive_s=keepalive_s,
    )


def serve(*, host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> None:
    """Build the app (``app_options``: :func:`build_app`'s, ``dtype``, ``threads`` and
    ``keepalive_s`` included) and serve it with uvicorn."""
    import uvicorn

    app = build_app(**app_options)
    print(f"attribot-rag: serving on http://{host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
