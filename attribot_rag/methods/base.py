"""The one small interface every attribution method implements.

A method receives an :class:`AttributionTask` (the model handle, the prompt layout, the
question, passages, sources, the response and the target token slice) and returns a
:class:`MethodOutput` with one score per source (``nan`` = not scored). Methods never
load models or read files: anything extra they need (a proxy model, an embedder, AT2
weights) is given to their constructor.

Adding a method is one module::

    @register_method
    class MyMethod(AttributionMethod):
        name = "my-method"
        def score(self, task): ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

from ..errors import MethodNotAvailableError
from ..layout import PromptLayout, RenderedPrompt, check_fits
from ..models import LoadedModel
from ..scoring import FullPass, Response, Scorer
from ..sources import Passage, Source


@dataclass
class AttributionTask:
    """Everything a method needs to score the sources of one (question, passages, response)."""

    lm: LoadedModel
    layout: PromptLayout
    scorer: Scorer
    question: str
    passages: list[Passage]
    sources: list[Source]
    response: Response
    target: tuple[int, int]  # token slice of the response being explained
    level: str = "passage"
    cache: dict[str, Any] = field(default_factory=dict)  # shared between methods of one task

    @cached_property
    def prompt(self) -> RenderedPrompt:
        rendered = self.layout.render(self.question, self.passages, self.sources)
        check_fits(len(rendered), len(self.response), self.lm.context_window, self.lm.name)
        return rendered

    def render(self, removed: Iterable[int]) -> RenderedPrompt:
        return self.layout.render(self.question, self.passages, self.sources, removed)

    def ablated_prompt_ids(self, removals: Sequence[Iterable[int]]) -> list[list[int]]:
        return [self.render(r).input_ids for r in removals]

    def full_pass(self) -> FullPass:
        """The full-context pass with its KV cache (computed once per task)."""
        if "full_pass" not in self.cache:
            self.cache["full_pass"] = self.scorer.full_pass(
                self.prompt.input_ids, self.response.token_ids
            )
        return self.cache["full_pass"]

    def target_ll(self, per_token: np.ndarray) -> float:
        a, b = self.target
        return float(np.sum(per_token[a:b]))

    def with_sources(self, sources: list[Source], passages: list[Passage] | None = None) -> "AttributionTask":
        """A task over other sources (and optionally other passages), same response and target."""
        return AttributionTask(
            lm=self.lm,
            layout=self.layout,
            scorer=self.scorer,
            question=self.question,
            passages=list(passages if passages is not None else self.passages),
            sources=sources,
            response=self.response,
            target=self.target,
            level=sources[0].level if sources else self.level,
        )


@dataclass
class MethodOutput:
    scores: np.ndarray  # one per source; nan = not scored
    info: dict[str, Any] = field(default_factory=dict)


class AttributionMethod(ABC):
    """Base class: subclasses set ``name`` and implement :meth:`score`."""

    name: ClassVar[str] = ""

    @abstractmethod
    def score(self, task: AttributionTask) -> MethodOutput:
        """Score every source of ``task`` for its target span."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


METHODS: dict[str, type[AttributionMethod]] = {}


def register_method(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a non-empty name")
    METHODS[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    return sorted(METHODS)


def create_method(name: str | AttributionMethod, **options: Any) -> AttributionMethod:
    if isinstance(name, AttributionMethod):
        return name
    if name not in METHODS:
        raise MethodNotAvailableError(
            f"unknown attribution method {name!r}; available: {', '.join(available_methods())}"
        )
    return METHODS[name](**options)
