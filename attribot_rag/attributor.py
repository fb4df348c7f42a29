"""The public entry point: :class:`Attributor` (holds a model) and :func:`attribute`."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from .at2.capture import CaptureObserver
from .errors import InputError
from .layout import PromptLayout, check_fits
from .methods import AttributionMethod, AttributionTask, create_method
from .models import DEFAULT_MODEL, LoadedModel, get_model, load_model, model_lock

if TYPE_CHECKING:
    from .citations import Calibration, CitationPolicy, CitedAnswer
    from .pruning import PruneResult
    from .streaming import StreamEvent
from .result import Attribution
from .scoring import DEFAULT_BATCH_SIZE, Response, Scorer, response_from_text
from .sources import Passage, check_question, coerce_passages, make_sources

# The one answer-length default: the core, both integrations, the examples and the
# service use it (issue 17 item 5). 64 tokens hold the few sentences the default
# instruction asks for; a longer limit only adds decoding time to an answer that is cut.
DEFAULT_MAX_NEW_TOKENS = 64


# The default method everywhere, resolved per model: AT2 where weights ship for the model
# (its features come almost free with generation: one pass, no ablations), else exact
# LOO. The method that ran is the result's ``method`` (docs/methods.md).
AUTO_METHOD = "auto"


def resolve_method(model_name: str, method: Any) -> Any:
    """``"auto"``: "at2" when AT2 weights ship for ``model_name``, else "loo"; any other
    method as given."""
    if method != AUTO_METHOD:
        return method
    from .at2.weights import default_weights_path

    return "at2" if default_weights_path(model_name) is not None else "loo"


class Attributor:
    """Generates answers and attributes them to their context with one language model.

    >>> att = Attributor()          # qwen2.5-coder-1.5b when installed, else smollm2-135m
    >>> cited = att.cite("Who ...?", passages)                # a cited answer
    >>> result = att.attribute("Who ...?", passages)          # every source's score
    >>> result = att.attribute("Who ...?", passages, answer="...")  # explain a given answer

    The verbs (``attribute``, ``cite``, ``prune``, ``stream``) use the attributor's own
    ``method`` (default "auto"), ``policy`` (a :class:`~attribot_rag.citations.CitationPolicy`)
    and ``calibration`` unless a call names others.

    ``model`` is an alias, a Hugging Face id, a local folder, a :class:`LoadedModel` or a
    transformers model object (pass its ``tokenizer`` too). ``dtype`` is ``"auto"`` (bf16
    where the hardware runs it fast, else float32), ``"float32"`` or ``"bfloat16"``; the
    dtype used and why are in ``att.lm.metadata`` and in every result's ``info``. A name
    is loaded once per process (:func:`~attribot_rag.models.get_model`): attributors over
    the same name, device and dtype share one copy of the weights.
    """

    def __init__(
        self,
        model: str | LoadedModel | Any = DEFAULT_MODEL,
        tokenizer: Any | None = None,
        *,
        method: str | AttributionMethod = AUTO_METHOD,
        level: str = "passage",
        layout: PromptLayout | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        system_prompt: str | None = None,
        instruction: str | None = None,
        method_options: dict[str, Any] | None = None,
        dtype: Any = None,
        policy: "CitationPolicy | None" = None,
        calibration: "Calibration | str | None" = None,
    ) -> None:
        # dtype: "auto", "float32", "bfloat16" or a torch dtype; None = $ATTRIBOT_RAG_DTYPE
        # or "auto" (attribot_rag.precision). A model object is used in the dtype it has.
        # Shared by name: a second Attributor("qwen2.5-coder-1.5b") must not hold another 6 GB.
        named = (model is None or isinstance(model, str)) and tokenizer is None
        self.lm = get_model(model, dtype=dtype) if named else load_model(model, tokenizer, dtype=dtype)
        # Held while this model generates or scores (re-entrant; shared by every
        # Attributor over the same weights), so concurrent callers take turns.
        self.lock = model_lock(self.lm.model)
        if layout is None:
            kwargs = {}
            if system_prompt is not None:
                kwargs["system_prompt"] = system_prompt
            if instruction is not None:
                kwargs["instruction"] = instruction
            layout = PromptLayout(self.lm.tokenizer, **kwargs)
        self.layout = layout
        self.method = method
        self.level = level
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.method_options = dict(method_options or {})
        from .citations import DEFAULT_POLICY, Calibration, CitationPolicy

        if policy is not None and not isinstance(policy, CitationPolicy):
            raise InputError(f"policy must be a CitationPolicy, got {type(policy).__name__}")
        self.policy = policy or DEFAULT_POLICY
        # None: the calibration shipped for the model, if any (results say which was used)
        self.calibration = Calibration.load(calibration) if isinstance(calibration, (str, os.PathLike)) else calibration

    @property
    def model_name(self) -> str:
        return self.lm.name

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        question: str,
        passages: Iterable[Any],
        *,
        max_new_tokens: int | None = None,
        **generate_kwargs: Any,
    ) -> Response:
        """The model's (greedy) answer to the question over the passages."""
        question = check_question(question)
        ps = coerce_passages(passages)
        prompt = self.layout.render(question, ps)
        new = max_new_tokens or self.max_new_tokens
        check_fits(len(prompt), new, self.lm.context_window, self.lm.name)
        with self.lock:
            # AT2 features of this answer then come almost free from generation's own pass.
            generate_kwargs.setdefault("observers", [CaptureObserver()])
            return Scorer(self.lm).generate(prompt.input_ids, max_new_tokens=new, **generate_kwargs)

    # ------------------------------------------------------------------ attribution
    def task(
        self,
        question: str,
        passages: Iterable[Any],
        answer: str | Response,
        *,
        level: str | None = None,
        span: tuple[int, int] | None = None,
    ) -> AttributionTask:
        """The task a method scores; useful to run several methods on the same inputs."""
        question = check_question(question)
        ps = coerce_passages(passages)
        level = level or self.level
        sources = make_sources(ps, level)
        if isinstance(answer, Response):
            response = answer
        else:
            if answer is None or not isinstance(answer, str):
                raise InputError("the answer must be a non-empty string")
            response = response_from_text(self.lm.tokenizer, answer)
        target = response.token_slice(span)
        task = AttributionTask(
            lm=self.lm,
            layout=self.layout,
            scorer=Scorer(self.lm, self.batch_size),
            question=question,
            passages=ps,
            sources=sources,
            response=response,
            target=target,
            level=level,
        )
        task.prompt  # renders and checks the context window
        return task

    def attribute(
        self,
        question: str,
        passages: Iterable[Any],
        answer: str | Response | None = None,
        *,
        method: str | AttributionMethod | None = None,
        level: str | None = None,
        span: tuple[int, int] | None = None,
        max_new_tokens: int | None = None,
        **method_options: Any,
    ) -> Attribution:
        """Attribute ``answer`` (generated by the model when None) to the passages.

        ``span`` is a character range of the answer to explain (default: all of it).
        """
        gen_s = 0.0
        ps = coerce_passages(passages)
        if answer is None:
            t0 = time.perf_counter()
            answer = self.generate(question, ps, max_new_tokens=max_new_tokens)
            gen_s = time.perf_counter() - t0
        task = self.task(question, ps, answer, level=level, span=span)
        return self.run(task, method=method, generation_s=gen_s, **method_options)

    def run(
        self,
        task: AttributionTask,
        *,
        method: str | AttributionMethod | None = None,
        generation_s: float = 0.0,
        **method_options: Any,
    ) -> Attribution:
        """Run one method on a prepared task and package the result.

        The result keeps the method's effects: ``result.for_span(...)`` and
        ``result.per_sentence()`` answer other spans of the answer without a new run."""
        m = resolve_method(self.lm.name, method or self.method)
        opts = {**self.method_options, **method_options} if not isinstance(m, AttributionMethod) else {}
        impl = create_method(m, **opts)
        tokens0, passes0 = task.scorer.forward_tokens, task.scorer.forward_passes
        with self.lock:
            t0 = time.perf_counter()
            effects = impl.effects(task)
            result = Attribution.query(task, effects, method=impl.name, model=self.lm.name, generation_s=generation_s)
            result.timings["attribution_s"] = time.perf_counter() - t0
        result.forward_tokens = task.scorer.forward_tokens - tokens0
        result.forward_passes = task.scorer.forward_passes - passes0
        return result


    # ------------------------------------------------------------------ verbs
    def cite(self, question: str, passages: Iterable[Any], answer: str | Response | None = None, **kwargs: Any) -> "CitedAnswer":
        """The answer (generated when None) with citations: :func:`attribot_rag.citations.cite`."""
        from .citations import cite

        return cite(self, question, passages, answer, **kwargs)

    def prune(self, question: str, passages: Iterable[Any], **kwargs: Any) -> "PruneResult":
        """Keep the passages the answer relied on, answer again with them:
        :func:`attribot_rag.pruning.prune`."""
        from .pruning import prune

        return prune(self, question, passages, **kwargs)

    def stream(self, question: str, passages: Iterable[Any], **kwargs: Any) -> "Iterator[StreamEvent]":
        """The answer as it is written, each sentence's citations as it completes:
        :func:`attribot_rag.streaming.stream_cite`."""
        from .streaming import stream_cite

        return stream_cite(self, question, passages, **kwargs)


def attribute(
    question: str,
    passages: Sequence[Passage | dict | str],
    answer: str | None = None,
    *,
    method: str = AUTO_METHOD,
    level: str = "passage",
    model: str | LoadedModel | Any = DEFAULT_MODEL,
    span: tuple[int, int] | None = None,
    dtype: Any = None,
    **kwargs: Any,
) -> Attribution:
    """One-call attribution: load the model (cached per process), generate if needed, attribute."""
    return Attributor(model, method=method, level=level, dtype=dtype).attribute(
        question, passages, answer, span=span, **kwargs
    )
