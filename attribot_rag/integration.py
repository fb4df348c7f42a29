"""What the framework integrations share: the attributing model, context records as
passages, and scores and citations back per record.

A framework package (``langchain-attribot``, ``llama-index-postprocessor-attribot``) only
converts its own types: a LangChain ``Document`` or a LlamaIndex ``NodeWithScore``
becomes a :class:`Record` (id, text, title, metadata); what comes back is per record
position, for the package to copy onto its own objects.

>>> source = AttributorSource("smollm2-135m")          # loaded on first use
>>> outcome = prune_records(source.get, query, records, top_n=2)
>>> cited = cite_records(source.get, question, records, answer_text)
>>> cited.citations(id_key="node_id"), cited.numbers(), cited.unsupported
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from .attributor import DEFAULT_MAX_NEW_TOKENS, Attributor
from .citations import DEFAULT_POLICY, CitationPolicy, CitedAnswer, CitedSentence, cite
from .errors import AttribotError, InputError
from .models import DEFAULT_MODEL, default_model, get_model
from .pruning import DEFAULT_FILTER_METHOD, DEFAULT_FUSION, FUSIONS, PruneResult, filter_passages
from .sources import Passage
from .streaming import TextCitationStream, stream_cite

logger = logging.getLogger(__name__)

# The integrations' citation method when none is given: AT2 where weights ship for the
# model (one forward pass for the whole answer, against one pass per context sentence
# for LOO: the "50 s for one answer" of issue 17), else LOO
# (attribot_rag.attributor.resolve_method).
DEFAULT_METHOD = "auto"

AttributorFn = Callable[[], Attributor]


def citation_settings_mixin() -> type:
    """The integrations' one typed citation setting, as a pydantic mixin both frameworks'
    components inherit (pydantic comes with either framework, not with the core)."""
    from pydantic import BaseModel, ConfigDict, Field

    class CitationSettings(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)

        policy: CitationPolicy = Field(
            default=DEFAULT_POLICY,
            description='How citations are chosen (attribot_rag.CitationPolicy): evidence "supports" (the '
            'source says what the sentence says; the default) or "used" (the model relied on it), and the '
            "thresholds; calibrated per model where a calibration ships",
        )

    return CitationSettings


# Where the pruning components put what a call found, on each returned copy's metadata.
SCORE_KEY = "attribution_score"
RANK_KEY = "attribution_rank"
DRAFT_KEY = "attribution_draft"


def prune_settings_mixin() -> type:
    """The pruning components' settings (LangChain's ``AttribotCompressor``, LlamaIndex's
    ``AttribotPostprocessor``), declared once: a pydantic mixin both inherit (pydantic
    comes with either framework, not with the core). :func:`prune_with` reads them. It also
    holds what both do with them: the attributor (``_source``, set by the component's
    constructor) and the latest call's result."""
    from pydantic import BaseModel, Field, PrivateAttr, field_validator

    class PruneSettings(BaseModel):
        _source: AttributorSource = PrivateAttr()
        _last_result: LastResult = PrivateAttr(default_factory=LastResult)

        model: str = Field(
            default=DEFAULT_MODEL,
            description="Attributing model: an attribot-rag alias, Hugging Face id or local path "
            "(informational when model objects or an attributor are given).",
        )
        method: str = Field(
            default=DEFAULT_FILTER_METHOD,
            description='Attribution method (attribot_rag.available_methods()); "auto": at2 where '
            "weights ship for the model (its features come with the draft), else loo.",
        )
        fusion: str = Field(
            default=DEFAULT_FUSION,
            description="How the ranking combines attribution with the retriever's order (the items' order, "
            "or the retriever's score when every item has one): \"guarded\" (the retriever's top item stays "
            "first unless its attribution is confidently negative, the rest by reciprocal-rank fusion), "
            '"rrf", "attribution" (attribution alone) or "retrieval" (attribot_rag.pruning.fused_order).',
        )
        top_n: Optional[int] = Field(default=None, ge=1, description="Keep only the n highest-scoring items (None: keep all).")
        keep_mass: Optional[float] = Field(
            default=None,
            gt=0,
            le=1,
            description="Keep the fewest best items holding this fraction of the positive score (None: off).",
        )
        max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, description="Length limit of the draft answer.")
        batch_size: int = Field(default=4, description="Ablations per forward pass.")
        score_key: str = Field(default=SCORE_KEY, description="Metadata key of the attribution score.")
        rank_key: str = Field(default=RANK_KEY, description="Metadata key of the attribution rank.")
        draft_key: Optional[str] = Field(
            default=DRAFT_KEY,
            description="Metadata key of the call's draft answer on each returned item (None: not added).",
        )
        fail_open: bool = Field(
            default=False,
            description="On an attribution error (e.g. the context does not fit the model), log it and "
            "return the items unchanged instead of raising.",
        )
        dtype: Optional[str] = Field(
            default=None,
            description='Weights dtype of a model loaded by name: "auto" (bfloat16 where the hardware runs it '
            'fast, else float32), "float32" or "bfloat16"; None: $ATTRIBOT_RAG_DTYPE or auto.',
        )

        @field_validator("fusion")
        @classmethod
        def _known_fusion(cls, value: str) -> str:
            check_keep(None, None, value)
            return value

        @property
        def attributor(self) -> Attributor:
            """The attributing model (loaded on first use; names are cached per process)."""
            return self._source.get(
                method=self.method, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, dtype=self.dtype
            )

        @property
        def last_result(self) -> Optional[PruneResult]:
            """The :class:`attribot_rag.PruneResult` (draft answer, kept and dropped items
            with scores) of the latest call made *in this thread or asyncio task*, so
            concurrent callers of one shared component each see their own; None before such
            a call, or when the call attributed nothing (no text, ``fail_open``). Inside a
            pipeline that runs the component in another task, read the returned items'
            metadata instead (LangChain also sends the ``"attribot_prune"`` callback event)."""
            return self._last_result.get()

    return PruneSettings


# --------------------------------------------------------------------------- the model


def resolve_attributor(
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    *,
    attributor: Attributor | None = None,
    dtype: Any = None,
    **options: Any,
) -> Attributor:
    """An :class:`Attributor` from what the caller has: ``attributor`` as is; a model name
    (alias, Hugging Face id or path: loaded once per process, in ``dtype``); a transformers
    model with its ``tokenizer`` (used in its own dtype); or a transformers pipeline (its
    ``model`` and ``tokenizer`` are reused). ``options`` go to :class:`Attributor`."""
    if attributor is not None:
        return attributor
    if _named(model):
        return Attributor(get_model(model, dtype=dtype), **options)
    model, tokenizer = _model_objects(model, tokenizer)
    return Attributor(model, tokenizer, dtype=dtype, **options)


def _named(model: Any) -> bool:
    """Whether ``model`` is a name (None: the default model's, :func:`~attribot_rag.models.default_model`)."""
    return model is None or isinstance(model, str)


def _model_objects(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    if tokenizer is None and hasattr(model, "model") and hasattr(model, "tokenizer"):
        return model.model, model.tokenizer  # a transformers pipeline
    if tokenizer is None:
        raise ValueError("a model object needs its tokenizer: pass tokenizer=...")
    return model, tokenizer


def model_label(model: Any, attributor: Attributor | None = None) -> str:
    """A name for the attributing model, without loading it."""
    if attributor is not None:
        return attributor.model_name
    if model is None:
        return default_model()
    if isinstance(model, str):
        return model
    name = getattr(getattr(model, "config", None), "name_or_path", None)
    return str(name or getattr(model, "model_id", None) or type(model).__name__)


class AttributorSource:
    """What the caller gave for the attributing model, resolved on first use (then kept).

    A model object without its tokenizer is refused at once (``ValueError``)."""

    def __init__(self, model: Any = DEFAULT_MODEL, tokenizer: Any = None, *, attributor: Attributor | None = None) -> None:
        if attributor is None and not _named(model):
            _model_objects(model, tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.label = model_label(model, attributor)
        self.attributor = attributor

    @property
    def loaded(self) -> bool:
        return self.attributor is not None

    def get(self, **options: Any) -> Attributor:
        """The attributor (``options``: :class:`Attributor`'s, used when it is made)."""
        if self.attributor is None:
            self.attributor = resolve_attributor(self.model, self.tokenizer, **options)
        return self.attributor


class LastResult:
    """A component's latest result, per thread and per asyncio task (a context variable):
    concurrent calls on one shared component each read their own call's, never another's.

    Copies of the component (``copy.deepcopy``, ``model_copy``) start empty."""

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[Any] = contextvars.ContextVar(f"attribot_last_result_{id(self)}", default=None)

    def get(self) -> Any:
        return self._var.get()

    def set(self, value: Any) -> None:
        self._var.set(value)

    def __copy__(self) -> "LastResult":
        return LastResult()

    def __deepcopy__(self, memo: dict) -> "LastResult":
        return LastResult()

    def __reduce__(self) -> tuple:
        return (LastResult, ())


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """One context item of a framework, as attribot-rag needs it."""

    id: str | None
    text: str
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    score: float | None = None  # the retriever's score (higher: more relevant), if any

    @classmethod
    def of(
        cls, id: Any, text: str, metadata: Mapping[str, Any] | None = None, score: Any = None
    ) -> "Record":
        """A record whose title is ``metadata["title"]`` when that is a non-empty string;
        ``score`` is kept when it is a number (a retriever's relevance score)."""
        meta = metadata or {}
        title = meta.get("title")
        number = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
        return cls(
            None if id is None else str(id), text, title if isinstance(title, str) and title.strip() else None, meta, number
        )


def records_to_passages(records: Sequence[Record]) -> tuple[list[Passage], list[int]]:
    """Passages for the records that have text, and each one's record position.

    The passage id is the record's id when it has one, else its position; a repeated id
    is made unique with ``#<position>``."""
    passages: list[Passage] = []
    positions: list[int] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if not rec.text or not rec.text.strip():
            continue
        pid = rec.id or str(i)
        if pid in seen:
            pid = f"{pid}#{i}"
        seen.add(pid)
        passages.append(Passage(id=pid, text=rec.text, title=rec.title))
        positions.append(i)
    return passages, positions


def require_query(query: Any, owner: str, hint: str = "") -> str:
    """The query string, or a ``ValueError`` naming who needs it."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"{owner} needs the query{': ' + hint if hint else ''}")
    return query


def check_keep(top_n: int | None, keep_mass: float | None, fusion: str | None = None) -> None:
    """``top_n`` >= 1 and ``keep_mass`` in (0, 1], each or None; ``fusion`` one of
    :data:`attribot_rag.pruning.FUSIONS` (or None: not checked)."""
    if fusion is not None and fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
    if top_n is not None and top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if keep_mass is not None and not 0 < keep_mass <= 1:
        raise ValueError(f"keep_mass must be in (0, 1], got {keep_mass}")


# --------------------------------------------------------------------------- pruning


@dataclass(frozen=True)
class RecordScore:
    """One record after pruning: kept or not, and its score and rank (None: not scored)."""

    position: int
    keep: bool = True
    score: float | None = None
    rank: int | None = None

    def metadata(self, score_key: str, rank_key: str) -> dict[str, Any]:
        """What to add to the record's metadata (nothing when it was not scored)."""
        return {} if self.score is None else {score_key: self.score, rank_key: self.rank}


def prune_records(
    attributor: AttributorFn,
    query: str,
    records: Sequence[Record],
    *,
    fail_open: bool = False,
    log: logging.Logger | None = None,
    **prune_options: Any,
) -> tuple[PruneResult | None, list[RecordScore]]:
    """Draft, attribute, prune: every record's outcome, in record order. A record without
    text is kept unscored; with ``fail_open`` an attribution error is logged and every
    record kept unscored. The records come in the retriever's order; their ``score`` (when
    every record with text has one) gives the retrieval rank instead. ``prune_options``:
    :func:`attribot_rag.pruning.filter_passages`'s."""
    passages, positions = records_to_passages(records)
    unscored = [RecordScore(i) for i in range(len(records))]
    if not passages:
        return None, unscored
    retrieval = [records[i].score for i in positions]
    try:
        result, selection = filter_passages(
            attributor(), query, passages, retrieval_scores=retrieval, **prune_options
        )
    except AttribotError as exc:
        if not fail_open:
            raise
        (log or logger).warning("attribution failed, the context passed through unchanged: %s", exc)
        return None, unscored
    for ps, keep in selection:
        unscored[positions[ps.index]] = RecordScore(positions[ps.index], keep, ps.score, ps.rank)
    return result, unscored


def prune_with(
    component: Any, query: str, records: Sequence[Record], log: logging.Logger | None = None, *, top_n: int | None = None
) -> tuple[PruneResult | None, list[dict[str, Any] | None]]:
    """:func:`prune_records` with a framework component's settings (its ``attributor``,
    ``top_n``, ``keep_mass``, ``method``, ``fusion``, ``max_new_tokens``, ``fail_open``): per record,
    the metadata to add to its copy (its ``score_key`` / ``rank_key``), None when dropped.
    ``top_n``: this call keeps that many instead (a retriever's ``k``; ``keep_mass`` is then unused)."""
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InputError(f"the number of documents to return must be an integer >= 1, got {top_n!r}")
    result, outcomes = prune_records(
        lambda: component.attributor,
        query,
        records,
        fail_open=component.fail_open,
        log=log,
        top_n=component.top_n if top_n is None else top_n,
        keep_mass=component.keep_mass if top_n is None else None,
        method=component.method,
        fusion=component.fusion,
        max_new_tokens=component.max_new_tokens,
    )
    return result, [o.metadata(component.score_key, component.rank_key) if o.keep else None for o in outcomes]


# --------------------------------------------------------------------------- citations


@dataclass
class RecordCitations:
    """An answer's citations, per record. ``cited`` is None when there was nothing to cite
    (no record with text, or an empty answer): then every list is empty."""

    answer: str
    records: list[Record]
    positions: list[int]  # passage index -> record position
    cited: CitedAnswer | None = None

    @property
    def text(self) -> str:
        """The answer with ``[n]`` markers (as given when nothing was cited)."""
        return self.answer if self.cited is None else self.cited.text

    @property
    def unsupported(self) -> list[str]:
        return [] if self.cited is None else [s.text for s in self.cited.unsupported]

    def record_id(self, passage_index: int) -> str | None:
        return self.records[self.positions[passage_index]].id

    def citations(self, id_key: str | None = None) -> list[dict[str, Any]]:
        """One dict per citation (``Citation.to_dict()``, plus the record id under ``id_key``)."""
        return [] if self.cited is None else [self._with_id(c.to_dict(), id_key) for c in self.cited.citations]

    def references(self, id_key: str | None = None) -> list[dict[str, Any]]:
        """The numbered cited records (``Reference.to_dict()``, plus the record id)."""
        return [] if self.cited is None else [self._with_id(r.to_dict(), id_key) for r in self.cited.references]

    def sentences(self, id_key: str | None = None) -> list[dict[str, Any]]:
        """Every answer sentence with its citations and scores."""
        return [] if self.cited is None else [self.sentence(s, id_key) for s in self.cited.sentences]

    def sentence(self, sentence: CitedSentence, id_key: str | None = None) -> dict[str, Any]:
        """One sentence's dict (``CitedSentence.to_dict()``, its citations with record ids)."""
        d = sentence.to_dict()
        d["citations"] = [self._with_id(c, id_key) for c in d["citations"]]
        return d

    def numbers(self) -> list[list[int]]:
        """Per record, the reference numbers that cite it (empty when none)."""
        out: list[list[int]] = [[] for _ in self.records]
        for ref in self.cited.references if self.cited is not None else []:
            out[self.positions[ref.passage_index]].append(ref.number)
        return out

    def cited_positions(self) -> list[int]:
        """The positions of the cited records, ``[1]`` first."""
        return [] if self.cited is None else [self.positions[r.passage_index] for r in self.cited.references]

    def _with_id(self, d: dict[str, Any], id_key: str | None) -> dict[str, Any]:
        if id_key is not None:
            d[id_key] = self.record_id(d["passage_index"])
        return d


def cite_settings(policy: CitationPolicy | None, method: str | None, level: str) -> dict[str, Any]:
    """The citation keywords a framework component passes on (checked here, once)."""
    if policy is not None and not isinstance(policy, CitationPolicy):
        raise InputError(f"policy must be an attribot_rag.CitationPolicy, got {type(policy).__name__}")
    return {"policy": policy or DEFAULT_POLICY, "method": method or DEFAULT_METHOD, "level": level}


def cite_records(
    attributor: AttributorFn, question: str, records: Sequence[Record], answer: str | None, **cite_options: Any
) -> RecordCitations:
    """Cite ``answer`` (from any LLM; None: the attributing model writes it) against the
    records. Nothing to cite (no text in the records, or an empty answer) loads no model.
    ``cite_options``: :func:`cite`'s."""
    records = list(records)
    passages, positions = records_to_passages(records)
    out = RecordCitations(answer or "", records, positions)
    if passages and (answer is None or out.answer.strip()):
        att = attributor()
        with att.lock:
            out.cited = cite(att, question, passages, answer, **{"method": DEFAULT_METHOD, **cite_options})
        out.answer = out.cited.answer
    return out


class RecordStream:
    """Citations for an answer streamed by another LLM, over records: :meth:`add` each
    text chunk (each sentence it completes comes back as
    :meth:`RecordCitations.sentence`'s dict, cited on the text so far), :meth:`finish`
    for the whole (exactly :func:`cite_records` of the whole text). Nothing to cite (no
    record with text): the text is only collected, no model is loaded."""

    def __init__(
        self, attributor: AttributorFn, question: str, records: Sequence[Record], *, id_key: str | None = None,
        **cite_options: Any,
    ) -> None:
        self.attributor, self.question, self.records = attributor, question, list(records)
        self.options, self.id_key = {"method": DEFAULT_METHOD, **cite_options}, id_key
        passages, positions = records_to_passages(self.records)
        self._shape = RecordCitations("", self.records, positions)  # formats the sentences
        self._passages = passages
        self._stream: TextCitationStream | None = None
        self.text = ""

    def add(self, chunk: str) -> list[dict[str, Any]]:
        """Take a text chunk; the sentences it completed, with their citations so far."""
        self.text += chunk
        if not self._passages or (self._stream is None and not self.text.strip()):
            return []
        if self._stream is None:  # the first text: start attributing
            self._stream = TextCitationStream(self.attributor(), self.question, self._passages, **self.options)
            chunk = self.text
        events = self._stream.add(chunk)
        return [self._shape.sentence(e.sentence, self.id_key) for e in events if e.sentence is not None]

    def finish(self) -> RecordCitations:
        return cite_records(self.attributor, self.question, self.records, self.text, **self.options)


@dataclass(frozen=True)
class RecordEvent:
    """One step of an answer the attributing model writes: new text, a completed
    sentence (:meth:`RecordCitations.sentence`'s dict), or (last) the whole answer's
    citations."""

    text: str = ""
    sentence: dict[str, Any] | None = None
    result: RecordCitations | None = None


def generate_records(
    attributor: AttributorFn,
    question: str,
    records: Sequence[Record],
    *,
    max_new_tokens: int | None = None,
    id_key: str | None = None,
    **cite_options: Any,
) -> Iterator[RecordEvent]:
    """Write the answer with the attributing model over the records and stream it
    (:func:`~attribot_rag.streaming.stream_cite`), the last event with its citations.
    No record with text: nothing is written (as :func:`cite_records` with no answer)."""
    records = list(records)
    passages, positions = records_to_passages(records)
    shape = RecordCitations("", records, positions)
    if not passages:
        yield RecordEvent(result=shape)
        return
    options = {"method": DEFAULT_METHOD, **cite_options}
    for event in stream_cite(attributor(), question, passages, max_new_tokens=max_new_tokens, **options):
        if event.answer is not None:
            yield RecordEvent(result=RecordCitations(event.answer.answer, records, positions, event.answer))
        elif event.sentence is not None:
            yield RecordEvent(sentence=shape.sentence(event.sentence, id_key))
        else:
            yield RecordEvent(text=event.text)


__all__ = [
    "DEFAULT_FILTER_METHOD",
    "DEFAULT_METHOD",
    "DEFAULT_FUSION",
    "DRAFT_KEY",
    "RANK_KEY",
    "SCORE_KEY",
    "AttributorSource",
    "LastResult",
    "Record",
    "RecordCitations",
    "RecordEvent",
    "RecordScore",
    "RecordStream",
    "check_keep",
    "citation_settings_mixin",
    "cite_records",
    "generate_records",
    "model_label",
    "prune_records",
    "prune_settings_mixin",
    "prune_with",
    "records_to_passages",
    "require_query",
    "resolve_attributor",
]
