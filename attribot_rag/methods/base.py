"""The one small interface every attribution method implements.

A method receives an :class:`AttributionTask` (the model handle, the prompt layout, the
question, passages, sources, the response and the target token slice) and returns its
:class:`Effects`: what it found per source, able to answer any target span of the
response (``effects.query((a, b))`` -> :class:`MethodOutput`, one score per source,
``nan`` = not scored). LOO and AT2 keep per-token effects and a span is a slice;
ContextCite keeps its ablations and fits a span on demand; methods whose choices depend
on the span (hierarchical, proxy-rescore) rerun their cheap logic per span over the
task's shared caches. Methods read no files of their own: anything extra they need (a
proxy model, an embedder, AT2 weights) is given to their constructor; a proxy given by name
is loaded through the model loader's cache (:func:`attribot_rag.models.get_model`).

Adding a method is one module::

    @register_method
    class MyMethod(AttributionMethod):
        name = "my-method"
        def effects(self, task): ...
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from ..errors import MethodNotAvailableError
from ..layout import PromptLayout, RenderedPrompt, check_fits
from ..models import LoadedModel
from ..scoring import DEFAULT_MAX_SPREAD, FullPass, Response, Scorer, generated_prompt_kv
from ..sources import Passage, Source

# TaskCache.full_pass_note when generation's KV cache gave the prompt's keys and values.
FROM_GENERATION = "prompt KV cache from the generation"


@dataclass
class TaskCache:
    """What one task computes once and every method and span query reuses."""

    full_pass: FullPass | None = None
    full_pass_note: str = ""  # where the prompt's KV cache came from (see full_pass)
    # source index -> per-token log-prob change of the response when that source is removed
    loo_rows: dict[int, np.ndarray] = field(default_factory=dict)
    at2_features: Any = None  # torch [S, r, L*H], see at2.features
    at2_capture: str = ""  # "used", or why the generation capture could not be used
    context_gain: np.ndarray | None = None  # per response token, see attribot_rag.grounding
    # per response token, log p(r_t | full prompt) from a pass that kept no KV cache (AT2's)
    full_logprobs: np.ndarray | None = None
    support: Any = None  # keep-only-this-source log-probs (attribot_rag.citations.support)


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
    cache: TaskCache = field(default_factory=TaskCache)  # shared by its methods and spans

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
        """The full-context pass with its KV cache (computed once per task). When this model
        generated the answer from this prompt, generation's KV cache already holds the
        prompt's keys and values, and only the answer's tokens run."""
        if self.cache.full_pass is None:
            ids, answer = self.prompt.input_ids, self.response.token_ids
            kv, why_not = generated_prompt_kv(self.response, self.lm.model, ids)
            if kv is not None:
                self.cache.full_pass = self.scorer.full_pass_on_prompt_kv(ids, answer, kv)
                self.cache.full_pass_note = FROM_GENERATION
            else:
                self.cache.full_pass = self.scorer.full_pass(ids, answer)
                self.cache.full_pass_note = f"prompt run again: {why_not}"
        return self.cache.full_pass

    def full_logprobs(self) -> np.ndarray:
        """Per answer token, log p(r_t | full prompt): from generation when this model wrote
        the answer after this very prompt, else from the full pass."""
        generated = self.response.logprobs
        if self.cache.full_pass is None and generated is not None:
            values = generated.for_prompt(self.prompt.input_ids, len(self.response.token_ids))
            if values is not None:
                return values
        if self.cache.full_pass is None and self.cache.full_logprobs is not None:
            return self.cache.full_logprobs
        return self.full_pass().logprobs

    def context_gain(self) -> np.ndarray:
        """Per answer token, log p(r_t | prompt) - log p(r_t | prompt with every source
        removed): what the passages add (one pass of the short passage-free prompt, once
        per task; docs/architecture.md, Citations)."""
        if self.cache.context_gain is None:
            empty = self.render([s.index for s in self.sources]).input_ids
            self.cache.context_gain = self.full_logprobs() - self.scorer.logprobs(empty, self.response.token_ids)
        return self.cache.context_gain

    def target_ll(self, per_token: np.ndarray, target: tuple[int, int] | None = None) -> float:
        a, b = target or self.target
        return float(np.sum(per_token[a:b]))

    def loo_rows(
        self, indices: Sequence[int], batch_size: int | None = None, max_spread: int | str | None = DEFAULT_MAX_SPREAD
    ) -> np.ndarray:
        """Exact LOO per answer token for the listed sources: [len(indices), r] of
        log p(r_t | C) - log p(r_t | C without s) (prefix-KV reuse + batching), each
        source's row computed once per task whatever span or method asks for it."""
        missing = [i for i in dict.fromkeys(int(i) for i in indices) if i not in self.cache.loo_rows]
        if missing:
            full = self.full_pass()
            prompts = self.ablated_prompt_ids([[self.sources[i].index] for i in missing])
            lps = self.scorer.ablation_logprobs(full, prompts, batch_size=batch_size, max_spread=max_spread)
            for i, lp in zip(missing, lps):
                self.cache.loo_rows[i] = full.logprobs - lp
        r = len(self.response)
        return np.array([self.cache.loo_rows[int(i)] for i in indices], dtype=np.float64).reshape(len(indices), r)

    def loo_scores(
        self, indices: Sequence[int], batch_size: int | None = None, max_spread: int | str | None = DEFAULT_MAX_SPREAD
    ) -> np.ndarray:
        """Exact LOO scores LL(C) - LL(C without s) over the target span, for the listed sources."""
        a, b = self.target
        return self.loo_rows(indices, batch_size, max_spread)[:, a:b].sum(axis=1)

    def for_target(self, target: tuple[int, int]) -> "AttributionTask":
        """The same task explaining another token slice of the response (caches shared)."""
        task = dataclasses.replace(self, target=(int(target[0]), int(target[1])))
        if "prompt" in self.__dict__:  # already rendered and checked
            task.__dict__["prompt"] = self.__dict__["prompt"]
        return task

    def without_cache(self) -> "AttributionTask":
        """The same task with empty caches (to keep for span queries that need none)."""
        task = dataclasses.replace(self, cache=TaskCache())
        if "prompt" in self.__dict__:
            task.__dict__["prompt"] = self.__dict__["prompt"]
        return task

    def with_sources(self, sources: list[Source], passages: list[Passage] | None = None) -> "AttributionTask":
        """A task over other sources (and optionally other passages), same response and
        target; it shares the full pass when its prompt is the same token sequence."""
        task = AttributionTask(
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
        if self.cache.full_pass is not None and task.prompt.input_ids == self.prompt.input_ids:
            task.cache.full_pass = self.cache.full_pass
        return task


@dataclass
class MethodOutput:
    scores: np.ndarray  # one per source; nan = not scored
    info: dict[str, Any] = field(default_factory=dict)


class Effects(ABC):
    """What a method found per source, answering any target span of the task's response."""

    # Whether queries read the task's caches (its KV cache among them): an attribution
    # keeps the task's caches alive only for effects that need them.
    needs_task_cache: ClassVar[bool] = False

    @abstractmethod
    def query(self, target: tuple[int, int]) -> MethodOutput:
        """Scores of every source for the token slice [a, b) of the response."""


@dataclass
class TokenEffects(Effects):
    """Per-source, per-answer-token effects [S, r]; a span's score is their sum over the
    span's tokens (LOO: log-prob differences) or their mean (AT2: attention scores).
    With ``full_logprobs``, the info carries the span's full-context log-likelihood."""

    per_token: np.ndarray
    reduce: str = "sum"
    info: dict[str, Any] = field(default_factory=dict)
    full_logprobs: np.ndarray | None = None

    def query(self, target: tuple[int, int]) -> MethodOutput:
        a, b = target
        block = np.asarray(self.per_token, dtype=np.float64)[:, a:b]
        scores = block.sum(axis=1) if self.reduce == "sum" else block.mean(axis=1)
        info = dict(self.info)
        if self.full_logprobs is not None:
            info["full_ll"] = float(np.sum(self.full_logprobs[a:b]))
        return MethodOutput(scores, info)


class SpanEffects(Effects):
    """Effects computed per span by a function (over the task's shared caches), once per span.

    ``needs_task_cache``: False when ``compute`` holds everything it reads itself."""

    def __init__(self, compute: Callable[[tuple[int, int]], MethodOutput], needs_task_cache: bool = True) -> None:
        self._compute = compute
        self.needs_task_cache = needs_task_cache  # type: ignore[misc]
        self._done: dict[tuple[int, int], MethodOutput] = {}

    def query(self, target: tuple[int, int]) -> MethodOutput:
        key = (int(target[0]), int(target[1]))
        if key not in self._done:
            self._done[key] = self._compute(key)
        out = self._done[key]
        return MethodOutput(np.array(out.scores, dtype=np.float64), dict(out.info))


class AttributionMethod(ABC):
    """Base class: subclasses set ``name`` and implement :meth:`effects`."""

    name: ClassVar[str] = ""
    # Constructor options that stand in for each other (hierarchical's keep / keep_mass):
    # a caller who sets one of a group drops any shared default given for the others.
    option_groups: ClassVar[tuple[frozenset[str], ...]] = ()
    # The level at which this method ranks whole passages (prune-eval's rankings).
    ranking_level: ClassVar[str] = "passage"
    # What a score is: "nats" (a sum of log-probability changes over the span's tokens,
    # compared with floors per token) or "mean" (already a mean over the span's tokens).
    score_unit: ClassVar[str] = "mean"
    # Which calibrated null floor applies to its scores (a key of a model's
    # citations.policy.Calibration ``floors``); None: no floor is known for it.
    null_floor_key: ClassVar[str | None] = None
    # The name its results were cached under before it had this one (read back by the
    # runs that cache them); None: its name.
    cache_name: ClassVar[str | None] = None
    # The constructor option that runs over many examples set to a seed drawn per example
    # (prune-eval's random order); None: they leave its options alone.
    example_seed_option: ClassVar[str | None] = None
    # Info keys (a method's own) whose values count forward tokens run on other models
    # than the task's (a proxy's): totals add them to the task's own forward tokens.
    other_model_tokens: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def cached_as(cls, label: str) -> str:
        """``label`` (its name, maybe with options) as its cached results name it."""
        return (cls.cache_name or cls.name) + label[len(cls.name):] if label.startswith(cls.name) else label

    @classmethod
    def per_token_scores(cls) -> bool:
        """Whether its scores grow with the span's length (floors compare them per token)."""
        return cls.score_unit == "nats"

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """The keyword options its constructor takes."""
        params = inspect.signature(cls.__init__).parameters
        return frozenset(n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    @classmethod
    def needs_proxy(cls, options: Mapping[str, Any]) -> bool:
        """Whether, with these options, it needs a proxy model."""
        return False

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any], model: str | None = None) -> Mapping[str, Any]:
        """What, beside its name and these options, a cached result of it must match on
        ``model``: a method whose defaults (or shipped weights) changed names the new ones,
        so older results are not reused."""
        return {}

    @classmethod
    def passage_scores(cls, task: "AttributionTask", scores: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """One score per passage of ``task`` (higher = keep first) from a run at
        :attr:`ranking_level`; at passage level the sources are the passages."""
        return np.asarray(scores, dtype=np.float64)

    @abstractmethod
    def effects(self, task: AttributionTask) -> Effects:
        """What this method finds for every source of ``task``, for any span of its answer."""

    def score(self, task: AttributionTask) -> MethodOutput:
        """Scores of every source of ``task`` for its own target span."""
        return self.effects(task).query(task.target)

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
