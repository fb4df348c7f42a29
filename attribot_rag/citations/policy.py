"""One citation policy: which sources an answer sentence cites, and on what evidence.

A reader of citations asks *which passage supports this sentence* (``evidence="supports"``,
corroborative: the source says what the sentence says, whether or not the model needed
it); an auditor or a pruner asks *which passages did the model rely on*
(``evidence="used"``, contributive: removing the source changes the answer). Both start
from one attribution method's scores per source (the ranker):

* ``used``: a source is cited when its score is positive (or >= ``threshold``), at least
  ``relative_threshold`` x the sentence's best, at least ``answer_relative_threshold`` x
  the best of the whole answer, and above the method's calibrated null floor; a sentence
  whose context gain is below ``min_context_gain`` cites nothing.
* ``supports``: the ranker's top ``candidates`` sources are checked by the same model
  (:mod:`attribot_rag.citations.support`: the sentence after the candidate alone,
  against after the ranker's ``references`` lowest-scored sources); a candidate is cited
  when its support is at least ``min_support`` nats per token, at least
  ``support_relative`` x the best candidate's and at least ``answer_relative_threshold``
  x the best support of any sentence of the answer. With ``joint_gain``, each other
  candidate is also checked *together with* the best-supported one, and cited beside it
  when the pair supports the sentence by at least ``joint_gain`` nats per token more than
  the best alone: the second fact a multi-hop answer or a comparison rests on, which
  says nothing about the sentence on its own. A sentence no candidate supports, alone or
  in a pair, falls back to the contributive rules below (``fallback``); each citation
  says which evidence it rests on.

A sentence that cites something may also cite a *bridge* (``bridge_relevance``): among
the ranker's top ``bridge_candidates``, a source from another passage than the
sentence's citations that shares question terms they do not contain
(:mod:`attribot_rag.citations.relevance`), the link from what was asked to the fact that
answers it (a multi-hop question's first hop, a comparison's other side), which says
nothing about the answer sentence on its own. At most ``max_per_sentence`` are kept, best
first, bridges last. A yes/no *verdict* ("The answer is no.") states nothing a source
says; it cites the sources most relevant to the question (``verdict_relevance``), each
from another passage: the facts a comparison's verdict rests on. Last come up to
``companions`` further facts the model's fitted companion model
(:mod:`attribot_rag.citations.companions`, in its calibration) gives a probability of at
least ``companion_probability`` of being evidence too. The values "auto" are read from the
model's :class:`Calibration` (fitted on dev data, shipped beside its AT2 weights, or made
by ``attribot-rag calibrate``); without one, documented generic values apply and the
result says the model is uncalibrated. See docs/architecture.md, Citations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from ..errors import InputError
from .companions import CompanionModel, candidate_features, first_sentences
from .relevance import BARE, CHOICE, QuestionTerms

EVIDENCE_KINDS = ("supports", "used")
AUTO = "auto"
# Used where a model has no calibration (the result says so): the context-gain gate and
# the least support, in nats per answer-sentence token, that count as evidence.
GENERIC_MIN_CONTEXT_GAIN = 0.05
GENERIC_MIN_SUPPORT = 0.05
CALIBRATION_SUFFIX = ".calibration.json"


@dataclass(frozen=True)
class Calibration:
    """What a model's citations need that only data can tell: each method family's null
    floor (keyed by the family a method class declares, ``null_floor_key``), the
    context-gain gate and the least support."""

    model: str
    fitted_on: str
    floors: Mapping[str, float] = field(default_factory=dict)
    min_context_gain: float | None = GENERIC_MIN_CONTEXT_GAIN
    min_support: float | None = GENERIC_MIN_SUPPORT
    # P(a further source is a supporting fact too), for companions (None: not fitted)
    companion: CompanionModel | None = None
    path: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                model=str(data["model"]),
                fitted_on=str(data["fitted_on"]),
                floors={str(k): float(v) for k, v in dict(data.get("floors", {})).items()},
                min_context_gain=_number_or_none(data.get("min_context_gain", GENERIC_MIN_CONTEXT_GAIN)),
                min_support=_number_or_none(data.get("min_support", GENERIC_MIN_SUPPORT)),
                companion=CompanionModel.from_dict(data["companion"]) if data.get("companion") else None,
                path=str(path),
            )
        except FileNotFoundError:
            raise InputError(f"no calibration file at {str(path)!r}") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, InputError) as exc:
            raise InputError(f"calibration file {str(path)!r} is malformed: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "path"}
        data["companion"] = self.companion.to_dict() if self.companion else None
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "fitted_on": self.fitted_on, "file": Path(self.path).name if self.path else None}


def _number_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number or null, got {value!r}")
    return float(value)


def calibration_path(weights_path: Path) -> Path:
    """Where the calibration shipped beside a model's AT2 weights lives."""
    return weights_path.with_name(weights_path.name.removesuffix(".safetensors") + CALIBRATION_SUFFIX)


def calibration_for(model_name: str) -> Calibration | None:
    """The calibration shipped for this model (beside its AT2 weights), or None."""
    from ..at2.weights import default_weights_path

    weights = default_weights_path(model_name)
    if weights is None or not calibration_path(weights).exists():
        return None
    return Calibration.load(calibration_path(weights))


@dataclass(frozen=True)
class SentenceEvidence:
    """What a policy reads for one answer sentence: the ranker's score per source (None:
    the sentence was not attributed), its token count, its context gain and the support
    of the sources checked so far (source index -> nats per token), and of pairs."""

    scores: Sequence[float | None] | None
    tokens: int = 1
    gain: float | None = None
    support: Mapping[int, float] | None = None
    # companion source -> support of the best-supported candidate and it kept together
    joint: Mapping[int, float] | None = None
    # the question's and the sources' terms, and each source's passage index (None: not
    # computed, no bridge is cited)
    terms: QuestionTerms | None = None
    passage_of: Sequence[int] | None = None
    # the sentence says yes or no to a yes/no question: "bare" (nothing else) or
    # "restating" (it repeats the question's terms); "choice": it answers a question
    # offering alternatives ("X or Y?"); None otherwise (relevance.verdict)
    verdict: str | None = None


class Choice(NamedTuple):
    """One sentence's citations: the sources (best first, bridges last), the evidence the
    first rest on ("supports", "used", "question" for a verdict's, or None when nothing is
    cited) and which of the sources are bridges, and which companions."""

    sources: list[int]
    kind: str | None
    bridges: tuple[int, ...] = ()
    companions: tuple[int, ...] = ()


@dataclass(frozen=True)
class CitationPolicy:
    """How citations are chosen; frozen, shared by ``cite``, streaming, the service, both
    integrations and batch. ``dataclasses.replace(policy, ...)`` or :meth:`with_options`
    makes a variant."""

    evidence: str = "supports"
    relative_threshold: float | None = 0.5
    # 0.3: filler after a claim ("Thank you for asking.") gets up to about 0.2x the claim's
    # support from a small model's check against one reference; no value from 0.1 to 0.3
    # changed a citation on the choice split (BENCHMARKS.md, "Bridges")
    answer_relative_threshold: float | None = 0.3
    # 3: the one checked candidate, a bridge and a companion (BENCHMARKS.md, "Companions")
    max_per_sentence: int | None = 3
    threshold: float | None = None
    null_floor: float | str | None = AUTO
    min_context_gain: float | str | None = AUTO
    # chosen on the choice split of the citation benchmark (HotpotQA dev 20-42, NQ-open
    # lines 1-24, each AT2 set with its own calibration; BENCHMARKS.md, "Citations against
    # gold evidence"): the best mean over datasets and answer modes of F1(precision,
    # recall) minus the uncited share
    candidates: int = 1
    min_support: float | str | None = AUTO
    support_relative: float | None = 0.3
    references: int = 1
    # supports: a further candidate is cited beside the best-supported one when the two
    # together support the sentence by this many nats per token more (None: single
    # sources only; costs one short pass per other candidate)
    joint_gain: float | None = None
    # supports: a sentence no source states (a comparison's "yes", a conclusion drawn from
    # two facts) cites what the model relied on, by the contributive rules
    fallback: bool = True
    # a cited sentence also cites, among the ranker's top ``bridge_candidates``, sources of
    # other passages whose TF-IDF similarity with the question, through terms its
    # citations do not contain, is at least this (None: no bridges).
    # Chosen on the choice split with the fields above (BENCHMARKS.md, "Bridges"), then
    # re-chosen with the companion probability, cross-validated ("Choices", "Leads").
    bridge_relevance: float | None = 0.3
    bridge_candidates: int = 5
    # supports: a yes/no verdict cites, instead (a bare "The answer is no.") or when nothing
    # else is cited (a verdict restating the question), the sources most relevant to the
    # question: each from another passage, adding at least this much relevance through
    # question terms the ones before lack (None: a verdict is cited like any sentence).
    # Chosen on the choice split's yes/no questions (BENCHMARKS.md, "Verdicts").
    verdict_relevance: float | None = 0.1
    verdict_sources: int = 2  # a verdict judges what the question names: one per side
    # supports: a cited sentence also cites up to ``companions`` further sources whose
    # probability of being a supporting fact, by the model's fitted companion model, is at
    # least ``companion_probability`` ("auto": the calibration's model; None: none).
    # Chosen on the choice split, cross-validated, with bridge_relevance: the setting with
    # the most room to the precision and recall targets once the gap cross-validation
    # showed against examples read after the rules were written is taken off ("Leads").
    companions: int = 1
    companion_probability: float | None = 0.45
    companion_model: CompanionModel | str | None = AUTO

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE_KINDS:
            raise InputError(f"evidence must be one of {', '.join(EVIDENCE_KINDS)}, got {self.evidence!r}")
        for name in ("null_floor", "min_context_gain", "min_support", "threshold", "joint_gain"):
            val = getattr(self, name)
            allowed = val is None or (val == AUTO and name not in ("threshold", "joint_gain"))
            if not allowed and (isinstance(val, bool) or not isinstance(val, (int, float))):
                auto = ", " + repr(AUTO) if name not in ("threshold", "joint_gain") else ""
                raise InputError(f"{name} must be a number{auto} or None, got {val!r}")
        for name in ("relative_threshold", "answer_relative_threshold", "support_relative", "bridge_relevance",
                     "verdict_relevance", "companion_probability"):
            val = getattr(self, name)
            if val is not None and not 0 <= val <= 1:
                raise InputError(f"{name} must be in [0, 1] (or None), got {val}")
        if self.max_per_sentence is not None and self.max_per_sentence < 1:
            raise InputError(f"max_per_sentence must be >= 1 (or None), got {self.max_per_sentence}")
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise InputError(f"candidates must be a positive integer, got {self.candidates!r}")
        if not isinstance(self.bridge_candidates, int) or self.bridge_candidates < 1:
            raise InputError(f"bridge_candidates must be a positive integer, got {self.bridge_candidates!r}")
        if not isinstance(self.verdict_sources, int) or self.verdict_sources < 1:
            raise InputError(f"verdict_sources must be a positive integer, got {self.verdict_sources!r}")
        if not isinstance(self.companions, int) or self.companions < 0:
            raise InputError(f"companions must be an integer >= 0, got {self.companions!r}")
        if not (self.companion_model in (AUTO, None) or isinstance(self.companion_model, CompanionModel)):
            raise InputError(f"companion_model must be 'auto', None or a CompanionModel, got {self.companion_model!r}")
        if not isinstance(self.references, int) or self.references < 0:
            raise InputError(f"references must be an integer >= 0, got {self.references!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_options(self, **options: Any) -> "CitationPolicy":
        """This policy with some fields changed (unknown names are an error)."""
        unknown = sorted(set(options) - set(self.field_names()))
        if unknown:
            raise InputError(f"unknown citation setting(s) {', '.join(unknown)}; a policy has {', '.join(self.field_names())}")
        return dataclasses.replace(self, **options) if options else self

    def resolve(self, calibration: Calibration | None, floor_key: str | None) -> "CitationPolicy":
        """The policy with every "auto" replaced by the calibration's value (or the
        generic one without a calibration; a floor needs one)."""
        cal = calibration
        return dataclasses.replace(
            self,
            null_floor=(cal.floors.get(floor_key) if cal and floor_key else None) if self.null_floor == AUTO else self.null_floor,
            min_context_gain=(cal.min_context_gain if cal else GENERIC_MIN_CONTEXT_GAIN)
            if self.min_context_gain == AUTO
            else self.min_context_gain,
            min_support=(cal.min_support if cal else GENERIC_MIN_SUPPORT) if self.min_support == AUTO else self.min_support,
            companion_model=(cal.companion if cal else None) if self.companion_model == AUTO else self.companion_model,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ----------------------------------------------------------------- what to verify
    def to_check(self, scores: Sequence[float | None] | None) -> list[int]:
        """The sources whose support must be known to choose (``supports`` only)."""
        if self.evidence != "supports" or scores is None:
            return []
        return _ranked(scores)[: self.candidates]

    def joint_to_check(self, scores: Sequence[float | None] | None, support: Mapping[int, float] | None) -> tuple[int, list[int]] | None:
        """The best-supported candidate and the other candidates to check together with it
        (``supports`` with ``joint_gain`` only, once the candidates' support is known)."""
        if self.evidence != "supports" or self.joint_gain is None or scores is None or not support:
            return None
        checked = _checked(support)
        cands = [i for i in self.to_check(scores) if i in checked]
        if len(cands) < 2:
            return None
        best = max(cands, key=lambda i: (checked[i], -i))
        return best, [i for i in cands if i != best]

    def reference_sources(self, scores: Sequence[float | None] | None) -> list[int]:
        """The sources the support check contrasts with: the ranker's ``references``
        lowest-scored over the whole answer (``supports`` only; none: no passage)."""
        if self.evidence != "supports" or scores is None or not self.references:
            return []
        return _ranked(scores)[::-1][: self.references]

    # ----------------------------------------------------------------- choosing
    def answer_floor(self, sentences: Sequence[SentenceEvidence]) -> "AnswerFloors":
        """``answer_relative_threshold`` x the best score of any sentence, and x the best
        support of any sentence: a sentence whose best evidence is far weaker than the rest
        of the answer's ("Thank you for asking.") cites nothing."""
        rel = self.answer_relative_threshold
        tops = (
            max((v for ev in sentences for v in _valid(ev.scores)), default=None),
            max((v for ev in sentences for v in _valid(list((ev.support or {}).values()))), default=None),
        )
        score, support = (None if rel is None or t is None or t <= 0 else rel * t for t in tops)
        return AnswerFloors(score, support)

    def choose(self, sentences: Sequence[SentenceEvidence], *, per_token: bool = False) -> list[list[int]]:
        """Per sentence, the indices of the sources to cite, best first (a resolved policy)."""
        return [choice.sources for choice in self.explain_answer(sentences, per_token=per_token)]

    def explain_answer(self, sentences: Sequence[SentenceEvidence], *, per_token: bool = False) -> list[Choice]:
        """:meth:`explain` for every sentence of an answer (its floors from all of them)."""
        floor = self.answer_floor(sentences)
        return _companions_once([self.explain(ev, answer_floor=floor, per_token=per_token) for ev in sentences])

    def choose_sentence(
        self, ev: SentenceEvidence, *, answer_floor: "AnswerFloors | float | None" = None, per_token: bool = False
    ) -> list[int]:
        """One sentence's citations: the whole answer's rule, with the answer floors known so
        far (a streamed sentence). A number as ``answer_floor`` is the floor of the policy's
        own evidence."""
        return self.explain(ev, answer_floor=answer_floor, per_token=per_token).sources

    def explain(
        self, ev: SentenceEvidence, *, answer_floor: "AnswerFloors | float | None" = None, per_token: bool = False
    ) -> Choice:
        """The sentence's citations and the evidence they rest on: "supports" (a source says
        it), "used" (the model relied on it: the contributive rules, or the ``fallback`` of
        ``supports`` when no single source states the sentence), None when nothing is cited;
        and the bridges added to them."""
        if ev.scores is None:
            return Choice([], None)
        if ev.verdict in (BARE, CHOICE) and self.cites_verdicts():
            question = self._question_sources(ev)  # no source says "no" or "older": what the question is about
            if question or ev.verdict == BARE:  # a choice between fewer than two named passages: the usual rules
                return Choice(question, "question" if question else None)
        floors = _floors(answer_floor, self.evidence)
        chosen, kind = [], None
        if self.evidence == "supports":
            chosen, kind = self._supported(ev, floors.support), "supports"
        if not chosen and (self.evidence == "used" or self.fallback):
            chosen, kind = self._used(ev, floors.score, per_token), "used"
        chosen = chosen[: self.max_per_sentence] if self.max_per_sentence is not None else chosen
        if not chosen:
            question = self._question_sources(ev)  # a restating verdict nothing else supports
            return Choice(question, "question") if question else Choice([], None)
        bridges = self._bridges(ev, chosen)
        companions = self._companions(ev, [*chosen, *bridges])
        return Choice([*chosen, *bridges, *companions], kind, tuple(bridges), tuple(companions))

    def cites_verdicts(self) -> bool:
        """Whether a yes/no verdict is cited by its own rule (``supports`` with ``verdict_relevance``)."""
        return self.evidence == "supports" and self.verdict_relevance is not None

    def reads_question(self) -> bool:
        """Whether choosing reads the question's terms (bridges, verdicts or companions)."""
        return self.evidence == "supports" and (
            self.bridge_relevance is not None or self.verdict_relevance is not None or self.companion_probability is not None
        )

    def _companions(self, ev: SentenceEvidence, chosen: list[int]) -> list[int]:
        model = self.companion_model
        if (self.evidence != "supports" or not isinstance(model, CompanionModel) or self.companion_probability is None
                or ev.terms is None or ev.passage_of is None or ev.scores is None):
            return []
        room = min(self.companions, (len(ev.scores) if self.max_per_sentence is None else self.max_per_sentence) - len(chosen))
        if room <= 0:
            return []
        candidates, features = candidate_features(ev.scores, chosen, ev.terms, ev.passage_of)
        if not candidates:
            return []
        p = model.probability(features)
        best = sorted(range(len(candidates)), key=lambda j: (-p[j], candidates[j]))[:room]
        return [candidates[j] for j in best if p[j] >= self.companion_probability]

    def bridges_to_check(self, scores: Sequence[float | None] | None) -> list[int]:
        """The sources whose relevance to the question a bridge is chosen from (``supports``
        only: a bridge is cited for a reader, it is not evidence the model used it alone)."""
        if self.evidence != "supports" or self.bridge_relevance is None or scores is None:
            return []
        return _ranked(scores)[: self.bridge_candidates]

    def _bridges(self, ev: SentenceEvidence, chosen: list[int]) -> list[int]:
        room = len(ev.scores or []) if self.max_per_sentence is None else self.max_per_sentence - len(chosen)
        if room <= 0 or ev.terms is None or ev.passage_of is None or self.bridge_relevance is None:
            return []
        if not any(ev.terms.relevance(i) > 0 for i in chosen):
            return []  # citations that share no term with the question: the sentence is not its answer
        cited, covered, found = {ev.passage_of[i] for i in chosen}, list(chosen), []
        for i in self.bridges_to_check(ev.scores):
            if len(found) < room and ev.passage_of[i] not in cited and ev.terms.added(i, covered) >= self.bridge_relevance:
                found.append(i)
                covered.append(i)  # a further bridge must add terms this one does not
        return found

    def _question_sources(self, ev: SentenceEvidence) -> list[int]:
        """A verdict's sources: the most question-relevant source, then from each further
        passage the source adding most relevance through question terms not yet covered,
        while that is at least ``verdict_relevance``, up to ``verdict_sources``
        (``supports`` only). Passages whose subject the question names come first: "Are X
        and Y both American?" is judged on X's and Y's, not on an album named after X. A
        choice ("Which is older, X or Y?") is judged on the named passages only, and needs
        two of them. From a named passage its first sentence is cited, the one that
        introduces the subject the question names (where the dates, places and kinds a
        comparison weighs usually are) rather than a later one that repeats its terms."""
        passage_of, terms = ev.passage_of, ev.terms
        if not self.cites_verdicts() or ev.verdict is None or terms is None or passage_of is None:
            return []
        named = {p for p in set(passage_of) if terms.question_names(p)}
        if ev.verdict == CHOICE and len(named) < 2:
            return []
        allowed = named if ev.verdict == CHOICE else set(passage_of)
        lead = first_sentences(passage_of)
        limit = self.verdict_sources if self.max_per_sentence is None else min(self.verdict_sources, self.max_per_sentence)
        chosen: list[int] = []
        while len(chosen) < limit:
            cited = {passage_of[j] for j in chosen}
            added = terms.added_all(chosen)  # one pass over the sources per round
            least = float(self.verdict_relevance)  # type: ignore[arg-type]
            enough = [i for i in range(len(passage_of))
                      if passage_of[i] in allowed and passage_of[i] not in cited and added[i] >= least]
            best = max(enough, key=lambda i: (passage_of[i] in named, added[i], -i), default=None)
            if best is None:
                break
            chosen.append(lead[passage_of[best]] if passage_of[best] in named else best)
        return chosen

    def _used(self, ev: SentenceEvidence, answer_floor: float | None, per_token: bool) -> list[int]:
        gate = self.min_context_gain
        if gate is not None and ev.gain is not None and ev.gain < float(gate):  # type: ignore[arg-type]
            return []
        ranked = _ranked(ev.scores)  # type: ignore[arg-type]
        if not ranked:
            return []
        top = float(ev.scores[ranked[0]])  # type: ignore[index]
        scale = max(int(ev.tokens), 1) if per_token else 1
        out = []
        for i in ranked:
            v = float(ev.scores[i])  # type: ignore[index]
            if (self.threshold is None and v <= 0) or (self.threshold is not None and v < self.threshold):
                continue
            if self.relative_threshold is not None and v < self.relative_threshold * top:
                continue
            if answer_floor is not None and v < answer_floor:
                continue
            if self.null_floor is not None and v / scale < float(self.null_floor):  # type: ignore[arg-type]
                continue
            out.append(i)
        return out

    def _supported(self, ev: SentenceEvidence, answer_floor: float | None) -> list[int]:
        checked = _checked(ev.support)
        cands = [i for i in self.to_check(ev.scores) if i in checked]
        if not cands:
            return []
        best = max(checked[i] for i in cands)
        keep = [i for i in cands if self._enough(checked[i], answer_floor)]
        if self.support_relative is not None:
            keep = [i for i in keep if checked[i] >= self.support_relative * best]
        return self._with_joint(ev, sorted(keep, key=lambda i: (-checked[i], i)), answer_floor)

    def _enough(self, value: float, answer_floor: float | None) -> bool:
        least = 0.0 if self.min_support is None else float(self.min_support)  # type: ignore[arg-type]
        return value >= least and value > 0 and (answer_floor is None or value >= answer_floor)

    def _with_joint(self, ev: SentenceEvidence, keep: list[int], answer_floor: float | None) -> list[int]:
        """``keep`` and the companions that add ``joint_gain`` to the best candidate (which
        is then cited too, whether or not it was enough alone)."""
        pair = self.joint_to_check(ev.scores, ev.support)
        if pair is None or not ev.joint:
            return keep
        best, companions = pair
        alone, joint = _checked(ev.support)[best], _checked(ev.joint)
        added = [j for j in companions if j in joint and j not in keep and self._enough(joint[j], answer_floor)
                 and joint[j] - alone >= float(self.joint_gain)]  # type: ignore[arg-type]
        if not added:
            return keep
        return [*([] if best in keep else [best]), *keep, *sorted(added, key=lambda j: (-joint[j], j))]


def _companions_once(choices: list[Choice]) -> list[Choice]:
    """Drop a sentence's companion that another sentence of the answer cites on its own
    evidence: it supports that sentence ("unused days expire on March 31" is not a
    companion of "employees get 22 days" when the next sentence cites it)."""
    cited = [set(c.sources) - set(c.companions) for c in choices]
    out = []
    for k, c in enumerate(choices):
        elsewhere = set().union(*cited[:k], *cited[k + 1:])
        dropped = [i for i in c.companions if i in elsewhere]
        if not dropped:
            out.append(c)
            continue
        companions = tuple(i for i in c.companions if i not in dropped)
        out.append(Choice([i for i in c.sources if i not in dropped], c.kind, c.bridges, companions))
    return out


def _checked(support: Mapping[int, float] | None) -> dict[int, float]:
    return {int(i): float(v) for i, v in (support or {}).items() if v is not None and not math.isnan(float(v))}


def _valid(scores: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in (scores or []) if v is not None and not math.isnan(float(v))]


def _ranked(scores: Sequence[float | None]) -> list[int]:
    """Source indices with a score, best first (ties: document order)."""
    valid = [(float(v), i) for i, v in enumerate(scores) if v is not None and not math.isnan(float(v))]
    return [i for _, i in sorted(valid, key=lambda t: (-t[0], t[1]))]


@dataclass(frozen=True)
class AnswerFloors:
    """The answer-relative floors: on the ranker's scores, and on the checked support."""

    score: float | None = None
    support: float | None = None


def _floors(value: "AnswerFloors | float | None", evidence: str) -> AnswerFloors:
    if value is None or isinstance(value, AnswerFloors):
        return value or AnswerFloors()
    return AnswerFloors(support=float(value)) if evidence == "supports" else AnswerFloors(score=float(value))


DEFAULT_POLICY = CitationPolicy()

__all__ = [
    "AUTO",
    "AnswerFloors",
    "Calibration",
    "CitationPolicy",
    "Choice",
    "DEFAULT_POLICY",
    "EVIDENCE_KINDS",
    "GENERIC_MIN_CONTEXT_GAIN",
    "GENERIC_MIN_SUPPORT",
    "SentenceEvidence",
    "calibration_for",
    "calibration_path",
]
