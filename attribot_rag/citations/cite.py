"""``cite``: attribute every answer sentence to the sources and mark the ones it cites.

The answer is split into sentences; each is a *target span* (docs/architecture.md,
Target spans) explained by one attribution method over the sources (sentences of the
passages by default, so every citation carries a verbatim quote and its character span).
The method runs once on the whole answer and each sentence is a query of its effects
(:meth:`Attribution.per_sentence`). Which sources a sentence cites is the
:class:`~attribot_rag.citations.policy.CitationPolicy`'s decision: by default
(``evidence="supports"``) the method's top candidates are checked by the model itself
with each source alone, so a citation names a source that says what the sentence says.
References are numbered per passage, by first appearance; markers ``[n]`` go after the
sentence (before its final punctuation); a sentence nothing supports is flagged.

>>> cited = attributor.cite(question, passages)        # generate, then cite
>>> print(cited.text)              # "The hotel limit is $260 per night [1]."
>>> cited.references[0].passage_id, cited.citations[0].quote
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..errors import InputError
from ..grounding import span_gain
from ..methods import METHODS, AttributionMethod
from ..result import Attribution
from ..scoring import Response
from ..sources import coerce_passages, split_sentences
from .markers import insert_markers, is_truncated
from .policy import DEFAULT_POLICY, Calibration, Choice, CitationPolicy, SentenceEvidence, calibration_for
from .relevance import QuestionTerms, verdict
from .support import check_sources, joint_support, support
from .types import TRUNCATION_MARK, Citation, CitedAnswer, CitedSentence, Reference

if TYPE_CHECKING:
    from ..attributor import Attributor


@dataclass(frozen=True)
class ResolvedPolicy:
    """A policy made concrete for one method's scores on one model."""

    policy: CitationPolicy  # every "auto" replaced by a number or None
    per_token: bool  # floors compare the method's scores per sentence token
    calibration: Calibration | None

    @classmethod
    def of(cls, policy: CitationPolicy, method: str, model: str, calibration: Calibration | None = None) -> "ResolvedPolicy":
        """The method's declared score unit and floor family (its registered class), and
        the model's calibration (the one given, else the one shipped for the model)."""
        # a spec with options ("at2:weights=FILE") is its method's class
        method_cls = METHODS.get(method.split(":", 1)[0], AttributionMethod)
        cal = calibration if calibration is not None else calibration_for(model)
        resolved = policy.resolve(cal, method_cls.null_floor_key)
        return cls(resolved, method_cls.per_token_scores(), cal)

    def settings(self) -> dict[str, Any]:
        return {**self.policy.to_dict(), "calibration": None if self.calibration is None else self.calibration.describe()}

    def evidence(
        self, att: Attribution | None, whole: Attribution | None = None, reference: Sequence[int] | None = None
    ) -> SentenceEvidence:
        """What the policy reads for the sentence ``att`` explains (``whole``: the answer's
        attribution, whose task's caches every sentence shares)."""
        if att is None or att.task is None:
            return SentenceEvidence(None)
        task = _task_of(att, whole)
        if task is att.task:
            reference = None  # a sentence cited while streaming keeps the evidence it had then
        scores = [s.score for s in att.sources]
        gain = None
        if self.policy.evidence == "used" and self.policy.min_context_gain is not None:
            gain = span_gain(task, att.task.target)
        checked = joint = None
        to_check = self.policy.to_check(scores)
        if to_check:
            ref = self.policy.reference_sources(scores) if reference is None else reference
            checked = support(task, to_check, att.task.target, ref)
            pair = self.policy.joint_to_check(scores, checked)
            if pair is not None:
                joint = joint_support(task, *pair, att.task.target, ref)
        a, b = att.task.target
        reply = self._verdict(task.question, att.task.response, (a, b))
        terms = _terms(task) if self.policy.reads_question() else None
        passage_of = [s.source.passage_index for s in att.sources]
        return SentenceEvidence(scores, b - a, gain, checked, joint, terms, passage_of, reply)

    def _verdict(self, question: str, response: Response, target: tuple[int, int]) -> str | None:
        """Whether the sentence (tokens ``target``) is a yes/no verdict, where the policy
        cites verdicts by their own rule."""
        if not self.policy.cites_verdicts():
            return None
        (start, _), (_, end) = response.offsets[target[0]], response.offsets[target[1] - 1]
        return verdict(question, response.text[start:end])

    def explain_answer(
        self, evidence: list[SentenceEvidence], atts: Sequence[Attribution | None], whole: Attribution | None = None
    ) -> list[Choice]:
        """The policy's choice for every sentence. A sentence that falls back to what the
        model used (no single source states it) must clear the context-gain gate: its gain
        is measured then, only for such sentences (for a text answer, one full pass)."""
        chosen = self.policy.explain_answer(evidence, per_token=self.per_token)
        gate = self.policy.min_context_gain
        lazy = [k for k, choice in enumerate(chosen) if choice.kind == "used" and evidence[k].gain is None]
        if self.policy.evidence != "supports" or gate is None or not lazy:
            return chosen
        for k in lazy:
            task = _task_of(atts[k], whole)
            evidence[k] = dataclasses.replace(evidence[k], gain=span_gain(task, atts[k].task.target))  # type: ignore[union-attr]
        return self.policy.explain_answer(evidence, per_token=self.per_token)

    def check_all(self, whole: Attribution, sentences: Sequence[tuple[Any, Attribution | None]]) -> list[int]:
        """Run every sentence's support check in one batch (the answer's task keeps them);
        the reference sources, chosen on the whole answer's scores."""
        own = [att for _, att in sentences if att is not None and att.task is not None and whole.task is not None
               and att.task.response is whole.task.response]
        wanted = {i for att in own for i in self.policy.to_check([s.score for s in att.sources])}
        reference = self.policy.reference_sources([s.score for s in whole.sources]) if wanted else []
        if wanted and whole.task is not None:
            check_sources(whole.task, sorted(wanted | set(reference)))
        return reference


def _terms(task: Any) -> QuestionTerms:
    """The question's and the sources' terms, once per task (every sentence shares them)."""
    cached = getattr(task.cache, "question_terms", None)
    if cached is None:
        cached = QuestionTerms.of(task.question, task.passages, task.sources)
        task.cache.question_terms = cached
    return cached


def _task_of(att: Attribution, whole: Attribution | None) -> Any:
    """The task whose caches a sentence's evidence lives in: the whole answer's when the
    sentence is a query of it, else its own (a sentence attributed while streaming)."""
    shared = whole is not None and whole.task is not None and whole.task.response is att.task.response  # type: ignore[union-attr]
    return whole.task if shared else att.task  # type: ignore[union-attr]


def cite(
    attributor: "Attributor",
    question: str,
    passages: Iterable[Any],
    answer: str | Response | None = None,
    *,
    policy: CitationPolicy | None = None,
    method: str | AttributionMethod | None = None,
    level: str = "sentence",
    max_new_tokens: int | None = None,
    truncated: bool | None = None,
    calibration: Calibration | None = None,
    **options: Any,
) -> CitedAnswer:
    """Cite the sources each sentence of the answer rests on.

    ``answer`` None generates it with the attributor's model; a string (from any model) is
    cited as given. ``policy`` decides what a citation means and which sources qualify
    (default :class:`CitationPolicy`: ``evidence="supports"``); keyword options named like
    its fields change them for this call (``max_per_sentence=1``); other keywords go to the
    method. ``method`` None is the attributor's own. ``level``: "sentence" (quotes are single
    sentences) or "passage". ``truncated``: whether the answer was cut mid-sentence (None:
    told from the answer itself).
    """
    policy, method_options = split_options(policy or attributor.policy, options)
    ps = coerce_passages(passages)
    gen_s = 0.0
    if answer is None:
        t0 = time.perf_counter()
        answer = attributor.generate(question, ps, max_new_tokens=max_new_tokens)
        gen_s = time.perf_counter() - t0
    base = attributor.task(question, ps, answer, level=level)
    if not split_sentences(base.response.text):
        raise InputError("the answer has no sentence to cite")
    # One attribution of the whole answer; each sentence is a query of its effects.
    t0 = time.perf_counter()
    tokens0, passes0 = base.scorer.forward_tokens, base.scorer.forward_passes
    whole = attributor.run(base, method=method, **method_options)
    if truncated is None:
        truncated = looks_truncated(attributor, base.response)
    cal = calibration if calibration is not None else attributor.calibration
    cited = cite_sentences(whole, whole.per_sentence(), policy=policy, calibration=cal, truncated=truncated)
    cited.timings = {"generation_s": gen_s, "attribution_s": time.perf_counter() - t0}
    cited.forward_tokens = base.scorer.forward_tokens - tokens0
    cited.forward_passes = base.scorer.forward_passes - passes0
    return cited


def split_options(policy: CitationPolicy, options: dict[str, Any]) -> tuple[CitationPolicy, dict[str, Any]]:
    """Keyword options named like policy fields change the policy; the rest are the method's."""
    if not isinstance(policy, CitationPolicy):
        raise InputError(f"policy must be a CitationPolicy, got {type(policy).__name__}")
    names = set(CitationPolicy.field_names())
    changed = {k: v for k, v in options.items() if k in names}
    return policy.with_options(**changed), {k: v for k, v in options.items() if k not in names}


def looks_truncated(attributor: "Attributor", response: Response) -> bool:
    """A generated answer without its end-of-turn token stopped at the length limit; a
    text answer is taken as cut when its last sentence (after at least one other) has no
    sentence-ending punctuation."""
    spans = split_sentences(response.text)
    if response.generated:
        eos = attributor.lm.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {attributor.lm.tokenizer.eos_token_id}
        return bool(response.token_ids) and response.token_ids[-1] not in eos_ids and is_truncated(response.text, spans[-1])
    return len(spans) > 1 and is_truncated(response.text, spans[-1])


def cite_sentences(
    whole: Attribution,
    sentences: Sequence[tuple[tuple[int, int], Attribution | None]],
    *,
    policy: CitationPolicy = DEFAULT_POLICY,
    calibration: Calibration | None = None,
    truncated: bool = False,
) -> CitedAnswer:
    """Choose each sentence's citations under ``policy``, number the cited passages by
    first appearance and place the markers. ``truncated``: the last sentence was cut by
    the length limit (flagged, not cited)."""
    rp = ResolvedPolicy.of(policy, whole.method, whole.model, calibration)
    reference = rp.check_all(whole, sentences)
    evidence = [rp.evidence(att, whole, reference) for _, att in sentences]
    chosen = rp.explain_answer(evidence, [att for _, att in sentences], whole)
    numbers: dict[int, int] = {}  # passage index -> reference number
    cited: list[CitedSentence] = []
    for k, (span, att) in enumerate(sentences):
        cut = truncated and k == len(sentences) - 1
        choice = Choice([], None) if cut else chosen[k]
        cited.append(cited_sentence(k, span, whole, att, choice, numbers, evidence[k], cut))
    ps = whole.passages
    references = [
        Reference(num, ps[pi].id, pi, ps[pi].title, ps[pi].text)
        for pi, num in sorted(numbers.items(), key=lambda t: t[1])
    ]
    text = insert_markers(whole.answer, [(s.span, s.numbers) for s in cited])
    return CitedAnswer(
        question=whole.question,
        answer=whole.answer,
        text=text.rstrip() + TRUNCATION_MARK if truncated and cited else text,
        sentences=cited,
        references=references,
        passages=list(ps),
        method=whole.method,
        model=whole.model,
        level=whole.level,
        settings=rp.settings(),
    )


def cited_sentence(
    k: int,
    span: tuple[int, int],
    whole: Attribution,
    att: Attribution | None,
    choice: Choice,
    numbers: dict[int, int],
    evidence: SentenceEvidence,
    truncated: bool = False,
) -> CitedSentence:
    """Sentence ``k`` with its chosen sources as citations (``numbers``: passage index ->
    reference number, extended by first appearance); a bridge's evidence is "bridge", a
    companion's "companion", a verdict's sources' "question"."""
    a, b = span
    text = whole.answer[a:b]
    if att is None:
        return CitedSentence(k, text, span, (), {}, None, truncated)
    checked = evidence.support or {}
    cits = []
    for i in choice.sources:
        src = att.sources[i].source
        num = numbers.setdefault(src.passage_index, len(numbers) + 1)
        cits.append(
            Citation(
                number=num,
                sentence_index=k,
                sentence=text,
                sentence_span=span,
                source_id=src.id,
                passage_id=src.passage_id,
                passage_index=src.passage_index,
                title=whole.passages[src.passage_index].title,
                score=float(att.sources[i].score),  # type: ignore[arg-type]
                quote=src.text,
                quote_span=(src.start, src.end),
                support=checked.get(i),
                evidence="bridge" if i in choice.bridges else "companion" if i in choice.companions else choice.kind,
            )
        )
    return CitedSentence(
        k, text, span, tuple(cits), {s.id: s.score for s in att.sources}, att, truncated, evidence.gain
    )


__all__ = ["ResolvedPolicy", "cite", "cite_sentences", "cited_sentence", "looks_truncated", "split_options"]
