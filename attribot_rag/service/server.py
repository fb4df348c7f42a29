"""``attribot-rag serve``: load the model and the index, then run the app with uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from ..attributor import DEFAULT_MAX_NEW_TOKENS, Attributor
from ..index import PassageIndex, read_corpus
from ..models import get_model
from .app import create_app
from .limits import Limits, ModelQueue

log = logging.getLogger("attribot_rag.service")


def load_index(folder: str | None) -> PassageIndex:
    """The index in ``folder``, or the bundled handbook embedded now (a few seconds)."""
    if folder:
        return PassageIndex.load(folder)
    return PassageIndex.build(read_corpus())


def build_app(
    *,
    index: str | None = None,
    model: str = "smollm2-135m",
    proxy_model: str | None = None,
    method: str = "loo",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    max_waiting: int = 8,
    timeout_s: float = 60.0,
    max_wait_s: float = 60.0,
    limits: Limits | None = None,
) -> Any:
    attributor = Attributor(get_model(model), method=method, max_new_tokens=max_new_tokens)
    proxy = get_model(proxy_model) if proxy_model else None
    models = [attributor.lm.model] + ([proxy.model] if proxy is not None else [])
    queue = ModelQueue(models, max_waiting=max_waiting, timeout_s=timeout_s, max_wait_s=max_wait_s)
    return create_app(
        attributor, index=load_index(index), proxy=proxy, method=method, limits=limits, queue=queue
    )


def serve(*, host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> None:
    import uvicorn

    app = build_app(**app_options)
    print(f"attribot-rag: serving on http://{host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
