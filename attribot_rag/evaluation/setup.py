"""How the evaluation runs (bench, prune-eval, cite-eval) load their models and build
their :class:`~attribot_rag.attributor.Attributor`, in one place.

A model is a name (an alias, a Hugging Face id or a local path; None: the library's
default model), loaded once per process in ``dtype``, or an already loaded
:class:`~attribot_rag.models.LoadedModel`, used as it is (``dtype`` applies to the models
loaded here by name). The proxy is loaded only when a run's methods need one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models import LoadedModel, get_model

if TYPE_CHECKING:
    from ..attributor import Attributor


def load(model: str | LoadedModel | None, dtype: Any = None) -> LoadedModel:
    """``model`` loaded by name in ``dtype`` (None: the default model), or as given."""
    return model if isinstance(model, LoadedModel) else get_model(model, dtype=dtype)


def load_models(
    model: str | LoadedModel | None,
    proxy_model: str | LoadedModel | None = None,
    *,
    needs_proxy: bool = True,
    dtype: Any = None,
) -> tuple[LoadedModel, LoadedModel | None]:
    """The target model and the proxy (None without a proxy model, or when no method of
    the run needs one)."""
    target = load(model, dtype)
    proxy = load(proxy_model, dtype) if proxy_model is not None and needs_proxy else None
    return target, proxy


def build_attributor(target: LoadedModel, **options: Any) -> "Attributor":
    """The attributor a run uses on ``target``; options left None keep the Attributor's
    defaults."""
    from ..attributor import Attributor

    return Attributor(target, **{k: v for k, v in options.items() if v is not None})


__all__ = ["build_attributor", "load", "load_models"]
