"""Proxy models (AttriBoT): a second, usually smaller model scores the answer.

``proxy``: exact LOO (prefix-KV reuse + batching) run on the proxy model instead of the
target. The proxy gets its own prompt: a :class:`PromptLayout` on the proxy's tokenizer
and chat template (or its plain format, for a base model) with the *same* system prompt,
instruction and title setting as the target's layout. The answer text (whoever wrote it:
the target model, or an API model) is re-tokenized with the proxy's tokenizer, and the
target span (a token slice of the target's tokens) is carried over as a character span.
Sources are character spans of the passages, not tokens, so the proxy scores exactly the
same sources even when the two models come from different families.

Both run their ablations through the task's scorer (prefix-KV reuse) in batches of
ablations with close prefixes (:meth:`AttributionTask.loo_rows`), once per task: the
proxy's per-token LOO answers any span of the answer, mapped to the proxy's tokens by
its characters.

The answer is scored as text: an end-of-turn token the target generated is not part
of the proxy's response (the proxy did not produce it).

``method`` (default ``"loo"``) is what runs on the proxy's task: exact LOO, or any
registered method with ``method_options``, e.g. ``method="hierarchical"`` (the proxy's own
hierarchical LOO; its unscored sentences stay ``nan``).

The proxy is a loaded model or a name (an alias, a Hugging Face id or a local path, as
everywhere else). A name is loaded through :func:`~attribot_rag.models.get_model`, once per
process, in the target's dtype and on its device, when the method first scores.

``proxy-rescore``: a cheap first stage scores every source (the proxy's LOO by default;
any method, given by name or as an object); the ``rescore`` best sources are then
rescored with exact LOO on the target model (full context, the task's own prefix-KV
reuse and batching), and only those get a score. The others are ``nan`` (not scored);
the first-stage scores are in ``info["first_stage_scores"]``. Sources the first stage
left unscored are never rescored, so ``proxy_method="hierarchical"`` with a large
``rescore`` is AttriBoT's combination: the proxy's hierarchical LOO, then exact target
LOO of every sentence it kept.

How many are rescored can adapt to the answer (``rescore`` is then the cap):

* ``stop_ratio=r``: the candidates whose first-stage score is at least ``r`` times the
  best one's (at least one): a flat first stage gets more rescoring than a peaked one.
* ``stop_coverage=f``: rescore down the first stage's ranking, one source at a time,
  until the rescored sources' positive effects add up to ``f`` times the answer's context
  gain LL(C) - LL(no passages) (one extra pass of the short passage-free prompt): the
  answer's evidence is then found. An answer the passages do not help stops at one.

``tail="first_stage"`` ranks the sources that were not rescored after every rescored
one, in the first stage's order, instead of leaving them unscored: their scores are then
ranks (each below every rescored score and below zero, so never read as evidence), and
``info["rescored"]`` says which scores are exact effects. Rules chosen on dev data:
docs/methods.md.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import InputError
from ..layout import PromptLayout
from ..models import LoadedModel, dtype_info, get_model, load_model
from ..precision import NAMES as DTYPE_NAMES
from ..ranking import ranking
from ..scoring import DEFAULT_MAX_SPREAD, Scorer, response_from_text
from .base import METHODS
from .base import AttributionMethod, AttributionTask, Effects, MethodOutput, SpanEffects, create_method, register_method

DEFAULT_RESCORE = 5  # sources rescored on the target by proxy-rescore
TAILS = ("none", "first_stage")


def within_ratio(scores: np.ndarray, order: list[int], ratio: float) -> list[int]:
    """The sources of ``order`` (best first) scoring at least ``ratio`` times the best one
    (at least the best; all of them when the best is not positive): ``stop_ratio``'s rule."""
    if not order:
        return []
    best = scores[order[0]]
    return [i for i in order if best <= 0 or scores[i] >= ratio * best] or order[:1]


def target_char_span(task: AttributionTask, target: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Character span of the answer covered by the target tokens (default: the task's;
    None = all of the answer)."""
    a, b = target or task.target
    response = task.response
    if (a, b) == (0, len(response)):
        return None
    spans = [response.offsets[t] for t in range(a, b) if response.offsets[t][1] > response.offsets[t][0]]
    if not spans:
        raise InputError("the target span covers no answer text (only special tokens)")
    return min(s for s, _ in spans), max(e for _, e in spans)


def proxy_layout(task: AttributionTask, proxy: LoadedModel, use_chat_template: bool | None = None) -> PromptLayout:
    """The target's layout re-built on the proxy's tokenizer (same texts, proxy's template)."""
    src = task.layout
    return PromptLayout(
        proxy.tokenizer,
        system_prompt=src.system_prompt,
        instruction=src.instruction,
        use_chat_template=use_chat_template,
        show_titles=src.show_titles,
    )


def proxy_task(
    task: AttributionTask,
    proxy: LoadedModel,
    layout: PromptLayout | None = None,
    batch_size: int | None = None,
) -> AttributionTask:
    """The same question, passages, sources and answer text, for the proxy model."""
    layout = layout or proxy_layout(task, proxy)
    response = response_from_text(proxy.tokenizer, task.response.text)
    target = response.token_slice(target_char_span(task))
    ptask = AttributionTask(
        lm=proxy,
        layout=layout,
        scorer=Scorer(proxy, batch_size or task.scorer.batch_size),
        question=task.question,
        passages=list(task.passages),
        sources=list(task.sources),
        response=response,
        target=target,
        level=task.level,
    )
    ptask.prompt  # renders and checks the proxy's context window
    return ptask


def _as_proxy(proxy: Any) -> LoadedModel | str:
    """A loaded proxy, or the name (alias, Hugging Face id, local path) to load it by."""
    if proxy is None:
        raise InputError(
            "this method needs a proxy model: pass proxy=<model name or LoadedModel>, e.g. "
            "attributor.attribute(question, passages, method='proxy', proxy='smollm2-135m')"
        )
    if isinstance(proxy, LoadedModel):
        return proxy
    if isinstance(proxy, (str, os.PathLike)):
        name = os.fspath(proxy)
        if not name.strip():
            raise InputError("the proxy model name is empty: pass an alias, a Hugging Face id or a local path")
        return name
    if isinstance(proxy, tuple) and len(proxy) == 2:  # (transformers model, tokenizer)
        return load_model(proxy[0], proxy[1])
    raise InputError(
        "proxy must be a model name (alias, Hugging Face id or local path), a LoadedModel or a "
        f"(model, tokenizer) pair, got {type(proxy).__name__}"
    )


def load_proxy(name: str, target: LoadedModel) -> LoadedModel:
    """The proxy named ``name``, from the process-wide model cache (loaded once), in the
    target's dtype and on its device, so that both models score in the same precision."""
    dtype = dtype_info(target)["model_dtype"]
    if dtype not in DTYPE_NAMES:
        raise InputError(
            f"proxy {name!r}: the target model runs in {dtype}, a dtype attribot-rag does not load "
            "models in; load the proxy yourself and pass the LoadedModel"
        )
    device = target.device
    return get_model(name, device=None if device.type == "cpu" else str(device), dtype=dtype)


@register_method
class Proxy(AttributionMethod):
    name = "proxy"
    score_unit = "nats"  # log-probability changes summed over the span
    null_floor_key = "nats_per_token"
    other_model_tokens = ("proxy_forward_tokens",)  # run on the proxy, not the task's model

    def __init__(
        self,
        proxy: LoadedModel | str | os.PathLike | None = None,
        layout: PromptLayout | None = None,
        use_chat_template: bool | None = None,
        batch_size: int | None = None,
        max_spread: int | str | None = DEFAULT_MAX_SPREAD,
        method: str | AttributionMethod = "loo",
        method_options: Mapping[str, Any] | None = None,
    ) -> None:
        # A name is loaded when it first scores: its dtype and device follow the target's.
        self.proxy = _as_proxy(proxy)
        # What runs on the proxy: exact LOO (its own fast path below), or any method.
        self.method = None if method == "loo" and not method_options else create_method(method, **dict(method_options or {}))
        if layout is not None and (isinstance(self.proxy, str) or layout.tokenizer is not self.proxy.tokenizer):
            raise InputError("proxy: the layout must be built on the proxy model's tokenizer (pass the loaded proxy)")
        self.layout = layout
        self.use_chat_template = use_chat_template
        self.batch_size = batch_size
        self.max_spread = max_spread

    @classmethod
    def needs_proxy(cls, options: Mapping[str, Any]) -> bool:
        return True

    def __repr__(self) -> str:
        name = self.proxy if isinstance(self.proxy, str) else self.proxy.name
        method = "" if self.method is None else f", method={self.method!r}"
        return f"Proxy(proxy={name!r}{method})"

    def proxy_model(self, target: LoadedModel) -> LoadedModel:
        """The loaded proxy; a name is looked up per target (its dtype and device follow the
        target's), and the process-wide model cache loads it only once."""
        return load_proxy(self.proxy, target) if isinstance(self.proxy, str) else self.proxy

    def effects(self, task: AttributionTask) -> Effects:
        proxy = self.proxy_model(task.lm)
        layout = self.layout or proxy_layout(task, proxy, self.use_chat_template)
        ptask = proxy_task(task, proxy, layout, self.batch_size)
        answer, proxy_answer = task.without_cache(), ptask.response  # no KV cache kept
        on_proxy = self._proxy_effects(ptask)

        def for_span(target: tuple[int, int]) -> MethodOutput:
            # the span as characters, then as the proxy's own tokens
            a, b = proxy_answer.token_slice(target_char_span(answer, target))
            out = on_proxy((a, b))
            info = {
                **out.info,
                "proxy_model": proxy.name,
                "proxy_model_dtype": dtype_info(proxy)["model_dtype"],
                "proxy_prompt_tokens": len(ptask.prompt),
                # read after the span's work: a method other than LOO may score lazily
                "proxy_forward_tokens": ptask.scorer.forward_tokens,
                "proxy_forward_passes": ptask.scorer.forward_passes,
                "proxy_target_tokens": [a, b],
            }
            return MethodOutput(out.scores, info)

        return SpanEffects(for_span, needs_task_cache=False)

    def _proxy_effects(self, ptask: AttributionTask) -> Callable[[tuple[int, int]], MethodOutput]:
        """Scores on the proxy's task for a span of the proxy's tokens."""
        if self.method is not None:
            effects = self.method.effects(ptask)
            return lambda span: _with_method_info(effects.query(span), self.method.name)
        rows = ptask.loo_rows([s.index for s in ptask.sources], self.batch_size, self.max_spread)
        full_lp = ptask.full_pass().logprobs
        return lambda span: MethodOutput(
            rows[:, span[0] : span[1]].sum(axis=1), {"proxy_full_ll": float(np.sum(full_lp[span[0] : span[1]]))}
        )


def _with_method_info(out: MethodOutput, method: str) -> MethodOutput:
    """The proxy method's output, its info kept under ``proxy_method_info``."""
    return MethodOutput(out.scores, {"proxy_method": method, "proxy_method_info": out.info})


@register_method
class ProxyRescore(AttributionMethod):
    name = "proxy-rescore"
    score_unit = "nats"  # log-probability changes summed over the span
    null_floor_key = "nats_per_token"
    other_model_tokens = ("proxy_forward_tokens",)  # its proxy first stage's, when it has one

    def __init__(
        self,
        proxy: LoadedModel | str | os.PathLike | None = None,
        rescore: int = DEFAULT_RESCORE,
        first_stage: str | AttributionMethod | None = None,
        first_stage_options: dict[str, Any] | None = None,
        batch_size: int | None = None,
        max_spread: int | str | None = DEFAULT_MAX_SPREAD,
        proxy_method: str = "loo",
        stop_ratio: float | None = None,
        stop_coverage: float | None = None,
        tail: str = "none",
    ) -> None:
        if not isinstance(rescore, (int, np.integer)) or rescore < 1:
            raise InputError(f"proxy-rescore: rescore must be a positive integer, got {rescore!r}")
        if stop_ratio is not None and stop_coverage is not None:
            raise InputError("proxy-rescore: give stop_ratio or stop_coverage, not both")
        if stop_ratio is not None and not (0.0 < float(stop_ratio) <= 1.0):
            raise InputError(f"proxy-rescore: stop_ratio must be in (0, 1], got {stop_ratio!r}")
        if stop_coverage is not None and not float(stop_coverage) > 0.0:
            raise InputError(f"proxy-rescore: stop_coverage must be positive, got {stop_coverage!r}")
        if tail not in TAILS:
            raise InputError(f"proxy-rescore: tail must be one of {', '.join(TAILS)}, got {tail!r}")
        self.rescore = int(rescore)
        self.stop_ratio = float(stop_ratio) if stop_ratio is not None else None
        self.stop_coverage = float(stop_coverage) if stop_coverage is not None else None
        self.tail = tail
        self.batch_size = batch_size
        self.max_spread = max_spread
        opts = dict(first_stage_options or {})
        if first_stage is None or first_stage == "proxy":
            opts.setdefault("batch_size", batch_size)
            opts.setdefault("max_spread", max_spread)
            opts.setdefault("method", proxy_method)
            self.first_stage = Proxy(proxy=proxy, **opts)
        elif proxy_method != "loo":
            raise InputError(f"proxy-rescore: proxy_method={proxy_method!r} needs the proxy first stage, not {first_stage!r}")
        else:
            self.first_stage = create_method(first_stage, **opts)

    @classmethod
    def needs_proxy(cls, options: Mapping[str, Any]) -> bool:
        # another first stage (e.g. first_stage=at2) runs on the target alone
        return options.get("first_stage") in (None, "proxy")

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any], model: str | None = None) -> Mapping[str, Any]:
        # a named first stage's results (e.g. AT2's, with the weights that ship) shape its own
        first = options.get("first_stage")
        if isinstance(first, str) and first in METHODS:
            return dict(METHODS[first].cache_identity(options.get("first_stage_options") or {}, model))
        return {}

    def __repr__(self) -> str:
        rule = (f", stop_ratio={self.stop_ratio}" if self.stop_ratio is not None
                else f", stop_coverage={self.stop_coverage}" if self.stop_coverage is not None else "")
        tail = f", tail={self.tail!r}" if self.tail != "none" else ""
        return f"ProxyRescore(first_stage={self.first_stage!r}, rescore={self.rescore}{rule}{tail})"

    def effects(self, task: AttributionTask) -> Effects:
        first = self.first_stage.effects(task)  # once; each span reads it
        return SpanEffects(lambda t: self._rescore(task.for_target(t), first.query(t)))

    def _rescore(self, task: AttributionTask, first: MethodOutput) -> MethodOutput:
        stage1 = np.asarray(first.scores, dtype=np.float64)
        if len(stage1) != len(task.sources):
            raise RuntimeError(
                f"first stage {self.first_stage.name!r} returned {len(stage1)} scores for {len(task.sources)} sources"
            )
        order = ranking(stage1)
        full_ll = task.target_ll(task.full_pass().logprobs)
        info: dict[str, Any] = {"full_ll": full_ll}
        chosen, exact = self._choose(task, stage1, order, info)
        scores = np.full(len(task.sources), np.nan, dtype=np.float64)
        scores[chosen] = exact
        if self.tail == "first_stage":
            rescored = set(chosen)
            rest = [i for i in order if i not in rescored]
            floor = min(0.0, float(np.min(exact))) if chosen else 0.0
            scores[rest] = floor - 1.0 - np.arange(len(rest)) / max(1, len(rest))
        info.update({
            "first_stage": self.first_stage.name,
            "first_stage_scores": stage1,
            "first_stage_info": first.info,
            "rescored": sorted(chosen),
            "tail": self.tail,
        })
        for key in ("proxy_forward_tokens", "proxy_forward_passes", "proxy_model"):
            if key in first.info:
                info[key] = first.info[key]
        return MethodOutput(scores, info)

    def _choose(
        self, task: AttributionTask, stage1: np.ndarray, order: list[int], info: dict[str, Any]
    ) -> tuple[list[int], np.ndarray]:
        """The sources rescored (first-stage order) and their exact LOO scores, by the rule."""
        cap = order[: self.rescore]
        if not cap:
            return [], np.zeros(0)
        if self.stop_coverage is None:
            if self.stop_ratio is not None:
                cap = within_ratio(stage1, cap, self.stop_ratio)
            return cap, task.loo_scores(cap, self.batch_size, self.max_spread)
        gain = task.target_ll(task.context_gain())
        info["context_gain"] = gain
        chosen: list[int] = []
        found = 0.0
        for i in cap:  # one at a time: each source's row is computed once, whatever comes next
            chosen.append(i)
            found += max(0.0, float(task.loo_scores([i], self.batch_size, self.max_spread)[0]))
            if gain <= 0 or found >= self.stop_coverage * gain:
                break
        info["coverage"] = found / gain if gain > 0 else None
        return chosen, task.loo_scores(chosen, self.batch_size, self.max_spread)
