"""Attribution methods: one module each, behind :class:`AttributionMethod`."""

from .base import (
    METHODS,
    AttributionMethod,
    AttributionTask,
    Effects,
    MethodOutput,
    SpanEffects,
    TaskCache,
    TokenEffects,
    available_methods,
    create_method,
    register_method,
)
from . import loo  # noqa: F401  (registers loo, loo-naive)
from . import hierarchical  # noqa: F401  (registers hierarchical)
from . import proxy  # noqa: F401  (registers proxy, proxy-rescore)
from . import at2  # noqa: F401  (registers at2, attention)
from . import contextcite  # noqa: F401  (registers contextcite)
from . import similarity  # noqa: F401  (registers similarity)
from . import baselines  # noqa: F401  (registers question-similarity, random)

__all__ = [
    "METHODS",
    "AttributionMethod",
    "AttributionTask",
    "Effects",
    "MethodOutput",
    "SpanEffects",
    "TaskCache",
    "TokenEffects",
    "available_methods",
    "create_method",
    "register_method",
]
