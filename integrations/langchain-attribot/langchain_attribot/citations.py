"""A chain step that cites the answer of a RAG chain against its context documents."""

from __future__ import annotations

from typing import Any, Dict, Optional

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from attribot_rag import DEFAULT_MODEL, Attributor, CitedAnswer, cite

from ._common import documents_to_passages, model_label, resolve_attributor


def message_text(answer: Any) -> str:
    """The text of an answer: a string, or a chat message (text content blocks joined)."""
    if answer is None:
        return ""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, BaseMessage):
        content = answer.content
        if isinstance(content, str):
            return content
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    raise TypeError(f"the answer is a {type(answer).__name__}: expected a string or a chat message")


class AttribotCitations(RunnableSerializable[Dict[str, Any], Dict[str, Any]]):
    """Adds citations to ``{"question", "context", "answer"}`` (LangChain's RAG shape).

    >>> chain = (
    ...     RunnablePassthrough.assign(context=itemgetter("question") | retriever)
    ...     .assign(answer=prompt | chat_model | StrOutputParser())
    ...     | AttribotCitations(model="smollm2-135m")
    ... )

    The output is the input plus

    * ``"citations"``: one dict per citation: ``sentence`` (the answer sentence) and its
      ``sentence_span``, ``number`` (the ``[n]`` marker), ``source_id`` (the document id,
      or its position in the context), ``passage_index``, ``score``, ``quote`` (verbatim
      from the document) and ``quote_span`` (its character span in ``page_content``);
    * ``"cited_answer"``: the answer text with ``[n]`` markers;
    * ``"unsupported"``: the answer sentences that no document supports.

    The answer may come from any chat model: the local attributing model scores it as
    given (a proxy). ``context`` is a list of Documents (or strings). With no context or an
    empty answer, the citations are empty and the answer is passed through.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = Field(default=DEFAULT_MODEL, description="attribot-rag alias, Hugging Face id or path")
    method: str = "loo"
    level: str = Field(default="sentence", description="quote granularity: sentence or passage")
    threshold: Optional[float] = None
    relative_threshold: Optional[float] = 0.5
    answer_relative_threshold: Optional[float] = 0.1
    max_per_sentence: Optional[int] = 2
    question_key: str = "question"
    context_key: str = "context"
    answer_key: str = "answer"
    output_key: str = "citations"
    cited_answer_key: str = "cited_answer"
    unsupported_key: str = "unsupported"
    dtype: Optional[str] = Field(default=None, description='Weights dtype of a model loaded by name: "auto" (bfloat16 where the hardware runs it fast, else float32), "float32" or "bfloat16"; None: $ATTRIBOT_RAG_DTYPE or auto.')

    _attributor: Optional[Attributor] = PrivateAttr(default=None)
    _objects: Optional[tuple] = PrivateAttr(default=None)

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        tokenizer: Any = None,
        *,
        attributor: Optional[Attributor] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model_label(model, attributor), **kwargs)
        if attributor is not None:
            self._attributor = attributor
        elif not isinstance(model, str):
            self._objects = (model, tokenizer)

    @property
    def attributor(self) -> Attributor:
        if self._attributor is None:
            if self._objects is not None:
                self._attributor = resolve_attributor(*self._objects, dtype=self.dtype)
            else:
                self._attributor = resolve_attributor(self.model, dtype=self.dtype)
        return self._attributor

    def cite(self, question: str, context: Any, answer: Any) -> Optional[CitedAnswer]:
        """The attribot-rag :class:`CitedAnswer` (None when there is nothing to cite)."""
        text = message_text(answer)
        if isinstance(context, (str, Document)):
            context = [context]
        passages, _ = documents_to_passages(list(context or []))
        if not text.strip() or not passages:
            return None
        attributor = self.attributor
        with attributor.lock:
            return cite(
                attributor,
                question,
                passages,
                text,
                method=self.method,
                level=self.level,
                threshold=self.threshold,
                relative_threshold=self.relative_threshold,
                answer_relative_threshold=self.answer_relative_threshold,
                max_per_sentence=self.max_per_sentence,
            )

    def _run(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        if not isinstance(inputs, dict):
            raise TypeError(
                f"AttribotCitations takes a dict with {self.question_key!r}, {self.context_key!r} "
                f"and {self.answer_key!r}, got a {type(inputs).__name__}"
            )
        missing = [k for k in (self.question_key, self.answer_key) if k not in inputs]
        if missing:
            raise KeyError(f"AttribotCitations input lacks {missing} (keys: {sorted(inputs)})")
        question = inputs[self.question_key]
        if not isinstance(question, str):
            raise TypeError(f"{self.question_key!r} must be a string, got {type(question).__name__}")
        cited = self.cite(question, inputs.get(self.context_key), inputs[self.answer_key])
        out = dict(inputs)
        if cited is None:
            out[self.output_key] = []
            out[self.cited_answer_key] = message_text(inputs[self.answer_key])
            out[self.unsupported_key] = []
            return out
        out[self.output_key] = [c.to_dict() for c in cited.citations]
        out[self.cited_answer_key] = cited.text
        out[self.unsupported_key] = [s.text for s in cited.unsupported]
        return out

    def invoke(
        self, input: Dict[str, Any], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> Dict[str, Any]:
        return self._call_with_config(self._run, input, config, run_type="chain")

    async def ainvoke(
        self, input: Dict[str, Any], config: Optional[RunnableConfig] = None, **kwargs: Any
    ) -> Dict[str, Any]:
        return await run_in_executor(config, self.invoke, input, config)
